// ci-consume: claims one CI job from the Redis stream and writes
// <workdir>/job.json for the tools that run it. See --help.
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <string>

#include "absl/flags/flag.h"
#include "absl/strings/str_cat.h"
#include "ciagent/base/exit_code.h"
#include "ciagent/base/log.h"
#include "ciagent/queue/claim_file.h"
#include "ciagent/queue/job_queue.h"
#include "tool_flags.h"

namespace {

std::string DefaultConsumer() {
  char host[256] = {};
  ::gethostname(host, sizeof(host) - 1);
  return ciagent::EnvOr("POD_NAME", host);
}

constexpr char kUsage[] = R"(Claims one CI job from a Redis stream.

Reclaims a job whose owner's lease lapsed, else waits up to --wait seconds for
a new one. Malformed jobs and jobs delivered more than --max-deliveries times
go to the dead-letter stream on the way. The claimed job is marked running and
<workdir>/job.json is written (the job, its stream entry, attempt, consumer and
Redis settings without secrets); its path is printed on stdout.

Redis password: REDIS_PASSWORD or REDIS_PASSWORD_FILE (preferred over a
password in the URL, which would be visible in the process list).

Exit codes:
  0  a job is ready: the path of job.json is on stdout
  1  failure (Redis unreachable until the deadline, disk error); a claimed
     job is left for redelivery
  2  usage or configuration error (bad flag, bad URL, missing group without
     --create-group, rejected password)
  3  no job within --wait, or SIGTERM/SIGINT while waiting (nothing claimed)

Logs: one JSON object per line on stderr (CIAGENT_LOG_LEVEL=debug|info|...).)";

}  // namespace

// Defaults that come from the environment are resolved after parsing, so
// --help never prints an environment value (REDIS_URL may hold a password).
ABSL_FLAG(std::string, redis, "",
          "Redis URL redis://[user@]host:port[/db]; default: env REDIS_URL, "
          "else redis://127.0.0.1:6379");
ABSL_FLAG(std::string, stream, "ci-jobs", "job stream");
ABSL_FLAG(std::string, group, "ci-workers", "consumer group");
ABSL_FLAG(std::string, consumer, "",
          "consumer name, unique per agent; default: env POD_NAME, else the hostname");
ABSL_FLAG(int, wait, 30, "seconds to wait for a job");
ABSL_FLAG(int, lease, 60, "lease in seconds: a job idle this long is reclaimed");
ABSL_FLAG(int, max_deliveries, 3, "deliveries before a job is dead-lettered");
ABSL_FLAG(std::string, workdir, "",
          "directory for job.json and the job's files; default: env CI_WORKDIR, "
          "else ./ci-work");
ABSL_FLAG(bool, create_group, false, "create the consumer group if missing");
ABSL_FLAG(bool, allow_file_urls, false,
          "accept file:// repository URLs (local testing only)");

int main(int argc, char** argv) {
  using namespace ciagent;
  const auto fail = [](int code, const absl::Status& status) {
    LogError("ci-consume failed", {{"error", status}, {"exit_code", code}});
    return code;
  };
  absl::StatusOr<ToolStart> start = StartTool(argc, argv, kUsage);
  if (!start.ok()) return fail(ExitCodeFor(start.status()), start.status());
  if (start->help_shown) return kExitOk;

  const auto flag_or = [](const std::string& flag, std::string fallback) {
    return flag.empty() ? fallback : flag;
  };
  absl::StatusOr<RedisOptions> redis = RedisOptionsFromUrl(flag_or(
      absl::GetFlag(FLAGS_redis), EnvOr("REDIS_URL", "redis://127.0.0.1:6379")));
  if (!redis.ok()) return fail(kExitUsage, redis.status());
  if (absl::Status s = ApplyRedisPasswordFromEnv(&*redis); !s.ok()) {
    return fail(kExitUsage, s);
  }
  QueueOptions options;
  options.stream = absl::GetFlag(FLAGS_stream);
  options.group = absl::GetFlag(FLAGS_group);
  options.consumer = flag_or(absl::GetFlag(FLAGS_consumer), DefaultConsumer());
  options.lease = absl::Seconds(absl::GetFlag(FLAGS_lease));
  options.renew_interval = options.lease / 3;
  options.max_deliveries = absl::GetFlag(FLAGS_max_deliveries);
  options.create_group = absl::GetFlag(FLAGS_create_group);
  options.parse.allow_file_urls = absl::GetFlag(FLAGS_allow_file_urls);
  const int wait = absl::GetFlag(FLAGS_wait);
  if (options.consumer.empty() || wait < 0 || absl::GetFlag(FLAGS_lease) <= 0 ||
      options.max_deliveries <= 0) {
    return fail(kExitUsage, absl::InvalidArgumentError(
        "--consumer must be set; --wait >= 0; --lease and --max-deliveries > 0"));
  }
  const std::filesystem::path workdir =
      flag_or(absl::GetFlag(FLAGS_workdir), EnvOr("CI_WORKDIR", "ci-work"));
  std::error_code ec;
  std::filesystem::create_directories(workdir, ec);
  if (ec) {
    return fail(kExitUsage, absl::InvalidArgumentError(absl::StrCat(
        "--workdir ", workdir.string(), ": ", ec.message())));
  }

  LogInfo("waiting for a job", {{"redis", RedactedRedisUrl(*redis)},
                                {"stream", options.stream},
                                {"group", options.group},
                                {"consumer", options.consumer},
                                {"wait_s", wait}});
  JobQueue queue(*redis, options);
  absl::StatusOr<ClaimedJob> claim = queue.Claim(absl::Seconds(wait));
  if (!claim.ok()) {
    const absl::StatusCode code = claim.status().code();
    if (code == absl::StatusCode::kDeadlineExceeded ||
        code == absl::StatusCode::kCancelled) {
      LogInfo("no job claimed", {{"reason", claim.status().message()}});
      return kExitNothingToDo;
    }
    return fail(ExitCodeFor(claim.status()), claim.status());
  }
  SetLogJobId(claim->job.job_id);
  const std::string job_file = (workdir / "job.json").string();
  if (absl::Status s = WriteClaimFile(job_file, *claim, options, *redis); !s.ok()) {
    absl::Status requeued = queue.Requeue(*claim, s.message());
    LogError("could not write the claim file; job requeued",
             {{"error", s}, {"requeue", requeued}});
    return kExitFailure;
  }
  LogInfo("claimed job", {{"stream_id", claim->stream_id},
                          {"attempt", claim->attempt},
                          {"repo", claim->job.repo},
                          {"commit", claim->job.commit},
                          {"job_file", job_file}});
  std::printf("%s\n", job_file.c_str());
  return kExitOk;
}
