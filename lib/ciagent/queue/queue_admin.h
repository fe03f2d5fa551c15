// QueueAdmin: what an operator, or a service such as the API, does with the
// queue besides running jobs: look at it (Stats, ListJobs, GetJob), follow a
// job's log (ReadLog), enqueue and cancel, and deal with dead letters
// (ListDeadLetters, Redrive, PurgeDeadLetters). `ci-queue` is a thin tool
// over this class; the keys it reads and writes are the contract of
// docs/redis-schema.md, nothing else.
//
// Example:
//   QueueAdmin admin(redis_options, QueueOptions{});
//   CIAGENT_ASSIGN_OR_RETURN(QueueStats stats, admin.Stats());
//   CIAGENT_ASSIGN_OR_RETURN(std::vector<JobRecord> failed,
//                            admin.ListJobs({.status = JobStatus::kFailed}));
//   CIAGENT_ASSIGN_OR_RETURN(
//       JobStatus end, admin.ReadLog("push-1234", {.follow = true},
//                                    [](const LogEntry& e) { Print(e); }));
//
// Recent jobs: `<stream>:recent` is a sorted set of job ids scored by their
// stream entry id (milliseconds × 1000 + sequence), written by Enqueue and
// Finalize
// (and a redrive) and capped at QueueOptions::recent_jobs_max_len. ListJobs
// reads it newest first; jobs whose status hash has expired are left out.
//
// Redrive moves a dead letter back onto the stream as a new entry, so its
// deliveries count from 1 again. The job document is validated first (with
// QueueOptions::parse) and a dead letter that would be dead-lettered again
// is refused with the reason. The move itself is one Lua script: the entry
// is added, the status hash reset to `queued` keeping the earlier reasons
// (`earlier_reasons`), and the dead letter deleted — all or nothing, so a
// crash never loses or duplicates the job, and redriving the same dead
// letter twice enqueues it once.
//
// Errors: kUnavailable when Redis is unreachable (retry), kNotFound for a
// job with no status hash, kFailedPrecondition for a cancel of a finished
// job, kCancelled when a stop (SIGTERM/SIGINT) ends ReadLog's wait.
//
// Thread-safety: a QueueAdmin owns one Redis connection and is not
// thread-safe; use one per thread.
#ifndef CIAGENT_QUEUE_QUEUE_ADMIN_H_
#define CIAGENT_QUEUE_QUEUE_ADMIN_H_

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "ciagent/base/clock.h"
#include "ciagent/job/job.h"
#include "ciagent/job/job_status.h"
#include "ciagent/queue/job_queue.h"
#include "ciagent/queue/redis_client.h"

namespace ciagent {

// Field/value pairs in the order Redis returned them.
using RedisFields = std::vector<std::pair<std::string, std::string>>;

// The value of `name` in `fields`; "" when absent.
absl::string_view FieldOf(const RedisFields& fields, absl::string_view name);

struct ConsumerStats {
  std::string name;
  int64_t pending = 0;     // entries it owns
  absl::Duration idle;     // since its last read or claim
};

struct QueueStats {
  bool group_exists = false;
  int64_t length = 0;  // entries in the stream, acknowledged ones included
  // Never-delivered entries (XINFO GROUPS `lag`); nullopt when Redis cannot
  // tell (docs/redis-schema.md, "Consumer-group lag").
  std::optional<int64_t> lag;
  int64_t pending = 0;  // delivered, not acknowledged: running or requeued
  // Age of the oldest entry no agent has read yet.
  std::optional<absl::Duration> oldest_waiting_age;
  // Age of the oldest pending entry (by enqueue time).
  std::optional<absl::Duration> oldest_pending_age;
  std::vector<ConsumerStats> consumers;
  int64_t dead_letters = 0;
  int64_t recent_jobs = 0;  // jobs in the recent-jobs index
};

// A job's status hash (docs/redis-schema.md), field by field.
struct JobRecord {
  std::string job_id;
  RedisFields fields;

  absl::string_view Get(absl::string_view name) const {
    return FieldOf(fields, name);
  }
  // nullopt when `status` is missing or not a known status.
  std::optional<JobStatus> status() const;
};

struct JobListOptions {
  // Only jobs in this status; all when unset.
  std::optional<JobStatus> status;
  int limit = 20;
};

// One entry of a job's log stream.
struct LogEntry {
  std::string id;  // entry id in the log stream
  int64_t seq = 0;
  int attempt = 0;
  std::string step;
  std::string stream;  // stdout, stderr or agent
  std::string line;
};

struct LogReadOptions {
  // Only lines of this step (fetch, check, build, ...); all when empty.
  std::string step;
  // Keep reading until the job reaches a terminal status.
  bool follow = false;
  // Longest wait for a new line before the status is looked at again.
  absl::Duration poll = absl::Seconds(1);
};

struct DeadLetter {
  std::string id;  // entry id in the dead-letter stream
  RedisFields fields;
  // From the job document when it names one; "" otherwise.
  std::string job_id;

  absl::string_view Get(absl::string_view name) const {
    return FieldOf(fields, name);
  }
};

enum class RedriveOutcome {
  kRedriven,      // back on the stream as `stream_id`
  kWouldRedrive,  // dry run: would be redriven
  kRefused,       // left in the dead letters; `reason` says why
  kMissing,       // not in the dead letters (redriven or purged before)
};

struct RedriveResult {
  std::string dead_letter_id;
  std::string job_id;
  RedriveOutcome outcome = RedriveOutcome::kRefused;
  std::string stream_id;  // kRedriven: the new entry
  std::string reason;     // kRefused, kMissing: why
};

class QueueAdmin {
 public:
  QueueAdmin(RedisOptions redis, QueueOptions options,
             Clock* clock = RealClock());

  absl::StatusOr<QueueStats> Stats();

  // Recent jobs, newest first, from the recent-jobs index.
  absl::StatusOr<std::vector<JobRecord>> ListJobs(
      const JobListOptions& options);

  // The whole status hash. kNotFound when there is none (never enqueued,
  // expired, or a raw entry not yet claimed).
  absl::StatusOr<JobRecord> GetJob(absl::string_view job_id);

  // Calls `on_line` once for every line of the job's log, in order; an
  // entry an agent wrote twice (same attempt and seq) is passed once. With
  // options.follow it then waits for new lines until the job's status is
  // terminal, and returns once every line written before that is passed
  // (agents flush the log before they finalize). Returns the job's status
  // when reading stopped. kNotFound when the job has no status hash.
  absl::StatusOr<JobStatus> ReadLog(
      absl::string_view job_id, const LogReadOptions& options,
      const std::function<void(const LogEntry&)>& on_line);

  // JobQueue::Enqueue and JobQueue::RequestCancel.
  absl::StatusOr<std::string> Enqueue(const Job& job);
  absl::Status RequestCancel(absl::string_view job_id,
                             absl::string_view reason);

  // Up to `limit` dead letters, newest first.
  absl::StatusOr<std::vector<DeadLetter>> ListDeadLetters(int limit);

  // Redrives one dead letter (see the header comment); with `dry_run` only
  // judges it. A refusal or a missing entry is a result, not an error.
  absl::StatusOr<RedriveResult> Redrive(absl::string_view dead_letter_id,
                                        bool dry_run);
  // Every dead letter, oldest first.
  absl::StatusOr<std::vector<RedriveResult>> RedriveAll(bool dry_run);

  // Deletes the dead letters older than `older_than` (by the time they were
  // dead-lettered); with `dry_run` only counts them. Returns the count.
  absl::StatusOr<int64_t> PurgeDeadLetters(absl::Duration older_than,
                                           bool dry_run);

  const QueueOptions& options() const { return queue_.options(); }

 private:
  absl::StatusOr<std::optional<JobStatus>> CurrentStatus(
      absl::string_view job_id);
  absl::StatusOr<RedriveResult> RedriveEntry(const DeadLetter& letter,
                                             bool dry_run);

  JobQueue queue_;
  Clock* clock_;
};

}  // namespace ciagent

#endif  // CIAGENT_QUEUE_QUEUE_ADMIN_H_
