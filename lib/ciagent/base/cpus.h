// How many CPUs this process may actually use: the ones its affinity mask
// allows, capped by the cgroup's CPU quota (cgroup v2 `cpu.max`). In a
// Kubernetes pod with `limits.cpu: 2` on a 20-core node,
// std::thread::hardware_concurrency() says 20; running 20 threads there
// only gets them throttled. Work split across threads sizes itself with
// UsableCpus().
//
//   const int threads = UsableCpus();   // >= 1
//
// Thread-safety: both functions may be called from any thread.
#ifndef CIAGENT_BASE_CPUS_H_
#define CIAGENT_BASE_CPUS_H_

#include <optional>

#include "absl/strings/string_view.h"

namespace ciagent {

// The CPUs usable by this process, at least 1. Reads the affinity mask and
// /sys/fs/cgroup/cpu.max of the process's own cgroup (when mounted).
int UsableCpus();

// The CPU count a cgroup v2 `cpu.max` line allows ("200000 100000" -> 2,
// "150000 100000" -> 2: partial CPUs round up), or nullopt for "max" (no
// quota) and for lines it cannot read.
std::optional<int> CpuQuotaFromCpuMax(absl::string_view cpu_max);

}  // namespace ciagent

#endif  // CIAGENT_BASE_CPUS_H_
