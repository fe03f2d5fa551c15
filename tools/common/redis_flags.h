// The Redis settings every tool that talks to Redis shares, beyond its
// URL: --redis-min-replicas and --redis-wait-timeout (durable writes,
// RedisOptions::min_replicas), defaulting to CI_REDIS_MIN_REPLICAS and
// CI_REDIS_WAIT_TIMEOUT, and everything ApplyRedisEnvironment reads
// (passwords, TLS files, the sentinels' password).
#ifndef CIAGENT_TOOLS_COMMON_REDIS_FLAGS_H_
#define CIAGENT_TOOLS_COMMON_REDIS_FLAGS_H_

#include "absl/status/status.h"
#include "ciagent/queue/redis_client.h"

namespace ciagent {

// Applies the environment, then the flags. kInvalidArgument for a bad
// value (the message names the flag or variable).
absl::Status ApplyRedisSettings(RedisOptions* options);

}  // namespace ciagent

#endif  // CIAGENT_TOOLS_COMMON_REDIS_FLAGS_H_
