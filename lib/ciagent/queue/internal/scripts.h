// The Lua scripts behind JobQueue. Internal: the contract is the keys and
// fields they write (docs/redis-schema.md), not the scripts.
//
// Fenced scripts share one prologue: ARGV[1..4] are group, entry id,
// consumer and attempt (delivery count), KEYS[1] is the stream. The script
// proceeds only while that consumer owns that delivery of the entry, and
// returns {"ok", ...} or {"lost", "<why>"}.
#ifndef CIAGENT_QUEUE_INTERNAL_SCRIPTS_H_
#define CIAGENT_QUEUE_INTERNAL_SCRIPTS_H_

#include <string>
#include <utility>
#include <vector>

#include "absl/strings/string_view.h"
#include "ciagent/job/job.h"
#include "ciagent/queue/redis_client.h"

namespace ciagent::queue_internal {

// The status hash of a job just (re-)enqueued, as EnqueueScript and
// RedriveScript write it: status queued, attempt 0, the job's identity and
// `now` as enqueued_at and updated_at.
std::vector<std::pair<std::string, std::string>> QueuedStatusFields(
    const Job& job, absl::string_view now);

// KEYS: stream, dead-letter stream. ARGV: group, consumer, lease_ms,
// max_deliveries, status key prefix, now, max_entry_bytes, max_json_bytes,
// dead-letter maxlen, ttl_seconds.
// Reclaims one entry idle longer than the lease (counting the delivery),
// else reads one new entry without blocking, and marks it running when it
// looks runnable. Returns {id, {field, value, ...}, deliveries, begun,
// cancel_requested, cancel_reason}, or nil. An entry over max_entry_bytes or
// max_deliveries, without a `job` field, or whose `job` is over
// max_json_bytes is dead-lettered in the script instead (the agent never
// receives it): {id, {}, deliveries, 0, '', '', dead_reason, dead_id,
// job_id or ''}. The status key is derived from the entry, so on Redis
// Cluster it must share the stream's hash tag.
const RedisScript& ClaimScript();

// KEYS: stream, status, log, recent-jobs index, dead-letter stream. ARGV:
// fence, ttl_seconds, job_id, index max_len, n, n field/value strings, then
// lease_ms, max_deliveries, status key prefix, now, max_entry_bytes,
// max_json_bytes, dead-letter maxlen.
// Finalize, then the claim above, atomically: {"ok", <claim reply>}.
const RedisScript& FinalizeAndClaimScript();

// KEYS: stream, status, recent-jobs index. ARGV: group, job document,
// job_id, index max_len, then the status hash's field/value pairs.
// Writes the status, then adds the entry (so no agent can start a job not
// yet marked queued) and indexes the job. When XINFO GROUPS has no lag for
// the group (nil after a deletion past its last id, or after a restart from
// the AOF) it states the group's read counter so that lag counts the
// undelivered entries again.
// Returns {id, undelivered entries when repaired, else -1}.
const RedisScript& EnqueueScript();

// EnqueueScript when the job's status hash does not exist yet; else changes
// nothing and returns {"", -1}: a producer that may deliver the same job
// twice (webhook redeliveries) enqueues it once.
const RedisScript& EnqueueNewScript();

// KEYS: stream, status. ARGV: fence, now, then field/value pairs.
// Marks the job running (when the claim script did not); returns {"ok",
// cancel_requested, cancel_reason}.
const RedisScript& BeginScript();

// KEYS: stream, status. ARGV: fence, now.
// Resets the entry's idle time; returns {"ok", cancel_requested, cancel_reason}.
const RedisScript& RenewScript();

// KEYS: stream, status, log, recent-jobs index. ARGV: fence, ttl_seconds,
// job_id, index max_len, n, then n field/value strings.
// Writes the terminal status, acks, sets the keys' expiry and indexes the
// job.
const RedisScript& FinalizeScript();

// KEYS: stream, status. ARGV: fence, idle_ms, then field/value pairs.
// Backdates the entry's delivery so any consumer reclaims it at once.
const RedisScript& RequeueScript();

// KEYS: stream, dead-letter stream[, status]. ARGV: fence, maxlen, reason,
// now, ttl_seconds, then the entry's original field/value pairs. Copies the
// entry to the dead letters, acks it, and marks the job `error` when its
// status key is given.
const RedisScript& DeadLetterScript();

// KEYS: status. ARGV: now, reason. Returns "ok" or the terminal status.
const RedisScript& CancelScript();

// KEYS: dead-letter stream, stream, status, log, recent-jobs index. ARGV:
// dead-letter id, group, job document, job_id, index max_len, how many
// earlier reasons to keep, then the status hash's field/value pairs.
// Moves a dead letter back onto the stream as a new entry (deliveries count
// from 1 again), all or nothing: the status written as by Enqueue plus
// `earlier_reasons` (the dead letter's reason appended to those kept), the
// log's expiry removed, the dead letter deleted. Returns {"ok", entry id},
// {"missing"} when the dead letter is gone (redriven or purged before), or
// {"busy", status} when the job is queued or running again.
const RedisScript& RedriveScript();

}  // namespace ciagent::queue_internal

#endif  // CIAGENT_QUEUE_INTERNAL_SCRIPTS_H_
