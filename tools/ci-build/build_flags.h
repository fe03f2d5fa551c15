// ci-build's pipeline flags, shared by its two modes: what they mean and
// how they become PipelineOptions and the log shipper's settings.
#ifndef CIAGENT_TOOLS_CI_BUILD_BUILD_FLAGS_H_
#define CIAGENT_TOOLS_CI_BUILD_BUILD_FLAGS_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "ciagent/pipeline/pipeline.h"
#include "ciagent/job/job.h"

namespace ciagent {

// Pipeline settings from flags and environment; kInvalidArgument for bad
// values. The variables named by --secret-env are read here (into
// secret_env), so a missing one is reported before anything runs.
absl::StatusOr<PipelineOptions> PipelineOptionsFromFlags();

// Sets pipeline->image_step unless there is nowhere to push: a queued job
// (`job`) pushes to REGISTRY_URL (or GITEA_URL's host) as its image name, or
// its repository's path, tagged with its commit and branch; a local run
// (`job` null) pushes to --image. --image-builder=none disables the step;
// --image-builder=assembly allows only assembled images (image.base).
// Call after PipelineOptionsFromFlags (uses its cache dir, PATH, grace).
absl::Status ConfigureImageStep(const Job* job, PipelineOptions* pipeline);

// Sets pipeline->private_dependencies from the environment
// (PrivateDependenciesFromEnv): git credentials for the job repository's
// origin unless CI_GIT_CREDENTIAL_HOSTS says otherwise (a local run: only
// the hosts it names), the registries of CI_CARGO_REGISTRIES.
absl::Status ConfigurePrivateDependencies(const Job* job,
                                          PipelineOptions* pipeline);

// Local mode's stand-in for a job: the flags play the job's part over the
// checkout's configuration (`steps`, from --steps, and --image's
// repository).
Job LocalJob(absl::string_view steps);

// "check, test" -> {"check", "test"}; "" -> {} (all steps).
std::vector<std::string> SplitSteps(absl::string_view steps);

// Values to mask in the job log: the agent's own secrets (git, registry
// tokens), those passed to builds and the private registries' tokens.
absl::StatusOr<std::vector<std::string>> SecretsToMask(
    const PipelineOptions& pipeline);

// --log-max-bytes.
int64_t LogCapFromFlags();

}  // namespace ciagent

#endif  // CIAGENT_TOOLS_CI_BUILD_BUILD_FLAGS_H_
