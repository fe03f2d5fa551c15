#include "ciagent/queue/claim_file.h"

#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>
#include <string_view>

#include <simdjson.h>

#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "ciagent/base/atomic_file.h"
#include "ciagent/base/clock.h"
#include "ciagent/base/json_writer.h"
#include "ciagent/base/status_macros.h"

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
  return WriteFileAtomically(path, ClaimFileJson(claim, queue, redis) + "\n",
                             0600);
}

namespace {

// Larger files are not claim files.
constexpr size_t kMaxClaimFileBytes = 1 << 20;

// Reads the members of a claim file's top-level object, naming the field of
// the first problem.
class ClaimFileFields {
 public:
  ClaimFileFields(absl::string_view path, simdjson::dom::object object)
      : path_(path), object_(object) {}

  absl::Status String(const char* field, std::string* out) {
    std::string_view text;
    if (object_[field].get_string().get(text) != simdjson::SUCCESS) {
      return Invalid(field, "must be a string");
    }
    out->assign(text.data(), text.size());
    return absl::OkStatus();
  }
  absl::Status Int(const char* field, int64_t* out) {
    if (object_[field].get_int64().get(*out) != simdjson::SUCCESS) {
      return Invalid(field, "must be an integer");
    }
    return absl::OkStatus();
  }
  absl::Status Invalid(absl::string_view field, absl::string_view rule) const {
    return absl::InvalidArgumentError(
        absl::StrCat("claim file ", path_, ": ", field, ": ", rule));
  }

 private:
  std::string path_;
  simdjson::dom::object object_;
};

}  // namespace

absl::StatusOr<ClaimFile> ReadClaimFile(absl::string_view path,
                                        const JobParseOptions& parse) {
  ClaimFile file;
  file.path = std::string(path);
  std::ifstream in(file.path, std::ios::binary);
  if (!in) {
    return absl::NotFoundError(
        absl::StrCat("claim file ", path, ": cannot open: ",
                     std::strerror(errno)));
  }
  std::string text(kMaxClaimFileBytes + 1, '\0');
  in.read(text.data(), static_cast<std::streamsize>(text.size()));
  text.resize(static_cast<size_t>(in.gcount()));
  if (text.size() > kMaxClaimFileBytes) {
    return absl::InvalidArgumentError(
        absl::StrCat("claim file ", path, ": larger than 1 MiB"));
  }
  simdjson::dom::parser parser;
  simdjson::dom::object object;
  if (parser.parse(text).get_object().get(object) != simdjson::SUCCESS) {
    return absl::InvalidArgumentError(
        absl::StrCat("claim file ", path, ": not a JSON object"));
  }
  ClaimFileFields fields(path, object);
  simdjson::dom::object job;
  if (object["job"].get_object().get(job) != simdjson::SUCCESS) {
    return fields.Invalid("job", "must be an object");
  }
  absl::StatusOr<Job> parsed = ParseJob(simdjson::to_string(job), parse);
  if (!parsed.ok()) return fields.Invalid("job", parsed.status().message());
  file.claim.job = *std::move(parsed);
  file.claim.job_json = JobToJson(file.claim.job);

  int64_t attempt = 0, lease_ms = 0, renew_ms = 0, max_deliveries = 0;
  std::string redis_url, claimed_at;
  QueueOptions& queue = file.queue;
  CIAGENT_RETURN_IF_ERROR(fields.String("stream", &queue.stream));
  CIAGENT_RETURN_IF_ERROR(fields.String("group", &queue.group));
  CIAGENT_RETURN_IF_ERROR(
      fields.String("dead_letter_stream", &queue.dead_letter_stream));
  CIAGENT_RETURN_IF_ERROR(fields.String("key_prefix", &queue.key_prefix));
  CIAGENT_RETURN_IF_ERROR(fields.String("stream_id", &file.claim.stream_id));
  CIAGENT_RETURN_IF_ERROR(fields.String("consumer", &file.claim.consumer));
  CIAGENT_RETURN_IF_ERROR(fields.String("redis_url", &redis_url));
  CIAGENT_RETURN_IF_ERROR(fields.String("claimed_at", &claimed_at));
  CIAGENT_RETURN_IF_ERROR(fields.Int("attempt", &attempt));
  CIAGENT_RETURN_IF_ERROR(fields.Int("lease_ms", &lease_ms));
  CIAGENT_RETURN_IF_ERROR(fields.Int("renew_interval_ms", &renew_ms));
  CIAGENT_RETURN_IF_ERROR(fields.Int("max_deliveries", &max_deliveries));
  if (attempt < 1 || lease_ms <= 0 || renew_ms <= 0 || max_deliveries < 1 ||
      file.claim.consumer.empty() || file.claim.stream_id.empty()) {
    return fields.Invalid("attempt/lease_ms/renew_interval_ms/max_deliveries",
                          "must be positive, consumer and stream_id set");
  }
  std::string error;
  if (!absl::ParseTime(absl::RFC3339_full, claimed_at,
                       &file.claim.started_at, &error)) {
    return fields.Invalid("claimed_at", error);
  }
  file.claim.attempt = static_cast<int>(attempt);
  queue.consumer = file.claim.consumer;
  queue.lease = absl::Milliseconds(lease_ms);
  queue.renew_interval = absl::Milliseconds(renew_ms);
  queue.max_deliveries = static_cast<int>(max_deliveries);
  queue.parse = parse;
  absl::StatusOr<RedisOptions> redis = RedisOptionsFromUrl(redis_url);
  if (!redis.ok()) return fields.Invalid("redis_url", redis.status().message());
  file.redis = *std::move(redis);
  return file;
}

}  // namespace ciagent
