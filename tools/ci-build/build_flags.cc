#include "build_flags.h"

#include <algorithm>
#include <cstdlib>

#include "absl/flags/flag.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "ciagent/base/comma_list.h"
#include "ciagent/base/secret.h"
#include "ciagent/image/image_step.h"
#include "ciagent/oci/reference.h"
#include "ciagent/base/status_macros.h"
#include "tool_flags.h"

ABSL_FLAG(std::string, cargo_home, "",
          "CARGO_HOME of the builds (registry and git caches); default: env "
          "CI_CARGO_HOME, else CARGO_HOME, else $HOME/.cargo");
ABSL_FLAG(std::string, target_dir, "",
          "cargo target directory; default: env CI_TARGET_DIR, else "
          "<source>/target");
ABSL_FLAG(std::string, cache_dir, "",
          "cache root shared by agents (docs/caching.md): CARGO_HOME defaults "
          "to <cache>/cargo-home and the target dir comes from the build "
          "cache; default: env CI_CACHE_DIR; none: builds run uncached");
ABSL_FLAG(bool, sccache, false,
          "compile through sccache on <cache-dir>/sccache when it is "
          "installed; default: env CI_SCCACHE=true");
ABSL_FLAG(int, cache_lock_timeout, 600,
          "seconds to wait for another agent building the same cache key "
          "before building uncached");
ABSL_FLAG(std::string, cargo_config, "",
          "operator cargo config.toml installed into CARGO_HOME; default: env "
          "CI_CARGO_CONFIG");
ABSL_FLAG(int, timeout, 1800,
          "job timeout in seconds (a job's timeout_s overrides it)");
ABSL_FLAG(int, step_timeout, 0, "per-step timeout in seconds; 0: none");
ABSL_FLAG(int, max_timeout, 0,
          "longest job or step timeout in seconds a job or a repository's "
          "Cargo.toml may ask for; longer ones are cut to it; default: env "
          "CI_MAX_TIMEOUT, else 86400 (the job timeout cap)");
ABSL_FLAG(int, grace, 10, "seconds between SIGTERM and SIGKILL of a step");
ABSL_FLAG(bool, clippy_warnings_fail, false,
          "fail the clippy step when it reports warnings");
ABSL_FLAG(int, test_retries, -1,
          "reruns of each failed test (0..10) when neither the job nor the "
          "repository's test.retries says; default: env CI_TEST_RETRIES, "
          "else 0");
ABSL_FLAG(std::string, secret_env, "",
          "comma-separated names of agent variables passed to builds as "
          "secrets (masked in logs); default: env CI_SECRET_ENV");
ABSL_FLAG(int64_t, log_max_bytes, int64_t{16} << 20,
          "cap on a job's log in bytes; later lines are dropped");
ABSL_FLAG(std::string, image, "",
          "registry/repository:tag of the image: local mode's image step "
          "pushes there, push mode pushes the layout there; queued jobs use "
          "REGISTRY_URL (or GITEA_URL) and the job's image name or repository");
ABSL_FLAG(std::string, image_builder, "",
          "image step builder: auto (docker buildx when a daemon answers, "
          "else buildah), buildah, docker, assembly (image.base only: no "
          "Dockerfile builds, no root needed), or none (no image step); "
          "default: env CI_IMAGE_BUILDER, else auto");
ABSL_FLAG(std::string, image_storage_dir, "",
          "buildah storage kept between jobs; default: env "
          "CI_IMAGE_STORAGE_DIR, else <cache-dir>/buildah, else temporary");
ABSL_FLAG(std::string, image_platform, "",
          "platform of the image, e.g. linux/arm64; default: the host's");

namespace ciagent {
namespace {

// The agent's own secrets: never given to builds, masked if one shows up.
constexpr const char* kAgentSecrets[] = {"GIT_TOKEN", "GITEA_TOKEN",
                                         "REGISTRY_TOKEN",
                                         "REGISTRY_PASSWORD"};

}  // namespace

std::vector<std::string> SplitSteps(absl::string_view steps) {
  return SplitCommaList(steps);
}

absl::StatusOr<PipelineOptions> PipelineOptionsFromFlags() {
  PipelineOptions o;
  o.cargo_home = FlagOrEnv(absl::GetFlag(FLAGS_cargo_home), "CI_CARGO_HOME", "");
  o.target_dir = FlagOrEnv(absl::GetFlag(FLAGS_target_dir), "CI_TARGET_DIR", "");
  o.cargo_config =
      FlagOrEnv(absl::GetFlag(FLAGS_cargo_config), "CI_CARGO_CONFIG", "");
  o.cache_dir = FlagOrEnv(absl::GetFlag(FLAGS_cache_dir), "CI_CACHE_DIR", "");
  if (absl::GetFlag(FLAGS_cache_lock_timeout) < 0) {
    return absl::InvalidArgumentError("--cache-lock-timeout must be >= 0");
  }
  o.cache_lock_timeout = absl::Seconds(absl::GetFlag(FLAGS_cache_lock_timeout));
  o.sccache = absl::GetFlag(FLAGS_sccache) || EnvOr("CI_SCCACHE", "") == "true";
  const int timeout = absl::GetFlag(FLAGS_timeout);
  const int step_timeout = absl::GetFlag(FLAGS_step_timeout);
  const int grace = absl::GetFlag(FLAGS_grace);
  if (timeout <= 0 || step_timeout < 0 || grace < 0 ||
      absl::GetFlag(FLAGS_log_max_bytes) <= 0) {
    return absl::InvalidArgumentError(
        "--timeout and --log-max-bytes must be > 0; --step-timeout and "
        "--grace >= 0");
  }
  int max_timeout = absl::GetFlag(FLAGS_max_timeout);
  if (max_timeout == 0) {
    const std::string env = EnvOr("CI_MAX_TIMEOUT", "");
    if (!env.empty() && !absl::SimpleAtoi(env, &max_timeout)) {
      return absl::InvalidArgumentError(absl::StrCat(
          "CI_MAX_TIMEOUT: expected seconds, got \"", env, "\""));
    }
  }
  if (max_timeout < 0) {
    return absl::InvalidArgumentError("--max-timeout must be >= 0");
  }
  if (max_timeout > 0) o.max_timeout = absl::Seconds(max_timeout);
  o.job_timeout = std::min(absl::Seconds(timeout), o.max_timeout);
  if (step_timeout > 0) o.step_timeout = absl::Seconds(step_timeout);
  o.grace = absl::Seconds(grace);
  o.clippy_warnings_fail = absl::GetFlag(FLAGS_clippy_warnings_fail);
  o.test_retries = absl::GetFlag(FLAGS_test_retries);
  if (const std::string env = EnvOr("CI_TEST_RETRIES", "");
      o.test_retries == -1 && !env.empty() &&
      !absl::SimpleAtoi(env, &o.test_retries)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "CI_TEST_RETRIES: expected a number of retries, got \"", env, "\""));
  }
  if (o.test_retries == -1) o.test_retries = 0;
  if (o.test_retries < 0 || o.test_retries > kMaxTestRetries) {
    return absl::InvalidArgumentError(absl::StrCat(
        "--test-retries / CI_TEST_RETRIES must be in 0..", kMaxTestRetries,
        " (got ", o.test_retries, ")"));
  }
  for (const std::string& name : SplitCommaList(
           FlagOrEnv(absl::GetFlag(FLAGS_secret_env), "CI_SECRET_ENV", ""))) {
    CIAGENT_ASSIGN_OR_RETURN(std::optional<std::string> value,
                             ReadSecretFromEnv(name));
    if (!value.has_value()) {
      return absl::InvalidArgumentError(absl::StrCat(
          "--secret-env: ", name, " (or ", name, "_FILE) is not set"));
    }
    o.secret_env.emplace_back(name, *std::move(value));
  }
  return o;
}

Job LocalJob(absl::string_view steps) {
  Job job;
  job.steps = SplitSteps(steps);
  if (absl::StatusOr<oci::ImageReference> target =
          oci::ParseImageReference(absl::GetFlag(FLAGS_image));
      target.ok()) {
    job.image = ImageSpec{.name = target->repository, .tag = target->tag};
  }
  return job;
}

absl::Status ConfigureImageStep(const Job* job, PipelineOptions* pipeline) {
  const std::string builder =
      FlagOrEnv(absl::GetFlag(FLAGS_image_builder), "CI_IMAGE_BUILDER", "auto");
  if (builder != "auto" && builder != "buildah" && builder != "docker" &&
      builder != "assembly" && builder != "none") {
    return absl::InvalidArgumentError(absl::StrCat(
        "--image-builder: expected auto, buildah, docker, assembly or none, "
        "got \"",
        builder, "\""));
  }
  ImageStepOptions image{.builder = builder,
                         .path = pipeline->path,
                         .grace = pipeline->grace};
  image.storage_dir = FlagOrEnv(absl::GetFlag(FLAGS_image_storage_dir),
                                "CI_IMAGE_STORAGE_DIR", "");
  if (image.storage_dir.empty() && !pipeline->cache_dir.empty()) {
    image.storage_dir = pipeline->cache_dir + "/buildah";
  }
  image.platform = absl::GetFlag(FLAGS_image_platform);
  std::string registry_host;  // empty: the environment's registry
  if (const std::string ref = absl::GetFlag(FLAGS_image); !ref.empty()) {
    CIAGENT_ASSIGN_OR_RETURN(oci::ImageReference target,
                             oci::ParseImageReference(ref));
    registry_host = target.registry;
    image.repository = target.repository;
    image.tags = {target.tag};
  } else if (job != nullptr) {
    image.repository = job->image.has_value()
                           ? job->image->name
                           : ImageRepositoryFor(job->repo);
    image.tags = ImageTagsFor(*job);
  }
  if (job != nullptr) {
    image.source = job->repo;
    image.revision = job->commit;
  }
  absl::StatusOr<oci::RegistryOptions> registry =
      oci::RegistryOptionsFor(registry_host);
  // kInvalidArgument: no registry configured at all (an unreadable token
  // file is an error).
  if (!registry.ok() &&
      registry.status().code() != absl::StatusCode::kInvalidArgument) {
    return registry.status();
  }
  if (builder == "none" || image.repository.empty() || !registry.ok()) {
    return absl::OkStatus();  // the step is skipped: nowhere to push
  }
  image.registry = *std::move(registry);
  pipeline->image_step = MakeImageStep(std::move(image));
  return absl::OkStatus();
}

absl::Status ConfigurePrivateDependencies(const Job* job,
                                          PipelineOptions* pipeline) {
  CIAGENT_ASSIGN_OR_RETURN(
      pipeline->private_dependencies,
      PrivateDependenciesFromEnv(job != nullptr ? job->repo : ""));
  return absl::OkStatus();
}

absl::StatusOr<std::vector<std::string>> SecretsToMask(
    const PipelineOptions& pipeline) {
  std::vector<std::string> secrets;
  for (const char* name : kAgentSecrets) {
    CIAGENT_ASSIGN_OR_RETURN(std::optional<std::string> value,
                             ReadSecretFromEnv(name));
    if (value.has_value()) secrets.push_back(*std::move(value));
  }
  for (const auto& [name, value] : pipeline.secret_env) {
    secrets.push_back(value);
  }
  for (const PrivateRegistry& registry :
       pipeline.private_dependencies.registries) {
    secrets.push_back(registry.token);
  }
  return secrets;
}

int64_t LogCapFromFlags() { return absl::GetFlag(FLAGS_log_max_bytes); }

}  // namespace ciagent
