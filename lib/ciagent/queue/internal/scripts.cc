#include "ciagent/queue/internal/scripts.h"

#include <string>

#include "absl/strings/str_cat.h"

namespace ciagent::queue_internal {
namespace {

// Checks that ARGV[3] owns delivery ARGV[4] of entry ARGV[2]. XACK and
// XCLAIM would happily act for anyone, so every write of a delivery passes
// through here first.
constexpr char kFence[] = R"lua(
local function fence()
  local p = redis.call('XPENDING', KEYS[1], ARGV[1], ARGV[2], ARGV[2], 1)
  if #p == 0 then return 'entry is no longer pending (acknowledged)' end
  if p[1][2] ~= ARGV[3] then return 'entry is owned by consumer ' .. p[1][2] end
  if tonumber(p[1][4]) ~= tonumber(ARGV[4]) then
    return 'entry was redelivered (delivery ' .. p[1][4] .. ')'
  end
  return nil
end
local lost = fence()
if lost then return {'lost', lost} end
)lua";

const RedisScript& Fenced(absl::string_view body) {
  // Callers hold the result in a function-local static.
  return *new RedisScript(absl::StrCat(kFence, body));
}

// The group's XINFO GROUPS record as a table (name, last-delivered-id,
// entries-read, lag, ...), or nil. A field Redis reports as nil is absent.
constexpr char kGroupInfo[] = R"lua(
local function group_info(stream, group)
  for _, g in ipairs(redis.call('XINFO', 'GROUPS', stream)) do
    local info = {}
    for i = 1, #g, 2 do info[g[i]] = g[i + 1] end
    if info.name == group then return info end
  end
  return nil
end
)lua";

// claim_next(stream, group, consumer, lease_ms, max_deliveries, prefix, now,
//            max_entry_bytes, max_json_bytes, dead, dead_maxlen, ttl):
// reclaims one entry idle longer than the lease (counting the delivery), else
// reads one new entry without blocking. An entry that looks runnable (a job
// document with a well-formed job_id, within max_deliveries) is started at
// once — status `running` — saving the agent a round trip; the agent still
// validates the job fully and dead-letters it if that fails.
//
// Poison pills never reach the agent: an entry larger than max_entry_bytes
// (which would exhaust the agent's memory on every delivery), one without a
// `job` field or whose `job` is longer than max_json_bytes (the agent would
// only refuse it), or one delivered more than max_deliveries times (whose
// agents died on it) is moved to the dead-letter stream here, server-side,
// and only its id comes back.
// Returns {id, {field, value, ...}, deliveries, begun, cancel, cancel_reason}
// for a job, {id, {}, deliveries, 0, '', '', dead_reason, dead_id, job_id}
// for a dead-lettered entry, or false.
constexpr char kClaimNext[] = R"lua(
local function usable_job_id(id)
  return type(id) == 'string' and #id <= 128 and
         string.match(id, '^[%w._-]+$') ~= nil and id ~= '.' and id ~= '..'
end

-- Copies the entry to the dead letters, acks it and, when the job is known,
-- marks it `error`. `fields` are what the dead letter keeps of the entry.
local function bury(stream, group, consumer, id, fields, deliveries, reason,
                    extra, job_id, dead, dead_maxlen, prefix, now, ttl)
  local args = {'XADD', dead, 'MAXLEN', '~', dead_maxlen, '*'}
  for i = 1, #fields do args[#args + 1] = fields[i] end
  for _, v in ipairs({'dead_reason', reason, 'dead_deliveries', deliveries,
                      'dead_source_id', id, 'dead_consumer', consumer,
                      'dead_at', now}) do
    args[#args + 1] = v
  end
  for i = 1, #extra do args[#args + 1] = extra[i] end
  local dead_id = redis.call(unpack(args))
  redis.call('XACK', stream, group, id)
  if job_id then
    local key = prefix .. '{' .. job_id .. '}'
    redis.call('HSET', key, 'status', 'error', 'reason', reason,
               'attempt', deliveries, 'stream_id', id, 'consumer', consumer,
               'finished_at', now, 'updated_at', now,
               'dead_letter_id', dead_id)
    if tonumber(ttl) > 0 then
      redis.call('EXPIRE', key, ttl)
      redis.call('EXPIRE', key .. ':log', ttl)
    end
  end
  return {id, {}, deliveries, 0, '', '', reason, dead_id, job_id or ''}
end

-- What the dead letter keeps of a large entry: the first 16 fields, each cut
-- to 1 KiB, so the dead-letter stream cannot become the next memory bomb.
local function capped(fields)
  local kept = {}
  for i = 1, math.min(#fields, 32) do
    kept[i] = string.sub(fields[i], 1, 1024)
  end
  return kept
end

-- A large document is not decoded: its job_id counts only when it is the
-- first key (as JobToJson writes it).
local function leading_job_id(doc)
  local job_id = doc and string.match(string.sub(doc, 1, 256),
                                      '^%s*{%s*"job_id"%s*:%s*"([^"]*)"')
  if usable_job_id(job_id) then return job_id end
  return nil
end

local function claim_next(stream, group, consumer, lease_ms, max_deliveries,
                          prefix, now, max_entry_bytes, max_json_bytes, dead,
                          dead_maxlen, ttl)
  local id, fields, deliveries
  local cursor = '0-0'
  repeat
    local r = redis.call('XAUTOCLAIM', stream, group, consumer, lease_ms,
                         cursor, 'COUNT', 1)
    cursor = r[1]
    local e = r[2][1]
    if e then
      local p = redis.call('XPENDING', stream, group, e[1], e[1], 1)
      id, fields, deliveries = e[1], e[2], tonumber(p[1][4])
      break
    end
  until cursor == '0-0'
  if not id then
    local r = redis.call('XREADGROUP', 'GROUP', group, consumer, 'COUNT', 1,
                         'STREAMS', stream, '>')
    if not r then return false end
    local e = r[1][2][1]
    id, fields, deliveries = e[1], e[2], 1
    -- Redis 7.0 writes this read to the AOF and replicas as XCLAIM ...
    -- LASTID, which moves the group's last id but not its read counter, so
    -- after a restart the counter (and the lag KEDA reads) would be stale.
    -- Stating the counter explicitly is written out with it.
    local g = group_info(stream, group)
    if g and g['entries-read'] then
      redis.call('XGROUP', 'SETID', stream, group, id, 'ENTRIESREAD',
                 g['entries-read'])
    end
  end
  local doc
  local size = 0
  for i = 1, #fields, 2 do
    size = size + #fields[i] + #fields[i + 1]
    if fields[i] == 'job' then doc = fields[i + 1] end
  end
  local function bury_large(reason)
    return bury(stream, group, consumer, id, capped(fields), deliveries,
                reason, {'dead_entry_bytes', size, 'dead_truncated', 1},
                leading_job_id(doc), dead, dead_maxlen, prefix, now, ttl)
  end
  if size > tonumber(max_entry_bytes) then
    return bury_large('oversized entry: ' .. size ..
                      ' bytes, more than max_entry_bytes=' .. max_entry_bytes)
  end
  if not doc then
    return bury(stream, group, consumer, id, fields, deliveries,
                'malformed entry: no `job` field', {}, nil, dead, dead_maxlen,
                prefix, now, ttl)
  end
  if #doc > tonumber(max_json_bytes) then
    -- The agent's parser would refuse it with this reason (ParseJob).
    return bury_large('malformed job: job: document is ' .. #doc ..
                      ' bytes; the limit is ' .. max_json_bytes)
  end
  local ok, job = pcall(cjson.decode, doc)
  if not ok or type(job) ~= 'table' then job = {} end
  local job_id = usable_job_id(job.job_id) and job.job_id or nil
  if deliveries > tonumber(max_deliveries) then
    return bury(stream, group, consumer, id, fields, deliveries,
                'delivered ' .. deliveries ..
                ' times, more than max_deliveries=' .. max_deliveries,
                {}, job_id, dead, dead_maxlen, prefix, now, ttl)
  end
  local begun, cancel, cancel_reason = 0, '', ''
  if job_id and type(job.repo) == 'string' and
     type(job.branch) == 'string' and type(job.commit) == 'string' then
    local key = prefix .. '{' .. job_id .. '}'
    local c = redis.call('HMGET', key, 'cancel_requested', 'cancel_reason')
    cancel, cancel_reason = c[1] or '', c[2] or ''
    redis.call('HDEL', key, 'finished_at', 'duration_ms', 'reason')
    redis.call('HSET', key, 'status', 'running', 'job_id', job_id,
               'repo', job.repo, 'branch', job.branch,
               'commit', string.lower(job.commit), 'attempt', deliveries,
               'consumer', consumer, 'stream_id', id, 'started_at', now,
               'lease_renewed_at', now, 'updated_at', now)
    begun = 1
  end
  return {id, fields, deliveries, begun, cancel, cancel_reason}
end
)lua";

// index_job(index, max_len, stream_id, job_id): puts the job in the
// recent-jobs index, a sorted set scored by its entry id, and keeps the
// max_len newest. The score is milliseconds × 1000 + sequence (capped at
// 999), so jobs added in one millisecond keep the stream's order; it is
// written as digits (exact below 2^53), never as a Lua float. It comes from
// the entry, so enqueue and finalize write the same one. max_len 0 keeps no
// index.
constexpr char kIndexJob[] = R"lua(
local function index_job(index, max_len, stream_id, job_id)
  max_len = tonumber(max_len)
  if max_len <= 0 then return end
  local ms, seq = string.match(stream_id, '^(%d+)-(%d+)$')
  seq = math.min(tonumber(seq), 999)
  redis.call('ZADD', index, ms .. string.format('%03d', seq), job_id)
  if redis.call('ZCARD', index) > max_len then
    redis.call('ZREMRANGEBYRANK', index, 0, -max_len - 1)
  end
end
)lua";

// Writes a terminal status from ARGV[9..8+ARGV[8]], acks, expires, and
// indexes the job (ARGV[6] job_id, ARGV[7] index max_len) in `index`.
constexpr char kFinalize[] = R"lua(
local function finalize(index)
  local count = tonumber(ARGV[8])
  redis.call('HSET', KEYS[2], unpack(ARGV, 9, 8 + count))
  redis.call('XACK', KEYS[1], ARGV[1], ARGV[2])
  local ttl = tonumber(ARGV[5])
  if ttl > 0 then
    redis.call('EXPIRE', KEYS[2], ttl)
    redis.call('EXPIRE', KEYS[3], ttl)
  end
  index_job(index, ARGV[7], ARGV[2], ARGV[6])
  return 9 + count
end
)lua";

// add_job(stream, group, status_key, index, index_max, job_id, doc, fields):
// writes the status hash `fields` (first, so that no agent can start a job
// not yet marked queued), adds the entry, indexes the job, and keeps the
// group's lag readable. Returns the entry id and, when lag had to be
// repaired, the undelivered count (else -1).
//
// Lag: when XINFO GROUPS has none for the group (nil after a deletion past
// its last id, or after a restart from the AOF), Redis cannot tell how far
// the group has read. Count what it has not read and state the counter so
// that lag says exactly that.
constexpr char kAddJob[] = R"lua(
local function add_job(stream, group, status_key, index, index_max, job_id,
                       doc, fields)
  redis.call('DEL', status_key)
  redis.call('HSET', status_key, unpack(fields))
  local id = redis.call('XADD', stream, '*', 'job', doc)
  index_job(index, index_max, id, job_id)
  local g = group_info(stream, group)
  if not g or g.lag then return id, -1 end
  local undelivered, from = 0, '(' .. g['last-delivered-id']
  repeat
    local page = redis.call('XRANGE', stream, from, '+', 'COUNT', 100)
    undelivered = undelivered + #page
    if #page > 0 then from = '(' .. page[#page][1] end
  until #page < 100
  -- Forget the tombstone (a last deletion before any entry counts as none;
  -- 0-0 would be ignored), then read entries-added as the lag from zero.
  redis.call('XSETID', stream, id, 'MAXDELETEDID', '0-1')
  redis.call('XGROUP', 'SETID', stream, group, g['last-delivered-id'],
             'ENTRIESREAD', 0)
  local added = group_info(stream, group).lag
  redis.call('XGROUP', 'SETID', stream, group, g['last-delivered-id'],
             'ENTRIESREAD', added - undelivered)
  return id, undelivered
end
)lua";

}  // namespace

std::vector<std::pair<std::string, std::string>> QueuedStatusFields(
    const Job& job, absl::string_view now) {
  return {{"status", "queued"},          {"job_id", job.job_id},
          {"repo", job.repo},            {"branch", job.branch},
          {"commit", job.commit},        {"attempt", "0"},
          {"enqueued_at", std::string(now)}, {"updated_at", std::string(now)}};
}

const RedisScript& ClaimScript() {
  static const RedisScript& script = *new RedisScript(absl::StrCat(kGroupInfo, kClaimNext, R"lua(
return claim_next(KEYS[1], ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6],
                  ARGV[7], ARGV[8], KEYS[2], ARGV[9], ARGV[10])
)lua"));
  return script;
}

const RedisScript& FinalizeAndClaimScript() {
  static const RedisScript& script = Fenced(absl::StrCat(kIndexJob, kFinalize, kGroupInfo, kClaimNext, R"lua(
local c = finalize(KEYS[4])
return {'ok', claim_next(KEYS[1], ARGV[1], ARGV[3], ARGV[c], ARGV[c + 1],
                         ARGV[c + 2], ARGV[c + 3], ARGV[c + 4], ARGV[c + 5],
                         KEYS[5], ARGV[c + 6], ARGV[5])}
)lua"));
  return script;
}

const RedisScript& EnqueueScript() {
  static const RedisScript& script = *new RedisScript(absl::StrCat(kGroupInfo, kIndexJob, kAddJob, R"lua(
local id, undelivered = add_job(KEYS[1], ARGV[1], KEYS[2], KEYS[3], ARGV[4],
                                ARGV[3], ARGV[2], {unpack(ARGV, 5)})
return {id, undelivered}
)lua"));
  return script;
}

const RedisScript& EnqueueNewScript() {
  static const RedisScript& script = *new RedisScript(absl::StrCat(kGroupInfo, kIndexJob, kAddJob, R"lua(
if redis.call('EXISTS', KEYS[2]) == 1 then return {'', -1} end
local id, undelivered = add_job(KEYS[1], ARGV[1], KEYS[2], KEYS[3], ARGV[4],
                                ARGV[3], ARGV[2], {unpack(ARGV, 5)})
return {id, undelivered}
)lua"));
  return script;
}

const RedisScript& BeginScript() {
  static const RedisScript& script = Fenced(R"lua(
local cancel = redis.call('HMGET', KEYS[2], 'cancel_requested', 'cancel_reason')
redis.call('HDEL', KEYS[2], 'finished_at', 'duration_ms', 'reason')
redis.call('HSET', KEYS[2], 'updated_at', ARGV[5], unpack(ARGV, 6))
return {'ok', cancel[1] or '', cancel[2] or ''}
)lua");
  return script;
}

const RedisScript& RenewScript() {
  static const RedisScript& script = Fenced(R"lua(
redis.call('XCLAIM', KEYS[1], ARGV[1], ARGV[3], 0, ARGV[2], 'JUSTID')
redis.call('HSET', KEYS[2], 'lease_renewed_at', ARGV[5])
local cancel = redis.call('HMGET', KEYS[2], 'cancel_requested', 'cancel_reason')
return {'ok', cancel[1] or '', cancel[2] or ''}
)lua");
  return script;
}

const RedisScript& FinalizeScript() {
  static const RedisScript& script = Fenced(absl::StrCat(kIndexJob, kFinalize, R"lua(
finalize(KEYS[4])
return {'ok'}
)lua"));
  return script;
}

const RedisScript& RequeueScript() {
  static const RedisScript& script = Fenced(R"lua(
redis.call('XCLAIM', KEYS[1], ARGV[1], ARGV[3], 0, ARGV[2],
           'IDLE', ARGV[5], 'JUSTID')
redis.call('HSET', KEYS[2], unpack(ARGV, 6))
return {'ok'}
)lua");
  return script;
}

const RedisScript& DeadLetterScript() {
  static const RedisScript& script = Fenced(R"lua(
local args = {'XADD', KEYS[2], 'MAXLEN', '~', ARGV[5], '*'}
for i = 9, #ARGV do args[#args + 1] = ARGV[i] end
for _, v in ipairs({'dead_reason', ARGV[6], 'dead_deliveries', ARGV[4],
                    'dead_source_id', ARGV[2], 'dead_consumer', ARGV[3],
                    'dead_at', ARGV[7]}) do
  args[#args + 1] = v
end
local dead_id = redis.call(unpack(args))
redis.call('XACK', KEYS[1], ARGV[1], ARGV[2])
if KEYS[3] then
  redis.call('HSET', KEYS[3], 'status', 'error', 'reason', ARGV[6],
             'attempt', ARGV[4], 'stream_id', ARGV[2], 'consumer', ARGV[3],
             'finished_at', ARGV[7], 'updated_at', ARGV[7],
             'dead_letter_id', dead_id)
  if tonumber(ARGV[8]) > 0 then
    redis.call('EXPIRE', KEYS[3], ARGV[8])
    -- An earlier attempt's log goes with the status (no-op without one).
    redis.call('EXPIRE', KEYS[4], ARGV[8])
  end
end
return {'ok', dead_id}
)lua");
  return script;
}

const RedisScript& CancelScript() {
  static const RedisScript& script = *new RedisScript(R"lua(
local s = redis.call('HGET', KEYS[1], 'status')
if not s then return 'missing' end
if s == 'success' or s == 'failed' or s == 'timeout' or s == 'cancelled' or
   s == 'error' then
  return s
end
redis.call('HSET', KEYS[1], 'cancel_requested', ARGV[1],
           'cancel_reason', ARGV[2])
return 'ok'
)lua");
  return script;
}

const RedisScript& RedriveScript() {
  static const RedisScript& script = *new RedisScript(absl::StrCat(kGroupInfo, kIndexJob, kAddJob, R"lua(
local dead = redis.call('XRANGE', KEYS[1], ARGV[1], ARGV[1])
if #dead == 0 then return {'missing'} end
-- The job may be back already (enqueued again, or a dead letter of the same
-- job redriven before): a second copy would run it twice.
local status = redis.call('HGET', KEYS[3], 'status')
if status == 'queued' or status == 'running' then return {'busy', status} end
local letter = {}
local fields = dead[1][2]
for i = 1, #fields, 2 do letter[fields[i]] = fields[i + 1] end
local earlier = {}
local kept = redis.call('HGET', KEYS[3], 'earlier_reasons')
if kept then
  local ok, list = pcall(cjson.decode, kept)
  if ok and type(list) == 'table' then earlier = list end
end
earlier[#earlier + 1] = {reason = letter.dead_reason or '',
                         at = letter.dead_at or '', dead_letter_id = ARGV[1]}
while #earlier > tonumber(ARGV[6]) do table.remove(earlier, 1) end
local id = add_job(KEYS[2], ARGV[2], KEYS[3], KEYS[5], ARGV[5], ARGV[4],
                   ARGV[3], {unpack(ARGV, 7)})
redis.call('HSET', KEYS[3], 'earlier_reasons', cjson.encode(earlier))
-- Dead-lettering set the log to expire; the job is alive again.
redis.call('PERSIST', KEYS[4])
redis.call('XDEL', KEYS[1], ARGV[1])
return {'ok', id}
)lua"));
  return script;
}

}  // namespace ciagent::queue_internal
