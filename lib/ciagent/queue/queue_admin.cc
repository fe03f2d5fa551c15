#include "ciagent/queue/queue_admin.h"

#include <algorithm>
#include <map>
#include <utility>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "ciagent/base/status_macros.h"
#include "ciagent/base/stop_signal.h"
#include "ciagent/queue/internal/scripts.h"

namespace ciagent {
namespace {

using queue_internal::QueuedStatusFields;
using queue_internal::RedriveScript;

// The status hash fields ListJobs reads of each job.
constexpr absl::string_view kSummaryFields[] = {
    "status",      "reason",     "repo",        "branch",
    "commit",      "attempt",    "consumer",    "enqueued_at",
    "started_at",  "finished_at", "updated_at", "duration_ms"};

// Entries read per round trip when walking a stream or the index.
constexpr int kPage = 100;
// How many earlier reasons a redriven job keeps (`earlier_reasons`).
constexpr int kEarlierReasonsKept = 20;

// A flat [name, value, name, value, ...] reply (HGETALL, XINFO records,
// stream entry fields). Integers become decimal strings; a nil value drops
// its pair, so an absent field and a nil one read the same.
RedisFields FlatFields(const RedisReply& reply) {
  RedisFields fields;
  for (size_t i = 0; i + 1 < reply.elements.size(); i += 2) {
    const RedisReply& value = reply.elements[i + 1];
    if (value.is_nil()) continue;
    fields.emplace_back(reply.elements[i].str,
                        value.is_integer() ? absl::StrCat(value.integer)
                                           : value.str);
  }
  return fields;
}

int64_t IntField(const RedisFields& fields, absl::string_view name) {
  int64_t value = 0;
  return absl::SimpleAtoi(FieldOf(fields, name), &value) ? value : 0;
}

// The time in a stream entry id ("<milliseconds>-<sequence>").
std::optional<absl::Time> EntryTime(absl::string_view id) {
  int64_t millis = 0;
  if (!absl::SimpleAtoi(id.substr(0, id.find('-')), &millis)) {
    return std::nullopt;
  }
  return absl::FromUnixMillis(millis);
}

// Entries of an XRANGE/XREVRANGE reply as (id, fields).
std::vector<std::pair<std::string, RedisFields>> Entries(
    const RedisReply& reply) {
  std::vector<std::pair<std::string, RedisFields>> entries;
  for (const RedisReply& entry : reply.elements) {
    if (entry.elements.size() != 2) continue;
    entries.emplace_back(entry.elements[0].str, FlatFields(entry.elements[1]));
  }
  return entries;
}

DeadLetter DeadLetterFrom(std::pair<std::string, RedisFields> entry) {
  DeadLetter letter{.id = std::move(entry.first),
                    .fields = std::move(entry.second)};
  for (const auto& [name, value] : letter.fields) {
    if (name == "job") letter.job_id = ExtractJobId(value).value_or("");
  }
  return letter;
}

}  // namespace

absl::string_view FieldOf(const RedisFields& fields, absl::string_view name) {
  for (const auto& [key, value] : fields) {
    if (key == name) return value;
  }
  return "";
}

std::optional<JobStatus> JobRecord::status() const {
  return JobStatusFromName(Get("status"));
}

QueueAdmin::QueueAdmin(RedisOptions redis, QueueOptions options, Clock* clock)
    : queue_(std::move(redis), std::move(options), clock), clock_(clock) {}

absl::StatusOr<QueueStats> QueueAdmin::Stats() {
  const QueueOptions& o = options();
  RedisClient& redis = queue_.redis();
  QueueStats stats;
  CIAGENT_ASSIGN_OR_RETURN(
      std::vector<RedisReply> sizes,
      redis.Pipeline({{"EXISTS", o.stream},
                      {"XLEN", o.stream},
                      {"XLEN", o.DeadLetterStream()},
                      {"ZCARD", o.RecentJobsKey()}}));
  stats.length = sizes[1].integer;
  stats.dead_letters = sizes[2].integer;
  stats.recent_jobs = sizes[3].integer;
  if (sizes[0].integer == 0) return stats;

  CIAGENT_ASSIGN_OR_RETURN(RedisReply groups,
                           redis.Command({"XINFO", "GROUPS", o.stream}));
  RedisFields group;
  for (const RedisReply& record : groups.elements) {
    RedisFields fields = FlatFields(record);
    if (FieldOf(fields, "name") == o.group) group = std::move(fields);
  }
  if (group.empty()) return stats;
  stats.group_exists = true;
  if (int64_t lag = 0; absl::SimpleAtoi(FieldOf(group, "lag"), &lag)) {
    stats.lag = lag;
  }
  const std::string last_read(FieldOf(group, "last-delivered-id"));
  CIAGENT_ASSIGN_OR_RETURN(
      std::vector<RedisReply> details,
      redis.Pipeline(
          {{"XINFO", "CONSUMERS", o.stream, o.group},
           {"XPENDING", o.stream, o.group},
           {"XRANGE", o.stream, "(" + last_read, "+", "COUNT", "1"}}));
  const absl::Time now = clock_->Now();
  for (const RedisReply& record : details[0].elements) {
    RedisFields fields = FlatFields(record);
    stats.consumers.push_back(
        {.name = std::string(FieldOf(fields, "name")),
         .pending = IntField(fields, "pending"),
         .idle = absl::Milliseconds(IntField(fields, "idle"))});
  }
  // XPENDING summary: count, smallest id, greatest id, per-consumer counts.
  const RedisReply& pending = details[1];
  if (pending.elements.size() >= 2) {
    stats.pending = pending.elements[0].integer;
    if (std::optional<absl::Time> t = EntryTime(pending.elements[1].str)) {
      stats.oldest_pending_age = now - *t;
    }
  }
  for (const auto& [id, fields] : Entries(details[2])) {
    if (std::optional<absl::Time> t = EntryTime(id)) {
      stats.oldest_waiting_age = now - *t;
    }
  }
  return stats;
}

absl::StatusOr<std::vector<JobRecord>> QueueAdmin::ListJobs(
    const JobListOptions& list) {
  if (list.limit <= 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("list jobs: limit must be positive (got ", list.limit,
                     ")"));
  }
  const QueueOptions& o = options();
  std::vector<JobRecord> jobs;
  for (int64_t start = 0;; start += kPage) {
    CIAGENT_ASSIGN_OR_RETURN(
        RedisReply ids,
        queue_.redis().Command({"ZREVRANGE", o.RecentJobsKey(),
                                absl::StrCat(start),
                                absl::StrCat(start + kPage - 1)}));
    std::vector<std::vector<std::string>> reads;
    for (const RedisReply& id : ids.elements) {
      std::vector<std::string> hmget = {"HMGET", o.StatusKey(id.str)};
      for (absl::string_view field : kSummaryFields) hmget.emplace_back(field);
      reads.push_back(std::move(hmget));
    }
    CIAGENT_ASSIGN_OR_RETURN(std::vector<RedisReply> hashes,
                             queue_.redis().Pipeline(reads));
    for (size_t i = 0; i < hashes.size(); ++i) {
      JobRecord job{.job_id = ids.elements[i].str};
      for (size_t f = 0; f < hashes[i].elements.size(); ++f) {
        if (hashes[i].elements[f].is_nil()) continue;
        job.fields.emplace_back(kSummaryFields[f], hashes[i].elements[f].str);
      }
      if (job.fields.empty()) continue;  // its status hash expired
      if (list.status.has_value() && job.status() != list.status) continue;
      jobs.push_back(std::move(job));
      if (static_cast<int>(jobs.size()) == list.limit) return jobs;
    }
    if (static_cast<int>(ids.elements.size()) < kPage) return jobs;
  }
}

absl::StatusOr<JobRecord> QueueAdmin::GetJob(absl::string_view job_id) {
  const std::string key = options().StatusKey(job_id);
  CIAGENT_ASSIGN_OR_RETURN(RedisReply hash,
                           queue_.redis().Command({"HGETALL", key}));
  JobRecord job{.job_id = std::string(job_id), .fields = FlatFields(hash)};
  if (job.fields.empty()) {
    return absl::NotFoundError(absl::StrCat(
        "job ", job_id, ": no status hash ", key,
        " (never enqueued, or expired after it ended)"));
  }
  return job;
}

absl::StatusOr<std::optional<JobStatus>> QueueAdmin::CurrentStatus(
    absl::string_view job_id) {
  const std::string key = options().StatusKey(job_id);
  CIAGENT_ASSIGN_OR_RETURN(RedisReply status,
                           queue_.redis().Command({"HGET", key, "status"}));
  if (status.is_nil()) {
    return absl::NotFoundError(absl::StrCat(
        "job ", job_id, ": no status hash ", key,
        " (never enqueued, or expired after it ended)"));
  }
  return JobStatusFromName(status.str);
}

absl::StatusOr<JobStatus> QueueAdmin::ReadLog(
    absl::string_view job_id, const LogReadOptions& read,
    const std::function<void(const LogEntry&)>& on_line) {
  const std::string key = options().LogKey(job_id);
  std::string last_id = "0-0";
  std::map<int, int64_t> last_seq;  // per attempt: the last seq passed on
  const auto pass_on = [&](const RedisReply& reply) {
    for (auto& [id, fields] : Entries(reply)) {
      last_id = id;
      LogEntry entry{.id = id,
                     .seq = IntField(fields, "seq"),
                     .attempt = static_cast<int>(IntField(fields, "attempt")),
                     .step = std::string(FieldOf(fields, "step")),
                     .stream = std::string(FieldOf(fields, "stream")),
                     .line = std::string(FieldOf(fields, "line"))};
      // At least once: a batch resent after a broken connection repeats
      // (attempt, seq) pairs already passed on.
      if (entry.seq > 0) {
        int64_t& last = last_seq[entry.attempt];
        if (entry.seq <= last) continue;
        last = entry.seq;
      }
      if (!read.step.empty() && entry.step != read.step) continue;
      on_line(entry);
    }
  };
  while (true) {
    // The status first: when it is terminal, every line was written before
    // it (agents flush their log before they finalize), so the reading
    // below sees the whole log.
    CIAGENT_ASSIGN_OR_RETURN(std::optional<JobStatus> status,
                             CurrentStatus(job_id));
    while (true) {
      CIAGENT_ASSIGN_OR_RETURN(
          RedisReply page,
          queue_.redis().Command({"XRANGE", key, "(" + last_id, "+", "COUNT",
                                  absl::StrCat(kPage)}));
      pass_on(page);
      if (static_cast<int>(page.elements.size()) < kPage) break;
    }
    if (!status.has_value()) {
      return absl::InternalError(
          absl::StrCat("job ", job_id, ": unknown status in its status hash"));
    }
    if (!read.follow || IsTerminal(*status)) return *status;
    if (StopRequested()) {
      return absl::CancelledError(
          absl::StrCat("stopped following the log of job ", job_id));
    }
    // Wait for the next line (or the poll interval); it is read above.
    CIAGENT_RETURN_IF_ERROR(
        queue_.redis()
            .Command({"XREAD", "COUNT", "1", "BLOCK",
                      absl::StrCat(absl::ToInt64Milliseconds(read.poll)),
                      "STREAMS", key, last_id})
            .status());
  }
}

absl::StatusOr<std::string> QueueAdmin::Enqueue(const Job& job) {
  return queue_.Enqueue(job);
}

absl::Status QueueAdmin::RequestCancel(absl::string_view job_id,
                                       absl::string_view reason) {
  return queue_.RequestCancel(job_id, reason);
}

absl::StatusOr<std::vector<DeadLetter>> QueueAdmin::ListDeadLetters(
    int limit) {
  CIAGENT_ASSIGN_OR_RETURN(
      RedisReply reply,
      queue_.redis().Command({"XREVRANGE", options().DeadLetterStream(), "+",
                              "-", "COUNT", absl::StrCat(limit)}));
  std::vector<DeadLetter> letters;
  for (auto& entry : Entries(reply)) {
    letters.push_back(DeadLetterFrom(std::move(entry)));
  }
  return letters;
}

absl::StatusOr<RedriveResult> QueueAdmin::Redrive(
    absl::string_view dead_letter_id, bool dry_run) {
  const std::string dead = options().DeadLetterStream();
  CIAGENT_ASSIGN_OR_RETURN(
      RedisReply reply,
      queue_.redis().Command(
          {"XRANGE", dead, dead_letter_id, dead_letter_id}));
  std::vector<std::pair<std::string, RedisFields>> entries = Entries(reply);
  if (entries.empty()) {
    return RedriveResult{
        .dead_letter_id = std::string(dead_letter_id),
        .outcome = RedriveOutcome::kMissing,
        .reason = absl::StrCat("not in ", dead,
                               " (redriven or purged before, or a wrong id)")};
  }
  return RedriveEntry(DeadLetterFrom(std::move(entries[0])), dry_run);
}

absl::StatusOr<std::vector<RedriveResult>> QueueAdmin::RedriveAll(
    bool dry_run) {
  const std::string dead = options().DeadLetterStream();
  // Up to the newest dead letter now: a job that dies again meanwhile is
  // not redriven a second time in the same pass.
  CIAGENT_ASSIGN_OR_RETURN(
      RedisReply newest,
      queue_.redis().Command({"XREVRANGE", dead, "+", "-", "COUNT", "1"}));
  std::vector<RedriveResult> results;
  if (newest.elements.empty()) return results;
  const std::string end = newest.elements[0].elements[0].str;
  std::string from = "-";
  while (true) {
    CIAGENT_ASSIGN_OR_RETURN(
        RedisReply page,
        queue_.redis().Command(
            {"XRANGE", dead, from, end, "COUNT", absl::StrCat(kPage)}));
    std::vector<std::pair<std::string, RedisFields>> entries = Entries(page);
    for (auto& entry : entries) {
      from = "(" + entry.first;
      CIAGENT_ASSIGN_OR_RETURN(
          RedriveResult result,
          RedriveEntry(DeadLetterFrom(std::move(entry)), dry_run));
      results.push_back(std::move(result));
    }
    if (static_cast<int>(entries.size()) < kPage) return results;
  }
}

absl::StatusOr<RedriveResult> QueueAdmin::RedriveEntry(
    const DeadLetter& letter, bool dry_run) {
  RedriveResult result{.dead_letter_id = letter.id, .job_id = letter.job_id};
  const auto refuse = [&](std::string reason) {
    result.outcome = RedriveOutcome::kRefused;
    result.reason = std::move(reason);
    return result;
  };
  const auto document =
      std::find_if(letter.fields.begin(), letter.fields.end(),
                   [](const auto& field) { return field.first == "job"; });
  if (letter.Get("dead_truncated") == "1") {
    return refuse(
        "its fields were cut to 1 KiB when it was dead-lettered "
        "(dead_truncated): the job cannot be restored from it");
  }
  if (document == letter.fields.end()) {
    return refuse("malformed entry: no `job` field");
  }
  absl::StatusOr<Job> job = ParseJob(document->second, options().parse);
  if (!job.ok()) {
    return refuse(absl::StrCat("malformed job: ", job.status().message()));
  }
  result.job_id = job->job_id;
  if (dry_run) {
    result.outcome = RedriveOutcome::kWouldRedrive;
    return result;
  }

  const QueueOptions& o = options();
  const std::string now = FormatTimestamp(clock_->Now());
  std::vector<std::string> args = {
      letter.id,  o.group,
      document->second, job->job_id,
      absl::StrCat(o.recent_jobs_max_len), absl::StrCat(kEarlierReasonsKept)};
  RedisFields fields = QueuedStatusFields(*job, now);
  fields.emplace_back("redriven_at", now);
  fields.emplace_back("redriven_from", letter.id);
  for (auto& [name, value] : fields) {
    args.push_back(std::move(name));
    args.push_back(std::move(value));
  }
  CIAGENT_ASSIGN_OR_RETURN(
      RedisReply reply,
      queue_.redis().Eval(RedriveScript(),
                          {o.DeadLetterStream(), o.stream,
                           o.StatusKey(job->job_id), o.LogKey(job->job_id),
                           o.RecentJobsKey()},
                          args));
  const std::string& verdict =
      reply.elements.empty() ? std::string() : reply.elements[0].str;
  if (verdict == "ok" && reply.elements.size() == 2) {
    result.outcome = RedriveOutcome::kRedriven;
    result.stream_id = reply.elements[1].str;
  } else if (verdict == "missing") {
    result.outcome = RedriveOutcome::kMissing;
    result.reason = absl::StrCat("not in ", o.DeadLetterStream(),
                                 " (redriven or purged meanwhile)");
  } else if (verdict == "busy" && reply.elements.size() == 2) {
    return refuse(absl::StrCat("job ", job->job_id, " is ",
                               reply.elements[1].str,
                               " again: a second entry would run it twice"));
  } else {
    return absl::InternalError(absl::StrCat(
        "redrive ", letter.id, ": unexpected reply from the redrive script"));
  }
  return result;
}

absl::StatusOr<int64_t> QueueAdmin::PurgeDeadLetters(absl::Duration older_than,
                                                     bool dry_run) {
  if (older_than <= absl::ZeroDuration()) {
    return absl::InvalidArgumentError(
        "purge dead letters: the age must be positive");
  }
  const std::string dead = options().DeadLetterStream();
  // Entry ids are the times the entries were dead-lettered.
  const std::string cutoff = absl::StrCat(
      absl::ToUnixMillis(clock_->Now() - older_than), "-0");
  if (!dry_run) {
    CIAGENT_ASSIGN_OR_RETURN(
        RedisReply removed,
        queue_.redis().Command({"XTRIM", dead, "MINID", cutoff}));
    return removed.integer;
  }
  int64_t count = 0;
  std::string from = "-";
  while (true) {
    CIAGENT_ASSIGN_OR_RETURN(
        RedisReply page,
        queue_.redis().Command({"XRANGE", dead, from, "(" + cutoff, "COUNT",
                                absl::StrCat(kPage)}));
    count += static_cast<int64_t>(page.elements.size());
    if (static_cast<int>(page.elements.size()) < kPage) return count;
    from = "(" + page.elements.back().elements[0].str;
  }
}

}  // namespace ciagent
