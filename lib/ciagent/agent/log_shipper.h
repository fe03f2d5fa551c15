// LogShipper: streams a job's build output into its Redis log stream
// (<key_prefix>{<job_id>}:log, see queue/job_log.h and
// docs/redis-schema.md) while the build runs, without ever slowing the build
// down for Redis's sake and without ever failing it because of logs.
//
// Append() masks the line's secrets, applies the size cap, and copies it into
// an in-memory queue; it does no network I/O. A sender thread with its own
// Redis connection sends the queue in batches through JobLog (one pipelined
// XADD per line, fields seq, attempt, step, stream, line): a batch leaves
// when `batch_lines` lines are waiting, when the oldest waiting line is
// `flush_interval` old, or at once on Flush() and Close(). Lines reach the
// stream in the order Append() accepted them, numbered 1, 2, ... by `seq`.
//
// Caps. The shipper stores at most `max_bytes` bytes of line text and at
// most QueueOptions::log_max_len - 1 lines (so that XADD MAXLEN ~ never
// trims this attempt's head). The first line that does not fit ends the
// stored log: it and every later line are counted as truncated, and Close()
// writes ONE marker line (stream "agent", step of the first truncated line):
//   log truncated: the limit of 16777216 bytes was reached; 1234 more lines
//   (567890 bytes) were not stored
// The stored log is therefore always a prefix of the output, plus markers.
//
// Secrets. Every line is passed through a SecretMasker built from
// `secrets` (see build/secret_masker.h for the rules: longest overlapping
// match wins, values under 4 bytes are not masked, a value split over two
// lines is not recognised).
//
// When Redis is slow or down. Lines stay queued, up to `max_buffered_bytes`
// (line text plus a fixed per-line overhead), and the failed batch is
// retried with jittered backoff, then everything queued behind it. When the
// queue is full:
//   - while Redis is accepting batches (merely slower than the build
//     prints), Append() waits for room, up to `max_append_wait`: the build
//     is slowed to Redis's pace rather than lines being lost. The cap bounds
//     how long that can go on in total.
//   - while Redis is failing (the last batch failed, or an Append() already
//     waited `max_append_wait` in vain), Append() drops the line at once and
//     counts it, so an outage never stalls the build.
// Where lines were dropped, the next accepted line is preceded by one
// marker line (stream "agent", step of the first dropped line):
//   log gap: 120 lines (9876 bytes) were lost here: Redis was unreachable
//   or too slow and the log buffer was full
// (Close() writes "... were lost at the end: ..." when no line followed.)
// A gap marker counts against the cap like a line; when it does not fit,
// the truncation marker reports the lost lines instead.
// Delivery is at least once: a batch whose connection broke mid-way is sent
// again whole, with the same `seq` values, so a reader may see a line twice
// (same attempt and seq) and should drop entries whose seq it has seen.
//
// Example (the pipeline):
//   LogShipper log(redis_options, queue_options, claim,
//                  {.secrets = job_secrets});
//   RunProcess(options, [&](StreamKind kind, absl::string_view line) {
//     log.Append("build", kind == StreamKind::kStdout ? "stdout" : "stderr",
//                line);
//   });
//   if (absl::Status s = log.Close(); !s.ok()) {
//     LogWarning("build log incomplete", {{"error", s}});  // the job goes on
//   }
//
// Errors never come from Append(). Flush() and Close() return:
//   kUnavailable  Redis unreachable (or answering LOADING, OOM, ...): the
//                 lines are still queued (Flush) or were given up (Close);
//                 Flush may be called again later.
//   kDeadlineExceeded  (Close) Redis took batches but not all of them
//                 within close_timeout.
//   other codes   as RedisClient reports them for XADD (kUnauthenticated,
//                 kInternal for WRONGTYPE data, ...): retrying will not help
//                 until the cause is fixed.
// The build must not fail because of them; the caller logs and goes on.
// As for every RedisClient user, the process must ignore SIGPIPE: a batch
// written to a Redis that just died would otherwise kill it.
//
// Thread-safety: Append(), Flush(), Close() and stats() may be called from
// any thread, concurrently. Lines from one thread keep their order; lines
// from different threads interleave in the order Append() accepted them.
// The destructor calls Close() and joins the sender thread.
#ifndef CIAGENT_AGENT_LOG_SHIPPER_H_
#define CIAGENT_AGENT_LOG_SHIPPER_H_

#include <cstddef>
#include <cstdint>
#include <deque>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "ciagent/base/backoff.h"
#include "ciagent/base/secret_masker.h"
#include "ciagent/queue/job_log.h"
#include "ciagent/queue/job_queue.h"
#include "ciagent/queue/redis_client.h"

namespace ciagent {

struct LogShipperOptions {
  // Bytes of line text (the `line` field after masking, markers included)
  // stored per shipper, i.e. per attempt of a job. GitLab's default is
  // 4 MiB; 16 MiB keeps the output of a verbose `cargo test`.
  int64_t max_bytes = 16 << 20;
  // Values of the job's secret variables, masked as "[MASKED]".
  std::vector<std::string> secrets;
  // Most lines per batch (one pipelined round trip). At least 1.
  size_t batch_lines = 500;
  // Longest a line waits in memory before it is sent when fewer than
  // batch_lines are waiting: the live tail's latency.
  absl::Duration flush_interval = absl::Milliseconds(100);
  // Memory for lines not yet confirmed by Redis: line text plus
  // kPerLineOverhead per line. A line is always accepted into an empty
  // queue, whatever its size.
  int64_t max_buffered_bytes = 8 << 20;
  // Longest Append() waits for room in a full queue while Redis accepts
  // batches; zero makes a full queue drop lines at once.
  absl::Duration max_append_wait = absl::Seconds(1);
  // How long Close() keeps retrying an unreachable Redis before it gives
  // up on the lines still queued. A batch already on the wire can add up to
  // RedisOptions::command_timeout.
  absl::Duration close_timeout = absl::Seconds(10);
  // Delays between attempts after a failed batch.
  BackoffOptions retry = {.initial = absl::Milliseconds(50),
                          .max = absl::Seconds(2)};
};

// Counters since construction. Every Append() call and every marker ends up
// in exactly one place:
//   lines_appended + markers == lines_sent + buffered + truncated + dropped
struct LogShipperStats {
  int64_t lines_appended = 0;  // Append() calls
  int64_t lines_sent = 0;      // entries Redis confirmed, markers included
  int64_t markers = 0;         // gap and truncation markers queued
  int64_t bytes = 0;           // line text queued for the stream (what
                               // max_bytes bounds), markers included
  int64_t buffered = 0;        // lines and markers queued or in flight
  int64_t truncated = 0;       // lines not stored: over the cap
  int64_t truncated_bytes = 0;
  int64_t dropped = 0;  // lines lost: queue full while Redis failed,
                        // or Append() after Close()
  int64_t dropped_bytes = 0;
  int64_t failed_batches = 0;  // send attempts that failed (and were retried)
};

class LogShipper {
 public:
  // Memory counted per queued line beyond its text (strings, queue node).
  static constexpr int64_t kPerLineOverhead = 128;

  // Starts the sender thread, which opens its own connection from `redis`
  // (lazily, on the first batch). Writes to queue.LogKey(claim.job.job_id)
  // with claim.attempt.
  LogShipper(RedisOptions redis, QueueOptions queue, ClaimedJob claim,
             LogShipperOptions options = {});
  // Close() if not closed; its status is dropped.
  ~LogShipper();
  LogShipper(const LogShipper&) = delete;
  LogShipper& operator=(const LogShipper&) = delete;

  // Queues one line (without its newline) of `step`; `stream` is "stdout",
  // "stderr" or "agent". Never does network I/O; waits only as described in
  // the header comment (full queue, Redis accepting). After Close() the line
  // is dropped.
  void Append(absl::string_view step, absl::string_view stream,
              absl::string_view line);

  // Returns once every line accepted before the call is in Redis (readable
  // with XRANGE), or with the error of a send attempt that failed after the
  // call (the lines stay queued and are retried). A sender in backoff
  // retries at once, so a Redis that refuses connections is reported
  // promptly; one that hangs, after RedisOptions::command_timeout. After
  // Close(), returns what Close() returned.
  absl::Status Flush();

  // Queues the truncation marker if lines were truncated (and a gap marker
  // for lines dropped since the last one), sends everything, retrying for up
  // to close_timeout, and stops the sender thread. Idempotent: later calls
  // return the first call's status. kUnavailable (or the send error) names
  // how many lines were given up.
  absl::Status Close();

  LogShipperStats stats() const;
  // The Redis key lines go to.
  const std::string& key() const { return log_.key(); }

 private:
  struct Entry {
    LogLine line;
    absl::Time queued_at;
  };

  // Sender thread.
  void Run();
  // Waits until a batch should leave (or the thread should end) and moves
  // it into *batch. False: end the thread.
  bool NextBatch(std::vector<LogLine>* batch)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  bool ShouldSendNow(absl::Time now) const ABSL_SHARED_LOCKS_REQUIRED(mu_);

  bool HasRoom(int64_t cost) const ABSL_SHARED_LOCKS_REQUIRED(mu_);
  bool FitsCap(int64_t line_bytes) const ABSL_SHARED_LOCKS_REQUIRED(mu_);
  void Enqueue(LogLine line) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Drops a line that does not fit the cap; the first one ends the log.
  void Truncate(absl::string_view step, int64_t line_bytes)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void Drop(absl::string_view step, int64_t line_bytes)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Queues the gap marker for lines dropped since the last one, if it fits
  // the cap (else they are reported by the truncation marker).
  void EnqueueGapMarker() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void EnqueueFinalMarkers() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const LogShipperOptions options_;
  const SecretMasker masker_;
  const int64_t max_lines_;  // stored lines, markers included, before the
                             // truncation marker

  // Used by the sender thread only.
  RedisClient redis_;
  JobLog log_;
  Backoff backoff_;

  mutable absl::Mutex mu_;
  std::deque<Entry> queue_ ABSL_GUARDED_BY(mu_);
  int64_t buffered_cost_ ABSL_GUARDED_BY(mu_) = 0;  // queue + in flight
  int64_t in_flight_ ABSL_GUARDED_BY(mu_) = 0;
  int64_t queued_total_ ABSL_GUARDED_BY(mu_) = 0;  // entries ever queued
  int64_t flush_target_ ABSL_GUARDED_BY(mu_) = 0;  // send entries up to it now
  int64_t stored_lines_ ABSL_GUARDED_BY(mu_) = 0;  // toward the cap
  bool truncating_ ABSL_GUARDED_BY(mu_) = false;
  std::string truncated_step_ ABSL_GUARDED_BY(mu_);
  std::string truncated_limit_ ABSL_GUARDED_BY(mu_);  // "16777216 bytes"
  // Dropped since the last gap marker.
  int64_t gap_lines_ ABSL_GUARDED_BY(mu_) = 0;
  int64_t gap_bytes_ ABSL_GUARDED_BY(mu_) = 0;
  std::string gap_step_ ABSL_GUARDED_BY(mu_);
  int producers_waiting_ ABSL_GUARDED_BY(mu_) = 0;
  // The last batch failed, or an Append() waited for room in vain: full
  // queue means drop. Cleared by a successful batch.
  bool sender_stalled_ ABSL_GUARDED_BY(mu_) = false;
  absl::Time retry_at_ ABSL_GUARDED_BY(mu_) = absl::InfinitePast();
  bool retry_now_ ABSL_GUARDED_BY(mu_) = false;  // Flush/Close skip backoff
  absl::Status last_error_ ABSL_GUARDED_BY(mu_);
  bool closing_ ABSL_GUARDED_BY(mu_) = false;
  absl::Time close_deadline_ ABSL_GUARDED_BY(mu_) = absl::InfiniteFuture();
  bool sender_done_ ABSL_GUARDED_BY(mu_) = false;
  bool closed_ ABSL_GUARDED_BY(mu_) = false;
  absl::Status close_status_ ABSL_GUARDED_BY(mu_);
  LogShipperStats stats_ ABSL_GUARDED_BY(mu_);

  // Serialises Close() callers; held while joining the thread.
  absl::Mutex close_mu_;
  std::thread thread_;
};

}  // namespace ciagent

#endif  // CIAGENT_AGENT_LOG_SHIPPER_H_
