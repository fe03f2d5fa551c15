// The claim file: `<workdir>/job.json`, written by `ci-consume` for the
// tools that run the job after it (`ci-build`). It holds everything needed
// to renew, log and finalize the job — and no secret: the Redis password is
// read from the environment again by the reader.
//
//   {"job": {...},                       // the job, as in job.h
//    "stream": "ci-jobs", "group": "ci-workers", "stream_id": "1795...-0",
//    "attempt": 1, "consumer": "agent-7f9c",
//    "dead_letter_stream": "ci-jobs:dead", "key_prefix": "ci:job:",
//    "status_key": "ci:job:{push-1234}", "log_key": "ci:job:{push-1234}:log",
//    "lease_ms": 60000, "renew_interval_ms": 20000, "max_deliveries": 3,
//    "redis_url": "redis://127.0.0.1:6379/0", "claimed_at": "2026-..."}
#ifndef CIAGENT_QUEUE_CLAIM_FILE_H_
#define CIAGENT_QUEUE_CLAIM_FILE_H_

#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "ciagent/queue/job_queue.h"
#include "ciagent/queue/redis_client.h"

namespace ciagent {

std::string ClaimFileJson(const ClaimedJob& claim, const QueueOptions& queue,
                          const RedisOptions& redis);

// Writes the claim file to `path` atomically (temporary file + rename), with
// mode 0600. kUnavailable on I/O errors (disk full is an infrastructure
// failure: the job is requeued).
absl::Status WriteClaimFile(absl::string_view path, const ClaimedJob& claim,
                            const QueueOptions& queue,
                            const RedisOptions& redis);

// A claim file read back: everything a later tool needs to renew, log and
// finalize the job. `redis` has no password: apply ApplyRedisEnvironment.
struct ClaimFile {
  std::string path;  // where it was read from
  ClaimedJob claim;
  QueueOptions queue;
  RedisOptions redis;
};

// Reads and validates a claim file written by WriteClaimFile. The job inside
// is validated again with ParseJob (with `parse`). kNotFound when the file is
// missing; kInvalidArgument when it is not a claim file (field named).
absl::StatusOr<ClaimFile> ReadClaimFile(absl::string_view path,
                                        const JobParseOptions& parse = {});

}  // namespace ciagent

#endif  // CIAGENT_QUEUE_CLAIM_FILE_H_
