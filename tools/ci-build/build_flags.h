// ci-build's pipeline flags, shared by its two modes: what they mean and
// how they become PipelineOptions and the log shipper's settings.
#ifndef CIAGENT_TOOLS_CI_BUILD_BUILD_FLAGS_H_
#define CIAGENT_TOOLS_CI_BUILD_BUILD_FLAGS_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "ciagent/build/pipeline.h"

namespace ciagent {

// Pipeline settings from flags and environment; kInvalidArgument for bad
// values. The variables named by --secret-env are read here (into
// secret_env), so a missing one is reported before anything runs.
absl::StatusOr<PipelineOptions> PipelineOptionsFromFlags();

// "check, test" -> {"check", "test"}; "" -> {} (all steps).
std::vector<std::string> SplitSteps(absl::string_view steps);

// Values to mask in the job log: the agent's own secrets (git, registry
// tokens) and those passed to builds.
absl::StatusOr<std::vector<std::string>> SecretsToMask(
    const PipelineOptions& pipeline);

// --log-max-bytes.
int64_t LogCapFromFlags();

}  // namespace ciagent

#endif  // CIAGENT_TOOLS_CI_BUILD_BUILD_FLAGS_H_
