#include "ciagent/queue/claim_file.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "ciagent/base/json_writer.h"

namespace ciagent {

std::string ClaimFileJson(const ClaimedJob& claim, const QueueOptions& queue,
                          const RedisOptions& redis) {
  JsonObjectBuilder json;
  json.AddRaw("job", JobToJson(claim.job))
      .Add("stream", queue.stream)
      .Add("group", queue.group)
      .Add("stream_id", claim.stream_id)
      .Add("attempt", claim.attempt)
      .Add("consumer", claim.consumer)
      .Add("dead_letter_stream", queue.DeadLetterStream())
      .Add("key_prefix", queue.key_prefix)
      .Add("status_key", queue.StatusKey(claim.job.job_id))
      .Add("log_key", queue.LogKey(claim.job.job_id))
      .Add("lease_ms", absl::ToInt64Milliseconds(queue.lease))
      .Add("renew_interval_ms", absl::ToInt64Milliseconds(queue.renew_interval))
      .Add("max_deliveries", queue.max_deliveries)
      .Add("redis_url", RedactedRedisUrl(redis))
      .Add("claimed_at", FormatTimestamp(claim.started_at));
  return std::move(json).Build();
}

absl::Status WriteClaimFile(absl::string_view path, const ClaimedJob& claim,
                            const QueueOptions& queue,
                            const RedisOptions& redis) {
  const std::string target(path);
  const std::string temp = absl::StrCat(target, ".tmp");
  const std::string json = ClaimFileJson(claim, queue, redis) + "\n";
  const auto io_error = [&](absl::string_view op) {
    return absl::UnavailableError(absl::StrCat(op, " ", target, ": ",
                                               std::strerror(errno)));
  };
  int fd = ::open(temp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0) return io_error("create");
  size_t written = 0;
  while (written < json.size()) {
    ssize_t n = ::write(fd, json.data() + written, json.size() - written);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      absl::Status status = io_error("write");
      ::close(fd);
      ::unlink(temp.c_str());
      return status;
    }
    written += static_cast<size_t>(n);
  }
  const bool synced = ::fsync(fd) == 0;
  if (::close(fd) != 0 || !synced) {
    absl::Status status = io_error("sync");
    ::unlink(temp.c_str());
    return status;
  }
  if (::rename(temp.c_str(), target.c_str()) != 0) return io_error("rename");
  return absl::OkStatus();
}

}  // namespace ciagent
