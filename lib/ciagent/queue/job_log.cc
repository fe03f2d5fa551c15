#include "ciagent/queue/job_log.h"

#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "ciagent/base/status_macros.h"

namespace ciagent {

JobLog::JobLog(RedisClient* redis, const QueueOptions& options,
               const ClaimedJob& claim)
    : redis_(redis),
      key_(options.LogKey(claim.job.job_id)),
      attempt_(absl::StrCat(claim.attempt)),
      max_len_(absl::StrCat(options.log_max_len)) {}

absl::Status JobLog::ContinueSequence() {
  absl::StatusOr<RedisReply> reply =
      redis_->Command({"XREVRANGE", key_, "+", "-", "COUNT", "1"});
  CIAGENT_RETURN_IF_ERROR(Annotate(
      reply.status(), absl::StrCat("read the last line of ", key_)));
  const RedisReply& last = *reply;
  next_seq_ = 1;
  if (last.is_array() && last.elements.size() == 1 &&
      last.elements[0].elements.size() == 2) {
    const std::vector<RedisReply>& fields = last.elements[0].elements[1].elements;
    std::string attempt, seq;
    for (size_t i = 0; i + 1 < fields.size(); i += 2) {
      if (fields[i].str == "attempt") attempt = fields[i + 1].str;
      if (fields[i].str == "seq") seq = fields[i + 1].str;
    }
    int64_t last_seq = 0;
    if (attempt == attempt_ && absl::SimpleAtoi(seq, &last_seq) &&
        last_seq > 0) {
      next_seq_ = last_seq + 1;
    }
  }
  sequence_known_ = true;
  return absl::OkStatus();
}

absl::Status JobLog::Append(absl::Span<const LogLine> lines) {
  if (lines.empty()) return absl::OkStatus();
  if (!sequence_known_) CIAGENT_RETURN_IF_ERROR(ContinueSequence());
  std::vector<std::vector<std::string>> commands;
  commands.reserve(lines.size());
  int64_t seq = next_seq_;
  for (const LogLine& line : lines) {
    commands.push_back({"XADD", key_, "MAXLEN", "~", max_len_, "*", "seq",
                        absl::StrCat(seq++), "attempt", attempt_, "step",
                        line.step, "stream", line.stream, "line", line.line});
  }
  CIAGENT_RETURN_IF_ERROR(
      Annotate(redis_->Pipeline(commands).status(),
               absl::StrCat("append ", lines.size(), " lines to ", key_)));
  next_seq_ = seq;
  return absl::OkStatus();
}

}  // namespace ciagent
