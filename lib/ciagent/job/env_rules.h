// The rule for the names of the environment variables a build may be given,
// shared by every place that takes them from outside the agent: a job's
// `env` (job.h, ParseJob) and the repository's configuration
// (pipeline/pipeline_config.h, `env` of [workspace.metadata.ciagent]).
// Both feed the same build environment, so one list decides what neither
// may set. Each caller words its own message around these predicates.
//
// Example:
//   if (!IsValidEnvName(name)) return Invalid(..., kEnvNamePattern);
//   if (IsReservedEnvName(name)) return Invalid(..., "reserved by the agent");
//
// Thread-safety: pure functions of their argument.
#ifndef CIAGENT_JOB_ENV_RULES_H_
#define CIAGENT_JOB_ENV_RULES_H_

#include <cstddef>

#include "absl/strings/string_view.h"

namespace ciagent {

// Longest name accepted, in bytes.
inline constexpr size_t kMaxEnvNameBytes = 128;

// The syntax IsValidEnvName checks, as messages quote it.
inline constexpr char kEnvNamePattern[] = "^[A-Za-z_][A-Za-z0-9_]{0,127}$";

// True when `name` matches kEnvNamePattern: a name every shell and
// execve(2) environment takes as it is.
bool IsValidEnvName(absl::string_view name);

// True for variables the agent sets for itself, or that would run code
// around the compiler (RUSTC_WRAPPER, LD_PRELOAD, BASH_ENV), move the output
// out of the build cache (CARGO_TARGET_DIR), change the agent's own or
// cargo's network and registry settings, or reach credentials (GIT_*,
// REDIS_*, REGISTRY_*, CARGO_REGISTRIES_*). docs/pipeline-config.md lists
// them all.
bool IsReservedEnvName(absl::string_view name);

}  // namespace ciagent

#endif  // CIAGENT_JOB_ENV_RULES_H_
