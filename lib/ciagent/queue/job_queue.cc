#include "ciagent/queue/job_queue.h"

#include <algorithm>
#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "ciagent/base/backoff.h"
#include "ciagent/base/log.h"
#include "ciagent/base/status_macros.h"
#include "ciagent/base/stop_signal.h"
#include "ciagent/queue/internal/scripts.h"

namespace ciagent {

using queue_internal::BeginScript;
using queue_internal::CancelScript;
using queue_internal::ClaimScript;
using queue_internal::DeadLetterScript;
using queue_internal::EnqueueScript;
using queue_internal::FinalizeAndClaimScript;
using queue_internal::FinalizeScript;
using queue_internal::RenewScript;
using queue_internal::RequeueScript;

// One stream entry as delivered to this consumer.
struct JobQueue::Entry {
  std::string id;
  std::vector<std::pair<std::string, std::string>> fields;
  int deliveries = 1;
  // The claim script already marked the job running, and saw these.
  bool begun = false;
  std::string cancel_requested;
  std::string cancel_reason;
  // Set when the claim script dead-lettered the entry instead.
  std::string dead_reason;
  std::string dead_letter_id;
  std::string dead_job_id;

  const std::string* Field(absl::string_view name) const {
    for (const auto& [key, value] : fields) {
      if (key == name) return &value;
    }
    return nullptr;
  }
};

namespace {

// How far Requeue backdates a delivery: far beyond any lease.
constexpr absl::Duration kRequeueIdle = absl::Hours(24 * 365);

std::string Millis(absl::Duration d) {
  return absl::StrCat(absl::ToInt64Milliseconds(d));
}

// Parses {id, {field, value, ...}} (XREADGROUP / XAUTOCLAIM entry shape).
absl::StatusOr<std::vector<std::pair<std::string, std::string>>> EntryFields(
    const RedisReply& fields) {
  std::vector<std::pair<std::string, std::string>> out;
  if (!fields.is_array() || fields.elements.size() % 2 != 0) {
    return absl::InternalError("stream entry: malformed field list");
  }
  for (size_t i = 0; i + 1 < fields.elements.size(); i += 2) {
    out.emplace_back(fields.elements[i].str, fields.elements[i + 1].str);
  }
  return out;
}

std::vector<std::string> FenceArgs(const QueueOptions& options,
                                   const ClaimedJob& claim) {
  return {options.group, claim.stream_id, claim.consumer,
          absl::StrCat(claim.attempt)};
}

void AppendFields(
    std::vector<std::string>* args,
    const std::vector<std::pair<std::string, std::string>>& fields) {
  for (const auto& [key, value] : fields) {
    args->push_back(key);
    args->push_back(value);
  }
}

}  // namespace

std::string QueueOptions::DeadLetterStream() const {
  return dead_letter_stream.empty() ? absl::StrCat(stream, ":dead")
                                    : dead_letter_stream;
}

std::string QueueOptions::RecentJobsKey() const {
  return absl::StrCat(stream, ":recent");
}

std::string QueueOptions::StatusKey(absl::string_view job_id) const {
  return absl::StrCat(key_prefix, "{", job_id, "}");
}

std::string QueueOptions::LogKey(absl::string_view job_id) const {
  return absl::StrCat(StatusKey(job_id), ":log");
}

JobQueue::JobQueue(RedisOptions redis, QueueOptions options, Clock* clock)
    : redis_(std::move(redis)), options_(std::move(options)), clock_(clock) {}

absl::Status JobQueue::EnsureGroup() {
  absl::StatusOr<RedisReply> reply = redis_.Command(
      {"XGROUP", "CREATE", options_.stream, options_.group, "0", "MKSTREAM"});
  if (!reply.ok() && absl::StrContains(reply.status().message(), "BUSYGROUP")) {
    return absl::OkStatus();
  }
  return Annotate(reply.status(), absl::StrCat("create group ", options_.group,
                                               " on stream ", options_.stream));
}

absl::StatusOr<std::string> JobQueue::Enqueue(const Job& job) {
  CIAGENT_ASSIGN_OR_RETURN(std::optional<std::string> id,
                           AddJob(EnqueueScript(), job));
  return *std::move(id);
}

absl::StatusOr<std::optional<std::string>> JobQueue::EnqueueIfNew(
    const Job& job) {
  return AddJob(queue_internal::EnqueueNewScript(), job);
}

absl::StatusOr<std::optional<std::string>> JobQueue::AddJob(
    const RedisScript& script, const Job& job) {
  if (!group_ensured_) {
    CIAGENT_RETURN_IF_ERROR(EnsureGroup());
    group_ensured_ = true;
  }
  const std::string now = FormatTimestamp(clock_->Now());
  std::vector<std::string> args = {
      options_.group, JobToJson(job), job.job_id,
      absl::StrCat(options_.recent_jobs_max_len)};
  AppendFields(&args, queue_internal::QueuedStatusFields(job, now));
  CIAGENT_ASSIGN_OR_RETURN(
      RedisReply reply,
      redis_.Eval(script,
                  {options_.stream, options_.StatusKey(job.job_id),
                   options_.RecentJobsKey()},
                  args));
  if (!reply.is_array() || reply.elements.size() != 2) {
    return absl::InternalError(absl::StrCat(
        "enqueue ", job.job_id, " on stream ", options_.stream,
        ": unexpected reply from the enqueue script"));
  }
  if (reply.elements[1].integer >= 0) {
    LogInfo("consumer group lag repaired",
            {{"stream", options_.stream},
             {"group", options_.group},
             {"undelivered", reply.elements[1].integer}});
  }
  if (reply.elements[0].str.empty()) return std::nullopt;  // known already
  redis_.ConfirmReplicated(absl::StrCat("enqueue ", job.job_id));
  return reply.elements[0].str;
}

absl::StatusOr<ClaimedJob> JobQueue::Claim(absl::Duration wait) {
  const absl::Time deadline = clock_->Now() + wait;
  // At most a second between attempts: an agent takes its next job within
  // about a second of Redis (or a new Sentinel master) being back.
  Backoff backoff(BackoffOptions{.max = absl::Seconds(1)});
  bool answered = false;
  std::optional<absl::Time> unavailable_since;
  while (true) {
    if (StopRequested()) {
      return absl::CancelledError("stop requested while waiting for a job");
    }
    const absl::Duration left =
        std::max(deadline - clock_->Now(), absl::ZeroDuration());
    absl::StatusOr<std::optional<Entry>> entry = ClaimEntry();
    absl::StatusOr<std::optional<ClaimedJob>> claimed = std::nullopt;
    if (entry.ok() && entry->has_value() && (*entry)->dead_reason.empty()) {
      claimed = Start(**entry);
    }
    const absl::Status status = entry.ok() ? claimed.status() : entry.status();

    if (status.code() == absl::StatusCode::kFailedPrecondition &&
        absl::StrContains(status.message(), "NOGROUP")) {
      if (!options_.create_group) {
        return Annotate(
            status, absl::StrCat("consumer group ", options_.group,
                                 " does not exist on stream ", options_.stream,
                                 " (create it, or enable create_group)"));
      }
      CIAGENT_RETURN_IF_ERROR(EnsureGroup());
      continue;
    }
    if (!status.ok()) {
      if (!IsTransient(status)) return status;
      const absl::Time now = clock_->Now();
      if (!unavailable_since.has_value()) unavailable_since = now;
      // Redis that answered during this wait and then went away (a failover,
      // a restart) is waited for past the deadline, up to outage_grace.
      const absl::Time give_up =
          answered ? std::max(deadline, *unavailable_since + options_.outage_grace)
                   : deadline;
      if (now >= give_up) {
        return Annotate(status, answered
                                    ? "claim: redis unavailable for longer "
                                      "than the outage grace"
                                    : "claim: redis unavailable until the "
                                      "deadline");
      }
      const absl::Duration delay = std::min(backoff.Next(), give_up - now);
      LogWarning("redis unavailable while claiming, retrying",
                 {{"error", status}, {"retry_in_ms", delay}});
      SleepUnlessStopped(delay);
      continue;
    }
    answered = true;
    unavailable_since.reset();
    backoff.Reset();
    if (claimed.ok() && claimed->has_value()) return **std::move(claimed);
    // An entry was taken and disposed of (dead letter, cancel): look again
    // at once, even past the deadline, since more may be waiting behind it.
    if (entry->has_value()) continue;
    if (clock_->Now() >= deadline) {
      return absl::DeadlineExceededError(
          absl::StrCat("no job on stream ", options_.stream, " within ",
                       absl::FormatDuration(wait)));
    }
    SleepUnlessStopped(std::min(options_.poll_interval, left));
  }
}

std::vector<std::string> JobQueue::ClaimArgs() const {
  return {Millis(options_.lease), absl::StrCat(options_.max_deliveries),
          options_.key_prefix, FormatTimestamp(clock_->Now()),
          absl::StrCat(options_.max_entry_bytes),
          absl::StrCat(options_.parse.max_json_bytes),
          absl::StrCat(options_.dead_letter_max_len)};
}

std::vector<std::string> JobQueue::ClaimKeys() const {
  return {options_.stream, options_.DeadLetterStream()};
}

absl::StatusOr<std::optional<JobQueue::Entry>> JobQueue::ParseClaimReply(
    const RedisReply& reply) {
  if (!reply.is_array() ||
      (reply.elements.size() != 6 && reply.elements.size() != 9)) {
    return std::nullopt;
  }
  Entry entry;
  entry.id = reply.elements[0].str;
  CIAGENT_ASSIGN_OR_RETURN(entry.fields, EntryFields(reply.elements[1]));
  entry.deliveries = static_cast<int>(reply.elements[2].integer);
  entry.begun = reply.elements[3].integer == 1;
  entry.cancel_requested = reply.elements[4].str;
  entry.cancel_reason = reply.elements[5].str;
  if (reply.elements.size() == 9) {
    entry.dead_reason = reply.elements[6].str;
    entry.dead_letter_id = reply.elements[7].str;
    entry.dead_job_id = reply.elements[8].str;
    LogWarning("dead-lettered entry",
               {{"stream_id", entry.id},
                {"dead_letter_id", entry.dead_letter_id},
                {"dead_job_id", entry.dead_job_id},
                {"deliveries", entry.deliveries},
                {"reason", entry.dead_reason}});
  }
  return entry;
}

absl::StatusOr<std::optional<JobQueue::Entry>> JobQueue::ClaimEntry() {
  std::vector<std::string> args = {options_.group, options_.consumer};
  for (std::string& arg : ClaimArgs()) args.push_back(std::move(arg));
  args.push_back(absl::StrCat(absl::ToInt64Seconds(options_.result_ttl)));
  CIAGENT_ASSIGN_OR_RETURN(RedisReply reply,
                           redis_.Eval(ClaimScript(), ClaimKeys(), args));
  return ParseClaimReply(reply);
}

absl::StatusOr<std::optional<ClaimedJob>> JobQueue::Start(const Entry& entry) {
  const std::string* job_json = entry.Field("job");
  const std::optional<std::string> job_id =
      job_json != nullptr ? ExtractJobId(*job_json) : std::nullopt;
  if (job_json == nullptr) {
    CIAGENT_RETURN_IF_ERROR(
        DeadLetter(entry, std::nullopt, "malformed entry: no `job` field"));
    return std::nullopt;
  }
  absl::StatusOr<Job> job = ParseJob(*job_json, options_.parse);
  if (!job.ok()) {
    CIAGENT_RETURN_IF_ERROR(
        DeadLetter(entry, job_id,
                   absl::StrCat("malformed job: ", job.status().message())));
    return std::nullopt;
  }

  ClaimedJob claim;
  claim.job = *std::move(job);
  claim.stream_id = entry.id;
  claim.attempt = entry.deliveries;
  claim.consumer = options_.consumer;
  claim.started_at = clock_->Now();
  claim.job_json = *job_json;
  RenewResult begun{.cancel_requested = !entry.cancel_requested.empty(),
                    .cancel_reason = entry.cancel_reason};
  if (!entry.begun) {
    CIAGENT_ASSIGN_OR_RETURN(std::optional<RenewResult> started, Begin(claim));
    if (!started.has_value()) return std::nullopt;
    begun = *std::move(started);
  }
  if (begun.cancel_requested) {
    const std::string& cancel_reason = begun.cancel_reason;
    CIAGENT_RETURN_IF_ERROR(Finalize(
        claim, {JobStatus::kCancelled,
                absl::StrCat("cancelled before start",
                             cancel_reason.empty() ? "" : ": ", cancel_reason),
                {}}));
    LogInfo("job cancelled before start",
            {{"cancelled_job_id", claim.job.job_id}});
    return std::nullopt;
  }
  return claim;
}

absl::StatusOr<RedisReply> JobQueue::EvalForJob(
    const RedisScript& script, const ClaimedJob& claim,
    absl::Span<const std::string> args) {
  return redis_.Eval(
      script, {options_.stream, options_.StatusKey(claim.job.job_id)}, args);
}

absl::StatusOr<std::optional<RenewResult>> JobQueue::Begin(
    const ClaimedJob& claim) {
  const std::string now = FormatTimestamp(claim.started_at);
  std::vector<std::string> args = FenceArgs(options_, claim);
  args.push_back(now);
  AppendFields(&args, {{"status", "running"},
                       {"job_id", claim.job.job_id},
                       {"repo", claim.job.repo},
                       {"branch", claim.job.branch},
                       {"commit", claim.job.commit},
                       {"attempt", absl::StrCat(claim.attempt)},
                       {"consumer", claim.consumer},
                       {"stream_id", claim.stream_id},
                       {"started_at", now},
                       {"lease_renewed_at", now}});
  CIAGENT_ASSIGN_OR_RETURN(RedisReply reply,
                           EvalForJob(BeginScript(), claim, args));
  if (absl::Status fenced = Fenced("start", reply, claim.stream_id);
      !fenced.ok()) {
    // Someone else owns it now (we were slower than the lease). Not ours.
    LogWarning("claimed entry lost before start", {{"error", fenced}});
    return std::nullopt;
  }
  return RenewResult{.cancel_requested = !reply.elements[1].str.empty(),
                     .cancel_reason = reply.elements[2].str};
}

absl::Status JobQueue::DeadLetter(const Entry& entry,
                                  const std::optional<std::string>& job_id,
                                  absl::string_view reason) {
  std::vector<std::string> keys = {options_.stream,
                                   options_.DeadLetterStream()};
  if (job_id.has_value()) {
    keys.push_back(options_.StatusKey(*job_id));
    keys.push_back(options_.LogKey(*job_id));
  }
  std::vector<std::string> args = {
      options_.group,
      entry.id,
      options_.consumer,
      absl::StrCat(entry.deliveries),
      absl::StrCat(options_.dead_letter_max_len),
      std::string(reason),
      FormatTimestamp(clock_->Now()),
      absl::StrCat(absl::ToInt64Seconds(options_.result_ttl))};
  AppendFields(&args, entry.fields);
  CIAGENT_ASSIGN_OR_RETURN(RedisReply reply,
                           redis_.Eval(DeadLetterScript(), keys, args));
  if (absl::Status fenced = Fenced("dead-letter", reply, entry.id);
      !fenced.ok()) {
    LogWarning("entry lost before dead-lettering", {{"error", fenced}});
    return absl::OkStatus();
  }
  redis_.ConfirmReplicated(absl::StrCat("dead-letter entry ", entry.id));
  LogWarning("dead-lettered entry", {{"stream_id", entry.id},
                                     {"dead_letter_id", reply.elements[1].str},
                                     {"dead_job_id", job_id.value_or("")},
                                     {"deliveries", entry.deliveries},
                                     {"reason", reason}});
  return absl::OkStatus();
}

absl::Status JobQueue::Fenced(absl::string_view operation,
                              const RedisReply& reply,
                              absl::string_view stream_id) {
  if (!reply.is_array() || reply.elements.empty()) {
    return absl::InternalError(
        absl::StrCat(operation, " entry ", stream_id, ": unexpected reply"));
  }
  if (reply.elements[0].str == "ok") return absl::OkStatus();
  return absl::AbortedError(absl::StrCat(
      operation, " entry ", stream_id, " of stream ", options_.stream,
      ": lease lost, nothing written: ",
      reply.elements.size() > 1 ? reply.elements[1].str : "unknown"));
}

absl::StatusOr<RenewResult> JobQueue::Renew(const ClaimedJob& claim) {
  std::vector<std::string> args = FenceArgs(options_, claim);
  args.push_back(FormatTimestamp(clock_->Now()));
  CIAGENT_ASSIGN_OR_RETURN(RedisReply reply,
                           EvalForJob(RenewScript(), claim, args));
  CIAGENT_RETURN_IF_ERROR(Fenced("renew lease of", reply, claim.stream_id));
  RenewResult result;
  result.cancel_requested = !reply.elements[1].str.empty();
  result.cancel_reason = reply.elements[2].str;
  return result;
}

absl::StatusOr<std::vector<std::string>> JobQueue::FinalizeArgs(
    const ClaimedJob& claim, const JobOutcome& outcome) const {
  if (!IsTerminal(outcome.status)) {
    return absl::InvalidArgumentError(
        absl::StrCat("finalize: status ", JobStatusName(outcome.status),
                     " is not terminal"));
  }
  const absl::Time now = clock_->Now();
  const std::string stamp = FormatTimestamp(now);
  std::vector<std::string> fields;
  AppendFields(&fields, {{"status", std::string(JobStatusName(outcome.status))},
                         {"reason", outcome.reason},
                         {"finished_at", stamp},
                         {"updated_at", stamp},
                         {"duration_ms", Millis(now - claim.started_at)}});
  AppendFields(&fields, outcome.fields);
  std::vector<std::string> args = FenceArgs(options_, claim);
  args.push_back(absl::StrCat(absl::ToInt64Seconds(options_.result_ttl)));
  args.push_back(claim.job.job_id);
  args.push_back(absl::StrCat(options_.recent_jobs_max_len));
  args.push_back(absl::StrCat(fields.size()));
  args.insert(args.end(), fields.begin(), fields.end());
  return args;
}

absl::Status JobQueue::Finalize(const ClaimedJob& claim,
                                const JobOutcome& outcome) {
  CIAGENT_ASSIGN_OR_RETURN(std::vector<std::string> args,
                           FinalizeArgs(claim, outcome));
  CIAGENT_ASSIGN_OR_RETURN(
      RedisReply reply,
      redis_.Eval(FinalizeScript(),
                  {options_.stream, options_.StatusKey(claim.job.job_id),
                   options_.LogKey(claim.job.job_id), options_.RecentJobsKey()},
                  args));
  CIAGENT_RETURN_IF_ERROR(Fenced("finalize", reply, claim.stream_id));
  redis_.ConfirmReplicated(absl::StrCat("finalize job ", claim.job.job_id));
  return absl::OkStatus();
}

absl::StatusOr<std::optional<ClaimedJob>> JobQueue::FinalizeAndClaimNext(
    const ClaimedJob& claim, const JobOutcome& outcome) {
  CIAGENT_ASSIGN_OR_RETURN(std::vector<std::string> args,
                           FinalizeArgs(claim, outcome));
  for (std::string& arg : ClaimArgs()) args.push_back(std::move(arg));
  CIAGENT_ASSIGN_OR_RETURN(
      RedisReply reply,
      redis_.Eval(FinalizeAndClaimScript(),
                  {options_.stream, options_.StatusKey(claim.job.job_id),
                   options_.LogKey(claim.job.job_id), options_.RecentJobsKey(),
                   options_.DeadLetterStream()},
                  args));
  CIAGENT_RETURN_IF_ERROR(Fenced("finalize", reply, claim.stream_id));
  redis_.ConfirmReplicated(absl::StrCat("finalize job ", claim.job.job_id));
  if (reply.elements.size() < 2) return std::nullopt;
  CIAGENT_ASSIGN_OR_RETURN(std::optional<Entry> entry,
                           ParseClaimReply(reply.elements[1]));
  if (!entry.has_value() || !entry->dead_reason.empty()) return std::nullopt;
  // A malformed or cancelled next entry is disposed of; the caller then
  // claims again.
  return Start(*entry);
}

absl::Status JobQueue::Requeue(const ClaimedJob& claim,
                               absl::string_view reason) {
  const std::string stamp = FormatTimestamp(clock_->Now());
  std::vector<std::string> args = FenceArgs(options_, claim);
  args.push_back(Millis(kRequeueIdle));
  AppendFields(&args, {{"status", "queued"},
                       {"reason", absl::StrCat("requeued: ", reason)},
                       {"requeued_at", stamp},
                       {"updated_at", stamp}});
  CIAGENT_ASSIGN_OR_RETURN(RedisReply reply,
                           EvalForJob(RequeueScript(), claim, args));
  CIAGENT_RETURN_IF_ERROR(Fenced("requeue", reply, claim.stream_id));
  redis_.ConfirmReplicated(absl::StrCat("requeue job ", claim.job.job_id));
  return absl::OkStatus();
}

absl::Status JobQueue::RequestCancel(absl::string_view job_id,
                                     absl::string_view reason) {
  const std::string key = options_.StatusKey(job_id);
  CIAGENT_ASSIGN_OR_RETURN(
      RedisReply reply,
      redis_.Eval(CancelScript(), {key},
                  {FormatTimestamp(clock_->Now()), std::string(reason)}));
  if (reply.str == "ok") return absl::OkStatus();
  if (reply.str == "missing") {
    return absl::NotFoundError(absl::StrCat("cancel ", job_id, ": no ", key));
  }
  return absl::FailedPreconditionError(
      absl::StrCat("cancel ", job_id, ": already finished (", reply.str, ")"));
}

}  // namespace ciagent
