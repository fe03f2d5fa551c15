// ci-queue: operates the CI job queue from a terminal. See --help.
#include <unistd.h>

#include <algorithm>
#include <string>

#include "absl/flags/flag.h"
#include "absl/strings/str_cat.h"
#include "ciagent/base/exit_code.h"
#include "ciagent/base/log.h"
#include "ciagent/base/status_macros.h"
#include "commands.h"
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
ABSL_FLAG(bool, json, false, "read commands: JSON instead of text");
ABSL_FLAG(bool, watch, false, "stats: refresh every --interval s until Ctrl-C");
ABSL_FLAG(int, interval, 2, "stats --watch: seconds between refreshes");
ABSL_FLAG(std::string, status, "", "list: only jobs in this status");
ABSL_FLAG(int, limit, 20, "list, dead list: at most this many");
ABSL_FLAG(bool, follow, false, "logs: wait for new lines until the job ends");
ABSL_FLAG(std::string, step, "", "logs: only the lines of this step");
ABSL_FLAG(std::string, reason, "", "cancel: why, stored as cancel_reason");
ABSL_FLAG(std::string, repo, "", "enqueue, quarantine: repository URL");
ABSL_FLAG(std::string, branch, "", "enqueue: branch");
ABSL_FLAG(std::string, commit, "", "enqueue: full commit id");
ABSL_FLAG(std::string, job_id, "", "enqueue: the job id; default: "
          "<repository name>-<UTC time>-<4 hex digits>");
ABSL_FLAG(std::string, steps, "",
          "enqueue, webhook: steps, comma-separated; default: all");
ABSL_FLAG(int, timeout, 0,
          "enqueue, webhook: job timeout in s; 0: the agent's default");
ABSL_FLAG(bool, all, false, "dead redrive: every dead letter");
ABSL_FLAG(bool, dry_run, false, "dead redrive, dead purge: change nothing");
ABSL_FLAG(std::string, older_than, "", "dead purge: age, e.g. 7d, 36h, 1d12h");

namespace {

constexpr char kUsage[] =
    R"(Operates the CI job queue: looks at it, follows jobs, deals with dead letters.

  ci-queue stats [--json] [--watch]     waiting, pending, consumers, dead letters
  ci-queue list [--status S] [--limit N] [--json]   recent jobs, newest first
  ci-queue show JOB [--json]            a job's status: steps, tests, image, cache
  ci-queue logs JOB [--follow] [--step S] [--json]  its log; --follow until it ends
  ci-queue cancel JOB [--reason TEXT]
  ci-queue enqueue --repo URL --branch B --commit SHA [--steps a,b] [--timeout S]
                   [--job-id ID]        prints the job id
  ci-queue dead list [--limit N] [--json]
  ci-queue dead redrive ID...|--all [--dry-run] [--json]
                   back on the stream with a fresh delivery count; a dead letter
                   that would be dead-lettered again is refused with its reason
  ci-queue dead purge --older-than AGE [--dry-run] [--json]
  ci-queue quarantine list|add|remove --repo URL [TEST...] [--json]
                   tests of a repository that run and are reported but cannot
                   fail a job (names as in the job's results)
  ci-queue webhook --allowed-hosts H[,H] [--listen ADDR:PORT] [--path P]
                   [--branches main,release/*] [--steps a,b] [--timeout S]
                   serves Gitea push webhooks (X-Gitea-Signature, or GitHub's
                   X-Hub-Signature-256; secret from CI_WEBHOOK_SECRET_FILE) and
                   enqueues each push once; GET /healthz, GET /metrics

Every command takes --redis, --stream and --group. The Redis password comes
from the environment only: REDIS_PASSWORD or REDIS_PASSWORD_FILE. Colour only
when stdout is a terminal (and NO_COLOR is unset).

Exit codes:
  0  done; logs --follow: the job succeeded
  1  logs --follow: the job ended failed, timeout, cancelled or error;
     dead redrive: a dead letter was refused or missing; Redis unreachable
  2  usage error (unknown command, flag or status, bad operand), no such job,
     or cancel of a finished job
  130  interrupted while following a log

Logs: one JSON object per line on stderr (CIAGENT_LOG_LEVEL=debug|info|...).)";

void FillFromFlags(ciagent::CommandLine* line) {
  line->json = absl::GetFlag(FLAGS_json);
  line->watch = absl::GetFlag(FLAGS_watch);
  line->interval = absl::Seconds(std::max(1, absl::GetFlag(FLAGS_interval)));
  line->status = absl::GetFlag(FLAGS_status);
  line->limit = absl::GetFlag(FLAGS_limit);
  line->follow = absl::GetFlag(FLAGS_follow);
  line->step = absl::GetFlag(FLAGS_step);
  line->reason = absl::GetFlag(FLAGS_reason);
  line->job_id = absl::GetFlag(FLAGS_job_id);
  line->repo = absl::GetFlag(FLAGS_repo);
  line->branch = absl::GetFlag(FLAGS_branch);
  line->commit = absl::GetFlag(FLAGS_commit);
  line->steps = absl::GetFlag(FLAGS_steps);
  line->timeout_s = absl::GetFlag(FLAGS_timeout);
  line->all = absl::GetFlag(FLAGS_all);
  line->dry_run = absl::GetFlag(FLAGS_dry_run);
  line->older_than = absl::GetFlag(FLAGS_older_than);
  line->terminal = isatty(STDOUT_FILENO) == 1;
  line->style.color = line->terminal && !line->json &&
                      ciagent::EnvOr("NO_COLOR", "").empty();
}

}  // namespace

int main(int argc, char** argv) {
  using namespace ciagent;
  const auto fail = [](int code, const absl::Status& status) {
    LogError("ci-queue failed", {{"error", status}, {"exit_code", code}});
    return code;
  };
  absl::StatusOr<ToolStart> start =
      StartTool(argc, argv, kUsage, {.positional_args = true});
  if (!start.ok()) return fail(kExitUsage, start.status());
  if (start->help_shown) return kExitOk;
  CommandLine line;
  absl::StatusOr<CommandFunction> command =
      ChooseCommand(start->args, start->flags_given, &line.operands);
  if (!command.ok()) return fail(kExitUsage, command.status());

  absl::StatusOr<RedisOptions> redis = RedisOptionsFromUrl(FlagOrEnv(
      absl::GetFlag(FLAGS_redis), "REDIS_URL", "redis://127.0.0.1:6379"));
  absl::Status password =
      redis.ok() ? ApplyRedisSettings(&*redis) : redis.status();
  if (!password.ok()) return fail(kExitUsage, password);
  QueueOptions queue{.stream = absl::GetFlag(FLAGS_stream),
                     .group = absl::GetFlag(FLAGS_group)};

  FillFromFlags(&line);
  line.redis = *redis;
  if (line.limit <= 0) {
    return fail(kExitUsage, absl::InvalidArgumentError("--limit must be positive"));
  }

  QueueAdmin admin(*redis, queue);
  absl::StatusOr<int> code = (*command)(admin, line);
  if (code.ok()) return *code;
  if (absl::IsCancelled(code.status())) return 130;
  return fail(ExitCodeFor(code.status()), code.status());
}
