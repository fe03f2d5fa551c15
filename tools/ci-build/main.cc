// ci-build: runs the Rust pipeline for a claimed job (--job) or on a local
// checkout (--local). See --help.
#include <cstdio>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/strings/str_cat.h"
#include "ciagent/base/exit_code.h"
#include "ciagent/base/log.h"
#include "ciagent/base/process_runner.h"
#include "ciagent/base/status_macros.h"
#include "ciagent/base/stop_signal.h"
#include "ciagent/pipeline/console_observer.h"
#include "ciagent/agent/queued_build.h"
#include "ciagent/pipeline/report.h"
#include "build_flags.h"
#include "outcome.h"
#include "push_mode.h"
#include "redis_flags.h"
#include "tool_flags.h"

ABSL_FLAG(std::string, job, "", "queue mode: the job.json written by ci-consume");
ABSL_FLAG(std::string, local, "", "local mode: a checkout to build, no Redis");
ABSL_FLAG(std::string, steps, "",
          "local mode: comma-separated steps (default: all)");
ABSL_FLAG(bool, allow_file_urls, false,
          "accept a job with a file:// repository (local testing only)");

namespace {

constexpr char kUsage[] =
    R"(Runs the Rust pipeline: cargo check, build --release, test (nextest when
installed), clippy, audit/deny when installed, image.

  ci-build --job <workdir>/job.json   a job claimed by ci-consume: renews its
      lease, streams logs to Redis, finalizes the status and acks the entry
  ci-build --local <path>             a checkout, no Redis; logs and a summary
      on stdout
  ci-build --push-layout <dir> --image <registry/repo:tag>
      pushes an OCI image layout (REGISTRY_USERNAME, REGISTRY_TOKEN[_FILE],
      CI_CA_FILE); prints a JSON summary; exit 75 when the registry is
      unavailable

Steps run with a controlled environment (PATH, HOME, CARGO_HOME,
CARGO_TARGET_DIR, the job's env and --secret-env). Secrets come from the
environment only (REDIS_PASSWORD[_FILE], GIT_TOKEN[_FILE], ...); their values
are masked in the job log. cargo reaches private git dependencies and sparse
registries with GIT_TOKEN[_FILE] for CI_GIT_CREDENTIAL_HOSTS (default: the
job repository's host) and CI_CARGO_REGISTRIES (docs/private-dependencies.md).
--cache-dir (CI_CACHE_DIR): a shared CARGO_HOME and a locked target dir per
cache key (docs/caching.md); without it builds run uncached.

Exit codes:
  0    success
  1    the build or its tests failed, or the job ended in error
  2    usage or configuration error (a claimed job it could read was requeued)
  75   not finished here: requeued after an agent failure, lease lost, or
       Redis unreachable when finalizing (the job runs again elsewhere)
  124  the job timed out
  130  the job was cancelled
  143  terminated (SIGTERM/SIGINT): the job was requeued)";

constexpr int kExitRequeued = 75;

int RunLocal(ciagent::PipelineOptions pipeline) {
  using namespace ciagent;
  pipeline.source_dir = absl::GetFlag(FLAGS_local);
  // A configuration the repository must fix: the run ends in error.
  absl::Status configured =
      ConfigureForJob(LocalJob(absl::GetFlag(FLAGS_steps)), &pipeline);
  if (!configured.ok()) return Fail(kExitFailure, configured);
  pipeline.stop_requested = [] { return StopRequested(); };
  absl::Status image = ConfigureImageStep(nullptr, &pipeline);
  if (!image.ok()) return Fail(kExitUsage, image);
  absl::Status access = ConfigurePrivateDependencies(nullptr, &pipeline);
  if (!access.ok()) return Fail(kExitUsage, access);
  ConsoleObserver console(stdout);
  absl::StatusOr<PipelineResult> result = RunPipeline(pipeline, &console);
  if (!result.ok()) return Fail(ExitCodeFor(result.status()), result.status());
  std::fputs(HumanSummary(*result).c_str(), stdout);
  absl::Status written = WriteReports(*result, "local");
  if (!written.ok()) return Fail(kExitFailure, written);
  return ExitCodeForResult(*result);
}

int RunQueued(absl::StatusOr<ciagent::PipelineOptions> flags) {
  using namespace ciagent;
  JobParseOptions parse;
  parse.allow_file_urls = absl::GetFlag(FLAGS_allow_file_urls);
  absl::StatusOr<ClaimFile> claim =
      ReadClaimFile(absl::GetFlag(FLAGS_job), parse);
  if (!claim.ok()) return Fail(kExitUsage, claim.status());
  absl::Status password = ApplyRedisSettings(&claim->redis);
  if (!password.ok()) return Fail(kExitUsage, password);
  if (!flags.ok()) return FailClaimed(*claim, flags.status());
  PipelineOptions pipeline = *std::move(flags);
  absl::Status image = ConfigureImageStep(&claim->claim.job, &pipeline);
  if (!image.ok()) return FailClaimed(*claim, image);
  absl::Status access =
      ConfigurePrivateDependencies(&claim->claim.job, &pipeline);
  if (!access.ok()) return FailClaimed(*claim, access);
  QueuedBuildOptions options;
  options.pipeline = std::move(pipeline);
  absl::StatusOr<std::vector<std::string>> secrets = SecretsToMask(options.pipeline);
  if (!secrets.ok()) return FailClaimed(*claim, secrets.status());
  options.logs.secrets = *std::move(secrets);
  if (!claim->redis.password.empty()) {
    options.logs.secrets.push_back(claim->redis.password);
  }
  options.logs.max_bytes = LogCapFromFlags();
  absl::StatusOr<QueuedBuildResult> done = RunQueuedBuild(*claim, options);
  if (!done.ok()) return Fail(kExitRequeued, done.status());
  absl::Status written = WriteReports(done->pipeline, claim->claim.job.job_id);
  if (!written.ok()) LogWarning("reports not written", {{"error", written}});
  if (done->disposition != BuildDisposition::kFinalized) {
    LogWarning("job not finished here", {{"reason", done->reason}});
    return done->pipeline.interrupted ? 143 : kExitRequeued;
  }
  return ExitCodeForResult(done->pipeline);
}

}  // namespace

int main(int argc, char** argv) {
  using namespace ciagent;
  absl::StatusOr<ToolStart> start = StartTool(argc, argv, kUsage);
  if (!start.ok()) return Fail(ExitCodeFor(start.status()), start.status());
  if (start->help_shown) return kExitOk;
  if (PushModeRequested()) return RunPushLayout();
  const bool queued = !absl::GetFlag(FLAGS_job).empty();
  if (queued == !absl::GetFlag(FLAGS_local).empty()) {
    return Fail(kExitUsage, absl::InvalidArgumentError(
                                "give exactly one of --job and --local"));
  }
  absl::StatusOr<PipelineOptions> pipeline = PipelineOptionsFromFlags();
  if (!pipeline.ok() && !queued) return Fail(kExitUsage, pipeline.status());
  absl::Status reaper = BecomeChildSubreaper();
  if (!reaper.ok()) return Fail(kExitFailure, reaper);
  return queued ? RunQueued(std::move(pipeline)) : RunLocal(*std::move(pipeline));
}
