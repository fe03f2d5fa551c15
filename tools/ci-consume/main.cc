// ci-consume: claims one CI job from the Redis stream and writes
// <workdir>/job.json for the tools that run it. See --help.
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>

#include "absl/flags/flag.h"
#include "absl/strings/str_cat.h"
#include "ciagent/base/exit_code.h"
#include "ciagent/base/log.h"
#include "ciagent/base/status_macros.h"
#include "ciagent/agent/job_intake.h"
#include "redis_flags.h"
#include "tool_flags.h"

// Defaults from the environment are resolved after parsing (FlagOrEnv).
ABSL_FLAG(std::string, redis, "",
          "Redis URL redis://[user@]host:port[/db], rediss:// (TLS), "
          "redis+sentinel://host1:26379,host2:26379/<master>[/db], "
          "rediss+sentinel://; default: env REDIS_URL, else "
          "redis://127.0.0.1:6379");
ABSL_FLAG(std::string, stream, "ci-jobs", "job stream");
ABSL_FLAG(std::string, group, "ci-workers", "consumer group");
ABSL_FLAG(std::string, consumer, "",
          "consumer name, unique per agent; default: env POD_NAME, else the "
          "hostname");
ABSL_FLAG(int, wait, 30, "seconds to wait for a job");
ABSL_FLAG(int, lease, 60,
          "lease in seconds: a job idle this long is reclaimed");
ABSL_FLAG(int, max_deliveries, 3, "deliveries before a job is dead-lettered");
ABSL_FLAG(int64_t, max_entry_bytes, 1 << 20, "larger entries are dead letters");
ABSL_FLAG(std::string, workdir, "", "directory for job.json and src/; "
          "default: env CI_WORKDIR, else ./ci-work");
ABSL_FLAG(bool, create_group, false, "create the consumer group if missing");
ABSL_FLAG(std::string, cache_dir, "",
          "cache volume root (git mirrors under git/); default: env "
          "CI_CACHE_DIR; none: fetch without a mirror");
ABSL_FLAG(std::string, ca_file, "",
          "PEM CA bundle for HTTPS git servers; default: env CI_CA_FILE");
ABSL_FLAG(bool, fetch, true, "fetch the source into <workdir>/src");
ABSL_FLAG(int, fetch_timeout, 1200,
          "seconds a fetch may take before the job is requeued (exit 1)");
ABSL_FLAG(bool, allow_file_urls, false,
          "accept file:// repository URLs (local testing only)");

namespace {

constexpr char kDefaultRedis[] = "redis://127.0.0.1:6379";

constexpr char kUsage[] =
    R"(Claims one CI job from a Redis stream and fetches its source.

Reclaims a job whose owner's lease lapsed, else waits up to --wait seconds for
a new one. Dead-lettered on the way: inside Redis, unread, entries over
--max-entry-bytes, without a `job` field, with a job over 64 KiB or delivered
more than --max-deliveries times; here, jobs that break a rule. The
job is marked running, its commit checked out into <workdir>/src (through the
mirror cache under --cache-dir, renewing the lease), and <workdir>/job.json
(no secrets) written; its path is printed on stdout.

Secrets come from the environment only: REDIS_PASSWORD or REDIS_PASSWORD_FILE
(rather than a password in the URL, which the process list would show);
GIT_USERNAME and GIT_TOKEN / GIT_TOKEN_FILE (or GITEA_TOKEN[_FILE]).

Exit codes:
  0  a job is ready: the path of job.json is on stdout
  1  failure (Redis unreachable until the deadline, transient fetch or disk
     error, --fetch-timeout, SIGTERM while fetching); the job was requeued
  2  usage or configuration error (bad flag, bad URL, missing group without
     --create-group, rejected Redis password)
  3  no job within --wait, or SIGTERM/SIGINT while waiting (nothing claimed)
  4  a job was claimed but ended during intake: finalized as error (e.g. bad
     git credentials, unknown commit) or cancelled; nothing to build

Logs: one JSON object per line on stderr (CIAGENT_LOG_LEVEL=debug|info|...).)";

// Fills IntakeOptions from flags and environment.
absl::StatusOr<ciagent::IntakeOptions> OptionsFromFlags() {
  using namespace ciagent;
  IntakeOptions o;
  CIAGENT_ASSIGN_OR_RETURN(
      o.redis, RedisOptionsFromUrl(FlagOrEnv(absl::GetFlag(FLAGS_redis),
                                             "REDIS_URL", kDefaultRedis)));
  CIAGENT_RETURN_IF_ERROR(ApplyRedisSettings(&o.redis));
  o.queue.stream = absl::GetFlag(FLAGS_stream);
  o.queue.group = absl::GetFlag(FLAGS_group);
  o.queue.consumer = absl::GetFlag(FLAGS_consumer);
  if (o.queue.consumer.empty()) o.queue.consumer = DefaultConsumerName();
  o.queue.lease = absl::Seconds(absl::GetFlag(FLAGS_lease));
  o.queue.renew_interval = o.queue.lease / 3;
  o.queue.max_deliveries = absl::GetFlag(FLAGS_max_deliveries);
  o.queue.max_entry_bytes = absl::GetFlag(FLAGS_max_entry_bytes);
  o.queue.create_group = absl::GetFlag(FLAGS_create_group);
  o.queue.parse.allow_file_urls = absl::GetFlag(FLAGS_allow_file_urls);
  o.wait = absl::Seconds(absl::GetFlag(FLAGS_wait));
  o.workdir = FlagOrEnv(absl::GetFlag(FLAGS_workdir), "CI_WORKDIR", "ci-work");
  o.fetch_source = absl::GetFlag(FLAGS_fetch);
  o.fetch_timeout = absl::Seconds(absl::GetFlag(FLAGS_fetch_timeout));
  // A stalled transfer cannot be interrupted: leave, the job is requeued.
  o.on_fetch_timeout = [] { std::_Exit(kExitFailure); };
  o.fetch.cache_dir =
      FlagOrEnv(absl::GetFlag(FLAGS_cache_dir), "CI_CACHE_DIR", "");
  o.fetch.ca_file = FlagOrEnv(absl::GetFlag(FLAGS_ca_file), "CI_CA_FILE", "");
  o.fetch.allow_file_urls = o.queue.parse.allow_file_urls;
  CIAGENT_ASSIGN_OR_RETURN(o.fetch.credentials, GitCredentialsFromEnv());
  CIAGENT_RETURN_IF_ERROR(Annotate(
      ValidateIntakeOptions(o), "flags --consumer, --wait, --lease, "
                                "--max-deliveries, --max-entry-bytes, --ca-file"));
  return o;
}

}  // namespace

int main(int argc, char** argv) {
  using namespace ciagent;
  const auto fail = [](int code, const absl::Status& status) {
    LogError("ci-consume failed", {{"error", status}, {"exit_code", code}});
    return code;
  };
  absl::StatusOr<ToolStart> start = StartTool(argc, argv, kUsage);
  if (!start.ok()) return fail(ExitCodeFor(start.status()), start.status());
  if (start->help_shown) return kExitOk;
  absl::StatusOr<IntakeOptions> options = OptionsFromFlags();
  if (!options.ok()) return fail(kExitUsage, options.status());
  LogInfo("waiting for a job",
          {{"redis", RedactedRedisUrl(options->redis)},
           {"stream", options->queue.stream}, {"group", options->queue.group},
           {"consumer", options->queue.consumer}, {"wait_ms", options->wait}});
  absl::StatusOr<IntakeResult> intake = TakeJob(*options);
  if (!intake.ok()) return fail(ExitCodeFor(intake.status()), intake.status());
  switch (intake->outcome) {
    case IntakeOutcome::kReady:
      std::printf("%s\n", intake->job_file.c_str());
      return kExitOk;
    case IntakeOutcome::kNoJob:
      LogInfo("no job claimed", {{"reason", intake->reason}});
      return kExitNothingToDo;
    case IntakeOutcome::kJobEnded:
      LogInfo("job ended during intake", {{"reason", intake->reason}});
      return kExitJobEnded;
    case IntakeOutcome::kRequeued:
    case IntakeOutcome::kLeaseLost:
      LogWarning("job left for another agent", {{"reason", intake->reason}});
      return kExitFailure;
  }
  return kExitFailure;
}
