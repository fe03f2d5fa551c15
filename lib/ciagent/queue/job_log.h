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
// Example:
//   JobLog log(&redis, queue_options, claim);
//   CIAGENT_RETURN_IF_ERROR(log.Append({{"check", "stderr", "Compiling x"}}));
//
// Not thread-safe; it uses the RedisClient it is given, which must outlive it.
#ifndef CIAGENT_QUEUE_JOB_LOG_H_
#define CIAGENT_QUEUE_JOB_LOG_H_

#include <cstdint>
#include <string>

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

  // The `seq` of the next line (known after the first Append).
  int64_t next_seq() const { return next_seq_; }
  const std::string& key() const { return key_; }

 private:
  RedisClient* redis_;
  std::string key_;
  std::string attempt_;
  std::string max_len_;
  // Reads the last entry to continue this attempt's sequence.
  absl::Status ContinueSequence();

  int64_t next_seq_ = 1;
  bool sequence_known_ = false;
};

}  // namespace ciagent

#endif  // CIAGENT_QUEUE_JOB_LOG_H_
