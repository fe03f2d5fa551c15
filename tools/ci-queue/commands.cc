#include "commands.h"

#include <algorithm>
#include <cstdio>

#include "absl/algorithm/container.h"
#include "absl/random/random.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_replace.h"
#include "absl/strings/str_split.h"
#include "ciagent/base/comma_list.h"
#include "ciagent/base/exit_code.h"
#include "ciagent/base/json_writer.h"
#include "ciagent/base/status_macros.h"
#include "ciagent/base/stop_signal.h"
#include "ciagent/cache/prune.h"
#include "ciagent/queue/test_history.h"

namespace ciagent {
namespace {

void Print(const std::string& text) {
  std::fwrite(text.data(), 1, text.size(), stdout);
  std::fflush(stdout);
}

// A JSON document on a line of its own.
void PrintJson(const std::string& json) { Print(json + "\n"); }

template <typename T>
absl::StatusOr<T> WithContext(absl::StatusOr<T> value,
                              absl::string_view context) {
  if (!value.ok()) return Annotate(value.status(), context);
  return value;
}

absl::StatusOr<int> RunStats(QueueAdmin& admin, const CommandLine& line) {
  while (true) {
    CIAGENT_ASSIGN_OR_RETURN(QueueStats stats, admin.Stats());
    if (line.json) {
      PrintJson(StatsJson(stats, admin.options()));
    } else {
      // --watch on a terminal redraws in place.
      Print(absl::StrCat(line.watch && line.terminal ? "\033[H\033[2J" : "",
                         StatsText(stats, admin.options(), line.style)));
    }
    if (!line.watch || !SleepUnlessStopped(line.interval)) return kExitOk;
  }
}

absl::StatusOr<int> RunList(QueueAdmin& admin, const CommandLine& line) {
  JobListOptions list{.limit = line.limit};
  if (!line.status.empty()) {
    list.status = JobStatusFromName(line.status);
    if (!list.status.has_value()) {
      return absl::InvalidArgumentError(absl::StrCat(
          "--status ", line.status, ": not a status (queued, running, "
          "success, failed, timeout, cancelled, error)"));
    }
  }
  CIAGENT_ASSIGN_OR_RETURN(std::vector<JobRecord> jobs, admin.ListJobs(list));
  Print(line.json ? JobListJson(jobs) + "\n"
                  : JobListText(jobs, absl::Now(), line.style));
  return kExitOk;
}

absl::StatusOr<int> RunShow(QueueAdmin& admin, const CommandLine& line) {
  CIAGENT_ASSIGN_OR_RETURN(JobRecord job, admin.GetJob(line.operands[0]));
  Print(line.json ? JobJson(job) + "\n"
                  : JobText(job, absl::Now(), line.style));
  return kExitOk;
}

absl::StatusOr<int> RunLogs(QueueAdmin& admin, const CommandLine& line) {
  int previous_attempt = 0;
  CIAGENT_ASSIGN_OR_RETURN(
      JobStatus status,
      admin.ReadLog(line.operands[0], {.step = line.step, .follow = line.follow},
                    [&](const LogEntry& entry) {
                      Print(line.json ? LogLineJson(entry) + "\n"
                                      : LogLineText(entry, previous_attempt,
                                                    line.style));
                      previous_attempt = entry.attempt;
                    }));
  if (!line.follow) return kExitOk;
  return status == JobStatus::kSuccess ? kExitOk : kExitFailure;
}

absl::StatusOr<int> RunCancel(QueueAdmin& admin, const CommandLine& line) {
  const std::string& job_id = line.operands[0];
  CIAGENT_RETURN_IF_ERROR(admin.RequestCancel(
      job_id, line.reason.empty() ? "cancelled with ci-queue" : line.reason));
  Print(absl::StrCat("cancel requested for ", job_id,
                     ": a queued job ends when claimed, a running one within "
                     "a second or so\n"));
  return kExitOk;
}

absl::StatusOr<int> RunEnqueue(QueueAdmin& admin, const CommandLine& line) {
  if (line.repo.empty() || line.branch.empty() || line.commit.empty()) {
    return absl::InvalidArgumentError(
        "enqueue needs --repo, --branch and --commit");
  }
  Job job{.job_id = line.job_id, .repo = line.repo, .branch = line.branch,
          .commit = line.commit};
  if (job.job_id.empty()) {
    job.job_id = MakeJobId(line.repo, absl::Now(),
                           absl::Uniform<uint16_t>(absl::BitGen()));
  }
  if (line.timeout_s > 0) job.timeout = absl::Seconds(line.timeout_s);
  job.steps = SplitCommaList(line.steps);
  // The agents would dead-letter a job that breaks a rule: refuse it here.
  CIAGENT_ASSIGN_OR_RETURN(
      Job valid,
      WithContext(ParseJob(JobToJson(job), admin.options().parse), "enqueue"));
  CIAGENT_RETURN_IF_ERROR(admin.Enqueue(valid).status());
  Print(valid.job_id + "\n");
  return kExitOk;
}

// `quarantine list|add|remove --repo URL [NAME...]`: the operators' set of
// tests that run and are reported but cannot fail a job (queue/test_history.h).
absl::StatusOr<int> RunQuarantine(const CommandLine& line,
                                  absl::string_view action) {
  if (line.repo.empty()) {
    return absl::InvalidArgumentError("quarantine needs --repo");
  }
  TestHistoryStore store(line.redis, {});
  if (action != "list") {
    CIAGENT_ASSIGN_OR_RETURN(
        int64_t changed, action == "add"
                             ? store.Quarantine(line.repo, line.operands)
                             : store.Release(line.repo, line.operands));
    Print(absl::StrCat(action == "add" ? "quarantined " : "released ", changed,
                       " of ", line.operands.size(), " tests of ", line.repo,
                       "\n"));
    return kExitOk;
  }
  CIAGENT_ASSIGN_OR_RETURN(std::vector<std::string> names,
                           store.ReadQuarantine(line.repo));
  if (line.json) {
    std::string array = "[";
    for (const std::string& name : names) {
      if (array.size() > 1) array += ",";
      AppendJsonString(&array, name);
    }
    PrintJson(array + "]");
  } else {
    for (const std::string& name : names) Print(name + "\n");
  }
  return kExitOk;
}

absl::StatusOr<int> RunQuarantineList(QueueAdmin&, const CommandLine& line) {
  return RunQuarantine(line, "list");
}
absl::StatusOr<int> RunQuarantineAdd(QueueAdmin&, const CommandLine& line) {
  return RunQuarantine(line, "add");
}
absl::StatusOr<int> RunQuarantineRemove(QueueAdmin&, const CommandLine& line) {
  return RunQuarantine(line, "remove");
}

absl::StatusOr<int> RunDeadList(QueueAdmin& admin, const CommandLine& line) {
  CIAGENT_ASSIGN_OR_RETURN(std::vector<DeadLetter> letters,
                           admin.ListDeadLetters(line.limit));
  Print(line.json ? DeadLettersJson(letters) + "\n"
                  : DeadLettersText(letters, absl::Now(), line.style));
  return kExitOk;
}

absl::StatusOr<int> RunDeadRedrive(QueueAdmin& admin, const CommandLine& line) {
  if (line.all == !line.operands.empty()) {
    return absl::InvalidArgumentError(
        "dead redrive takes dead-letter ids or --all (one of the two)");
  }
  std::vector<RedriveResult> results;
  if (line.all) {
    CIAGENT_ASSIGN_OR_RETURN(results, admin.RedriveAll(line.dry_run));
  }
  for (const std::string& id : line.operands) {
    CIAGENT_ASSIGN_OR_RETURN(RedriveResult result,
                             admin.Redrive(id, line.dry_run));
    results.push_back(std::move(result));
  }
  Print(line.json ? RedriveJson(results) + "\n"
                  : RedriveText(results, line.style));
  for (const RedriveResult& result : results) {
    if (result.outcome == RedriveOutcome::kRefused ||
        result.outcome == RedriveOutcome::kMissing) {
      return kExitFailure;
    }
  }
  return kExitOk;
}

absl::StatusOr<int> RunDeadPurge(QueueAdmin& admin, const CommandLine& line) {
  if (line.older_than.empty()) {
    return absl::InvalidArgumentError("dead purge needs --older-than, e.g. 7d");
  }
  CIAGENT_ASSIGN_OR_RETURN(
      absl::Duration age,
      WithContext(ParsePruneAge(line.older_than), "--older-than"));
  CIAGENT_ASSIGN_OR_RETURN(int64_t count,
                           admin.PurgeDeadLetters(age, line.dry_run));
  if (line.json) {
    JsonObjectBuilder report;
    report.Add(line.dry_run ? "would_purge" : "purged", count)
        .Add("older_than", line.older_than);
    PrintJson(std::move(report).Build());
  } else {
    Print(absl::StrCat(line.dry_run ? "would purge " : "purged ", count,
                       " dead letters older than ", line.older_than, "\n"));
  }
  return kExitOk;
}

struct Command {
  const char* name;
  size_t min_operands;
  size_t max_operands;
  std::vector<std::string> flags;  // besides redis, stream and group
  CommandFunction run;
};

const std::vector<Command>& Commands() {
  constexpr size_t kMany = 1000;
  static const auto* const commands = new std::vector<Command>{
      {"stats", 0, 0, {"json", "watch", "interval"}, RunStats},
      {"list", 0, 0, {"json", "status", "limit"}, RunList},
      {"show", 1, 1, {"json"}, RunShow},
      {"logs", 1, 1, {"json", "follow", "step"}, RunLogs},
      {"cancel", 1, 1, {"reason"}, RunCancel},
      {"enqueue", 0, 0,
       {"repo", "branch", "commit", "job_id", "steps", "timeout"}, RunEnqueue},
      {"dead list", 0, 0, {"json", "limit"}, RunDeadList},
      {"dead redrive", 0, kMany, {"json", "all", "dry_run"}, RunDeadRedrive},
      {"dead purge", 0, 0, {"json", "older_than", "dry_run"}, RunDeadPurge},
      {"quarantine list", 0, 0, {"json", "repo"}, RunQuarantineList},
      {"quarantine add", 1, kMany, {"repo"}, RunQuarantineAdd},
      {"quarantine remove", 1, kMany, {"repo"}, RunQuarantineRemove},
#ifdef CIAGENT_WITH_WEBHOOK
      {"webhook", 0, 0,
       {"listen", "path", "allowed_hosts", "branches", "steps", "timeout",
        "max_body_bytes"},
       RunWebhook},
#endif
  };
  return *commands;
}

}  // namespace

absl::StatusOr<CommandFunction> ChooseCommand(
    const std::vector<std::string>& args,
    const std::vector<std::string>& flags_given,
    std::vector<std::string>* operands) {
  for (const Command& command : Commands()) {
    const std::vector<std::string> words = absl::StrSplit(command.name, ' ');
    if (args.size() < words.size() ||
        !std::equal(words.begin(), words.end(), args.begin())) {
      continue;
    }
    operands->assign(args.begin() + words.size(), args.end());
    if (operands->size() < command.min_operands ||
        operands->size() > command.max_operands) {
      return absl::InvalidArgumentError(absl::StrCat(
          "wrong number of arguments for ", command.name, " (see --help)"));
    }
    for (const std::string& flag : flags_given) {
      if (flag != "redis" && flag != "stream" && flag != "group" &&
          absl::c_find(command.flags, flag) == command.flags.end()) {
        return absl::InvalidArgumentError(absl::StrCat(
            "--", absl::StrReplaceAll(flag, {{"_", "-"}}), " does not apply to ",
            command.name, " (see --help)"));
      }
    }
    return command.run;
  }
  return absl::InvalidArgumentError(absl::StrCat(
      "unknown command \"", absl::StrJoin(args, " "), "\" (see --help)"));
}

}  // namespace ciagent
