// Module `queue` (docs/architecture.md, "Layers") owns jobs on Redis Streams:
// the Redis client, claim, lease, reclaim, dead letters, fenced finalize and
// requeue, cancel, the job's log stream and the claim file handed to ci-build.
// It must not know about how a job is fetched or built: it carries jobs and
// their results, never runs them.
//
// JobQueue: CI jobs on a Redis stream, consumed through a consumer group
// with leases, fenced results, prompt requeue and a dead-letter stream.
//
// The Redis keys and fields are a public contract (the API service and the
// terminal UI read them); docs/redis-schema.md documents every one. With the
// default QueueOptions:
//   ci-jobs               stream of jobs, one field `job` (JSON, see job.h)
//   ci-workers            its consumer group
//   ci-jobs:dead          dead-letter stream
//   ci-jobs:recent        the newest jobs (sorted set, capped)
//   ci:job:{<job_id>}     status hash of a job
//   ci:job:{<job_id>}:log log stream of a job (see job_log.h)
//
// Life of a job:
//   Claim()    reclaims an entry whose lease lapsed (its owner died), else
//              reads a new one, waiting up to `wait`. The attempt number is
//              the entry's delivery count. Entries over max_deliveries and
//              malformed entries are dead-lettered on the way, never returned.
//              The claimed job's status becomes `running`.
//
// Poison pills: an entry larger than max_entry_bytes, one without a `job`
// field or whose `job` is longer than parse.max_json_bytes, or one delivered
// more than max_deliveries times (its agents died on it), is dead-lettered by
// the claim script inside Redis; the agent validates the rest of the job. The agent never receives it, so an entry that
// would exhaust the agent's memory, or crash it, cannot stop the queue by
// killing every agent that takes it. Waiting for a new entry therefore polls
// the claim script (every poll_interval) rather than blocking in XREADGROUP,
// which would hand the entry over whatever its size.
//   Renew()    by the owner, every renew_interval: keeps the lease (the
//              entry's idle time) fresh and reports a requested cancel.
//   Finalize() writes the terminal status and acks, atomically and only
//              while this consumer still owns this delivery (the fence).
//   Requeue()  gives the job back for prompt redelivery (SIGTERM, transient
//              infrastructure failure), keeping its delivery count.
//
// A lease is the entry's idle time in the group's pending list: an entry
// idle longer than `lease` may be reclaimed by any consumer. Every write
// that belongs to one delivery is fenced on (consumer, delivery count), so
// an agent that lost its job (paused, partitioned, too slow to renew) writes
// nothing and gets kAborted.
//
// Thread-safety: a JobQueue owns one Redis connection and is not
// thread-safe. Use one per thread (LeaseRenewer makes its own).
//
// Example (the agent's main path):
//   JobQueue queue(redis_options, queue_options);
//   CIAGENT_ASSIGN_OR_RETURN(ClaimedJob claim, queue.Claim(absl::Seconds(30)));
//   LeaseRenewer renewer(redis_options, queue_options, claim);
//   ... run the build, checking renewer.lease_lost() ...
//   CIAGENT_RETURN_IF_ERROR(queue.Finalize(claim, {JobStatus::kSuccess}));
#ifndef CIAGENT_QUEUE_JOB_QUEUE_H_
#define CIAGENT_QUEUE_JOB_QUEUE_H_

#include <cstdint>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "absl/types/span.h"
#include "ciagent/base/clock.h"
#include "ciagent/job/job.h"
#include "ciagent/job/job_status.h"
#include "ciagent/queue/redis_client.h"

namespace ciagent {

struct QueueOptions {
  std::string stream = "ci-jobs";
  std::string group = "ci-workers";
  // Empty means `<stream>:dead`.
  std::string dead_letter_stream;
  // Status hash of a job: <key_prefix>{<job_id>}; its log stream adds ":log".
  std::string key_prefix = "ci:job:";
  // This agent's consumer name in the group (POD_NAME or hostname). Must be
  // unique among live agents: ownership checks compare it.
  std::string consumer;

  // An entry idle this long in the pending list may be reclaimed.
  absl::Duration lease = absl::Seconds(60);
  // How often the owner renews; keep it well under `lease`.
  absl::Duration renew_interval = absl::Seconds(20);
  // Deliveries allowed; the next one sends the entry to the dead letters.
  int max_deliveries = 3;
  // Entries larger than this (field names and values, in bytes) are
  // dead-lettered by the claim script without being sent to the agent. A
  // `job` field over parse.max_json_bytes is dead-lettered there too (as
  // malformed); this cap bounds the whole entry, whatever its fields.
  int64_t max_entry_bytes = 1024 * 1024;
  // While waiting for a job, how often the claim script looks again. Also
  // bounds how long a stop request waits.
  absl::Duration poll_interval = absl::Milliseconds(100);
  // Redis that answered during a Claim's wait and then became unreachable
  // (a Sentinel failover, a restart) is waited for this long past the
  // deadline before Claim reports kUnavailable: longer than a failover.
  absl::Duration outage_grace = absl::Seconds(30);
  // Approximate caps (XADD MAXLEN ~) of the dead-letter stream and of each
  // job's log stream.
  int64_t dead_letter_max_len = 100000;
  int64_t log_max_len = 100000;
  // The recent-jobs index (RecentJobsKey()) keeps this many jobs, the newest
  // by entry id; Enqueue and Finalize write it. 0 writes none.
  int64_t recent_jobs_max_len = 10000;
  // Create the group (and stream) when missing instead of failing.
  bool create_group = false;
  // A finished job's status hash and log stream expire this long after
  // Finalize; zero keeps them forever.
  absl::Duration result_ttl = absl::Hours(7 * 24);

  JobParseOptions parse;

  std::string DeadLetterStream() const;
  // `<stream>:recent`: a sorted set of job ids scored by their entry id
  // (docs/redis-schema.md). Derived from the stream so that it shares the
  // stream's hash tag on Redis Cluster.
  std::string RecentJobsKey() const;
  std::string StatusKey(absl::string_view job_id) const;
  std::string LogKey(absl::string_view job_id) const;
};

// One delivery of a job to this consumer.
struct ClaimedJob {
  Job job;
  std::string stream_id;  // entry id in the stream
  int attempt = 1;        // the entry's delivery count
  std::string consumer;
  absl::Time started_at;
  // The raw `job` field, as enqueued.
  std::string job_json;
};

// What Finalize writes.
struct JobOutcome {
  JobStatus status = JobStatus::kSuccess;  // must be terminal
  std::string reason;                      // why, for anything but success
  // Further status-hash fields (test counts, artifacts, ...). Names must not
  // collide with the queue's own fields.
  std::vector<std::pair<std::string, std::string>> fields;
};

struct RenewResult {
  bool cancel_requested = false;
  std::string cancel_reason;
};

class JobQueue {
 public:
  JobQueue(RedisOptions redis, QueueOptions options,
           Clock* clock = RealClock());

  // Creates the consumer group (and the stream) if missing, starting from
  // the beginning of the stream so jobs enqueued before any agent existed
  // are not skipped. Idempotent.
  absl::Status EnsureGroup();

  // Adds `job` to the stream, marks it queued and puts it in the recent-jobs
  // index, in one script (one round trip). Returns the entry id. For
  // producers and tests; the first call also ensures the group exists.
  //
  // It also keeps the group's lag readable, which KEDA's lag trigger needs to
  // start an agent when none runs: when XINFO GROUPS reports no lag (nil
  // after entries past the group's last id were deleted, or after Redis
  // restarted from its AOF), it counts the undelivered entries and sets the
  // group's read counter (XGROUP SETID ... ENTRIESREAD) so that lag equals
  // that count again (docs/redis-schema.md, "Consumer-group lag").
  absl::StatusOr<std::string> Enqueue(const Job& job);

  // Enqueue, unless a job with this id is known (its status hash exists,
  // queued, running or finished within result_ttl): then nothing changes
  // and the result is nullopt. Atomic, so concurrent deliveries of the same
  // job (a producer's retries) enqueue it once.
  absl::StatusOr<std::optional<std::string>> EnqueueIfNew(const Job& job);

  // Claims one job, waiting up to `wait` (see the header comment).
  //   kDeadlineExceeded  no job within `wait`.
  //   kCancelled         a stop was requested (SIGTERM) while waiting.
  //   kUnavailable       Redis unreachable for the whole wait, or, once it
  //                      answered, for longer than options.outage_grace.
  //   kFailedPrecondition the group does not exist and create_group is off.
  absl::StatusOr<ClaimedJob> Claim(absl::Duration wait);

  // Extends the lease. kAborted when the job is no longer ours (reclaimed or
  // finalized): stop working on it and write nothing.
  absl::StatusOr<RenewResult> Renew(const ClaimedJob& claim);

  // Writes the terminal status, acks the entry and indexes the job in one
  // atomic step, if this delivery still owns it. kAborted otherwise, with
  // nothing written.
  absl::Status Finalize(const ClaimedJob& claim, const JobOutcome& outcome);

  // Finalize, then claim the next job without waiting, in one atomic step
  // and one round trip: what a long-running worker does between jobs.
  // nullopt when no job is ready now (call Claim() to wait for one).
  // kAborted as for Finalize, and then nothing was claimed either.
  absl::StatusOr<std::optional<ClaimedJob>> FinalizeAndClaimNext(
      const ClaimedJob& claim, const JobOutcome& outcome);

  // Makes the entry claimable at once by any consumer and marks the job
  // queued with `reason`. The delivery count is kept, so requeues count
  // against max_deliveries. kAborted when the job is no longer ours.
  absl::Status Requeue(const ClaimedJob& claim, absl::string_view reason);

  // Asks the agent running `job_id` to cancel it (for the API service). A
  // queued job is cancelled when claimed. Returns NotFound for a job that
  // has no status hash.
  absl::Status RequestCancel(absl::string_view job_id,
                             absl::string_view reason);

  const QueueOptions& options() const { return options_; }
  RedisClient& redis() { return redis_; }

 private:
  struct Entry;
  // Runs an enqueue script (EnqueueScript or EnqueueNewScript) for `job`;
  // nullopt when the script added nothing.
  absl::StatusOr<std::optional<std::string>> AddJob(const RedisScript& script,
                                                    const Job& job);
  // Runs the claim script once. An entry it dead-lettered comes back with
  // `dead_reason` set.
  absl::StatusOr<std::optional<Entry>> ClaimEntry();
  absl::StatusOr<std::optional<Entry>> ParseClaimReply(const RedisReply& reply);
  std::vector<std::string> ClaimKeys() const;
  std::vector<std::string> ClaimArgs() const;
  // kInvalidArgument unless outcome.status is terminal.
  absl::StatusOr<std::vector<std::string>> FinalizeArgs(
      const ClaimedJob& claim, const JobOutcome& outcome) const;
  // Runs a fenced script with KEYS = {stream, the job's status key}.
  absl::StatusOr<RedisReply> EvalForJob(const RedisScript& script,
                                        const ClaimedJob& claim,
                                        absl::Span<const std::string> args);
  // Marks the claimed job running; nullopt when the entry was lost.
  absl::StatusOr<std::optional<RenewResult>> Begin(const ClaimedJob& claim);
  // Turns an entry into a running job, or disposes of it (dead letter,
  // cancel) and returns nullopt.
  absl::StatusOr<std::optional<ClaimedJob>> Start(const Entry& entry);
  absl::Status DeadLetter(const Entry& entry,
                          const std::optional<std::string>& job_id,
                          absl::string_view reason);
  absl::Status Fenced(absl::string_view operation, const RedisReply& reply,
                      absl::string_view stream_id);

  RedisClient redis_;
  QueueOptions options_;
  Clock* clock_;
  bool group_ensured_ = false;  // by this object's Enqueue, once
};

}  // namespace ciagent

#endif  // CIAGENT_QUEUE_JOB_QUEUE_H_
