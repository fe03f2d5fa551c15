#include "ciagent/base/cpus.h"

#include <sched.h>

#include <algorithm>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"

namespace ciagent {
namespace {

// The cgroup v2 directory of this process, from /proc/self/cgroup's
// "0::/path" line; "" when there is none (cgroup v1 or no /proc).
std::string OwnCgroupDir() {
  std::ifstream file("/proc/self/cgroup");
  std::string line;
  while (std::getline(file, line)) {
    absl::string_view rest = line;
    if (absl::ConsumePrefix(&rest, "0::")) {
      return absl::StrCat("/sys/fs/cgroup", rest == "/" ? "" : rest);
    }
  }
  return "";
}

}  // namespace

std::optional<int> CpuQuotaFromCpuMax(absl::string_view cpu_max) {
  const std::vector<absl::string_view> fields = absl::StrSplit(
      absl::StripAsciiWhitespace(cpu_max), ' ', absl::SkipEmpty());
  if (fields.empty() || fields[0] == "max") return std::nullopt;
  int64_t quota = 0;
  int64_t period = 100000;  // the kernel's default when only a quota is given
  if (!absl::SimpleAtoi(fields[0], &quota) || quota <= 0) return std::nullopt;
  if (fields.size() > 1 &&
      (!absl::SimpleAtoi(fields[1], &period) || period <= 0)) {
    return std::nullopt;
  }
  return static_cast<int>(std::max<int64_t>(1, (quota + period - 1) / period));
}

int UsableCpus() {
  int cpus = 0;
  cpu_set_t set;
  if (sched_getaffinity(0, sizeof(set), &set) == 0) cpus = CPU_COUNT(&set);
  if (cpus <= 0) cpus = static_cast<int>(std::thread::hardware_concurrency());
  cpus = std::max(cpus, 1);
  // The quota of this cgroup; a parent's lower quota is not looked for (the
  // pod's own cgroup carries the container's limit).
  const std::string dir = OwnCgroupDir();
  if (!dir.empty()) {
    std::ifstream file(dir + "/cpu.max");
    std::string line;
    if (std::getline(file, line)) {
      if (const std::optional<int> quota = CpuQuotaFromCpuMax(line)) {
        cpus = std::min(cpus, *quota);
      }
    }
  }
  return cpus;
}

}  // namespace ciagent
