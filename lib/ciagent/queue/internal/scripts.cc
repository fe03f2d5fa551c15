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

const RedisScript& Fenced(const char* body) {
  // Callers hold the result in a function-local static.
  return *new RedisScript(absl::StrCat(kFence, body));
}

}  // namespace

const RedisScript& ClaimScript() {
  static const RedisScript& script = *new RedisScript(R"lua(
local cursor = '0-0'
repeat
  local r = redis.call('XAUTOCLAIM', KEYS[1], ARGV[1], ARGV[2], ARGV[3],
                       cursor, 'COUNT', 1)
  cursor = r[1]
  local e = r[2][1]
  if e then
    local p = redis.call('XPENDING', KEYS[1], ARGV[1], e[1], e[1], 1)
    return {e[1], e[2], p[1][4]}
  end
until cursor == '0-0'
local r = redis.call('XREADGROUP', 'GROUP', ARGV[1], ARGV[2], 'COUNT', 1,
                     'STREAMS', KEYS[1], '>')
if r then
  local e = r[1][2][1]
  return {e[1], e[2], 1}
end
return false
)lua");
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
  static const RedisScript& script = Fenced(R"lua(
redis.call('HSET', KEYS[2], unpack(ARGV, 6))
redis.call('XACK', KEYS[1], ARGV[1], ARGV[2])
local ttl = tonumber(ARGV[5])
if ttl > 0 then
  redis.call('EXPIRE', KEYS[2], ttl)
  redis.call('EXPIRE', KEYS[3], ttl)
end
return {'ok'}
)lua");
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
  if tonumber(ARGV[8]) > 0 then redis.call('EXPIRE', KEYS[3], ARGV[8]) end
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

}  // namespace ciagent::queue_internal
