// JobLog: appends a job's output lines to its Redis log stream
// (<key_prefix>{<job_id>}:log), where the API service and the terminal UI
// tail them with XREAD.
//
// Each entry has the fields `seq` (1, 2, ... per attempt), `attempt`,
// `step`, `stream` (stdout, stderr or agent) and `line`. The stream is capped
// with XADD MAXLEN ~ QueueOptions::log_max_len. A batch is sent in one round
// trip. Appends are not fenced: a zombie agent may add lines, which readers
// tell apart by `attempt`.
//
// Several writers share one attempt's sequence, one after the other
// (ci-consume's fetch lines, then ci-build's): before its first line a
// writer reads the stream's last entry and, when it belongs to the same
// attempt, continues after its `seq`. Two writers of one attempt must not
// run at the same time.
//
// Failover. Redis replicates asynchronously: lines a master acknowledged
// just before a failover may be missing on the new one. When an append
// finds its connection on another server than the last append's (the
// client re-resolved a Sentinel master, or DNS moved), the log reads the
// stream's last `seq` there and first sends again the lines it still holds
// (the last 10 000 lines or 4 MiB) that are missing, with their own `seq`;
// lines lost beyond that are reported in one warning.
//
// Example:
//   JobLog log(&redis, queue_options, claim);
//   CIAGENT_RETURN_IF_ERROR(log.Append({{"check", "stderr", "Compiling x"}}));
//
// Not thread-safe; it uses the RedisClient it is given, which must outlive it.
#ifndef CIAGENT_QUEUE_JOB_LOG_H_
#define CIAGENT_QUEUE_JOB_LOG_H_

#include <cstdint>
#include <deque>
#include <string>
#include <utility>

#include "absl/status/status.h"
#include "absl/types/span.h"
#include "ciagent/queue/job_queue.h"
#include "ciagent/queue/redis_client.h"

namespace ciagent {

struct LogLine {
  std::string step;
  std::string stream;  // "stdout", "stderr" or "agent"
  std::string line;
};

class JobLog {
 public:
  JobLog(RedisClient* redis, const QueueOptions& options,
         const ClaimedJob& claim);

  absl::Status Append(absl::Span<const LogLine> lines);

  // With Sentinel: connects again, so that the master is resolved anew, and
  // when it is another server than the last append's, sends the lines it
  // is missing (see "Failover"). For the last writer of an attempt before
  // the job's status is written: lines acknowledged by a master that a
  // failover has since replaced are not left lost. No-op without sentinels
  // or before the first append.
  absl::Status ConfirmOnCurrentMaster();

  // The `seq` of the next line (known after the first Append).
  int64_t next_seq() const { return next_seq_; }
  const std::string& key() const { return key_; }

 private:
  RedisClient* redis_;
  std::string key_;
  std::string attempt_;
  std::string max_len_;
  // The `seq` of this attempt's last stored line, 0 when there is none.
  absl::StatusOr<int64_t> LastStoredSeq();
  // After a change of server: the held lines the server is missing, again.
  absl::Status SendMissing();
  void Hold(int64_t first_seq, absl::Span<const LogLine> lines);
  std::vector<std::string> XaddCommand(int64_t seq, const LogLine& line) const;

  int64_t next_seq_ = 1;
  bool sequence_known_ = false;
  // The server of the last successful append.
  std::string server_;
  // The latest lines sent, with their seq, oldest first.
  std::deque<std::pair<int64_t, LogLine>> held_;
  size_t held_bytes_ = 0;
};

}  // namespace ciagent

#endif  // CIAGENT_QUEUE_JOB_LOG_H_
