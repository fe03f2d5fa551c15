#include "redis_flags.h"

#include <string>

#include "absl/flags/flag.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "ciagent/base/status_macros.h"
#include "tool_flags.h"

ABSL_FLAG(std::string, redis_min_replicas, "",
          "after enqueue, finalize, requeue and dead-lettering, WAIT for this "
          "many Redis replicas to acknowledge the write (0: no WAIT); "
          "default: env CI_REDIS_MIN_REPLICAS, else 0");
ABSL_FLAG(std::string, redis_wait_timeout, "",
          "how long that WAIT may take, e.g. 500ms, 1s; default: env "
          "CI_REDIS_WAIT_TIMEOUT, else 1s");

namespace ciagent {

absl::Status ApplyRedisSettings(RedisOptions* options) {
  CIAGENT_RETURN_IF_ERROR(ApplyRedisEnvironment(options));
  const std::string replicas = FlagOrEnv(absl::GetFlag(FLAGS_redis_min_replicas),
                                         "CI_REDIS_MIN_REPLICAS", "0");
  if (!absl::SimpleAtoi(replicas, &options->min_replicas) ||
      options->min_replicas < 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "--redis-min-replicas / CI_REDIS_MIN_REPLICAS: a number of replicas, "
        "0 or more (got \"", replicas, "\")"));
  }
  const std::string timeout = FlagOrEnv(absl::GetFlag(FLAGS_redis_wait_timeout),
                                        "CI_REDIS_WAIT_TIMEOUT", "1s");
  if (!absl::ParseDuration(timeout, &options->replica_timeout) ||
      options->replica_timeout <= absl::ZeroDuration() ||
      options->replica_timeout >= options->command_timeout) {
    return absl::InvalidArgumentError(absl::StrCat(
        "--redis-wait-timeout / CI_REDIS_WAIT_TIMEOUT: a duration above 0 and "
        "below the command timeout of ",
        absl::FormatDuration(options->command_timeout), " (got \"", timeout,
        "\")"));
  }
  return absl::OkStatus();
}

}  // namespace ciagent
