#include "ciagent/queue/job_log.h"

#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "ciagent/base/log.h"
#include "ciagent/base/status_macros.h"

namespace ciagent {

JobLog::JobLog(RedisClient* redis, const QueueOptions& options,
               const ClaimedJob& claim)
    : redis_(redis),
      key_(options.LogKey(claim.job.job_id)),
      attempt_(absl::StrCat(claim.attempt)),
      max_len_(absl::StrCat(options.log_max_len)) {}

namespace {

constexpr size_t kHeldLines = 10000;
constexpr size_t kHeldBytes = 4 << 20;

}  // namespace

absl::StatusOr<int64_t> JobLog::LastStoredSeq() {
  absl::StatusOr<RedisReply> reply =
      redis_->Command({"XREVRANGE", key_, "+", "-", "COUNT", "1"});
  CIAGENT_RETURN_IF_ERROR(Annotate(
      reply.status(), absl::StrCat("read the last line of ", key_)));
  const RedisReply& last = *reply;
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
      return last_seq;
    }
  }
  return 0;
}

std::vector<std::string> JobLog::XaddCommand(int64_t seq,
                                             const LogLine& line) const {
  return {"XADD",   key_,        "MAXLEN", "~",         max_len_,
          "*",      "seq",       absl::StrCat(seq),     "attempt",
          attempt_, "step",      line.step, "stream",   line.stream,
          "line",   line.line};
}

void JobLog::Hold(int64_t first_seq, absl::Span<const LogLine> lines) {
  for (const LogLine& line : lines) {
    held_bytes_ += line.line.size();
    held_.emplace_back(first_seq++, line);
  }
  while (!held_.empty() &&
         (held_.size() > kHeldLines || held_bytes_ > kHeldBytes)) {
    held_bytes_ -= held_.front().second.line.size();
    held_.pop_front();
  }
}

absl::Status JobLog::SendMissing() {
  CIAGENT_ASSIGN_OR_RETURN(int64_t stored, LastStoredSeq());
  std::vector<std::vector<std::string>> commands;
  for (const auto& [seq, line] : held_) {
    if (seq > stored) commands.push_back(XaddCommand(seq, line));
  }
  const int64_t first_held = held_.empty() ? next_seq_ : held_.front().first;
  if (first_held > stored + 1) {
    LogWarning("build log lines lost in a Redis failover",
               {{"key", key_},
                {"server", redis_->server()},
                {"lines", first_held - stored - 1}});
  }
  if (!commands.empty()) {
    CIAGENT_RETURN_IF_ERROR(Annotate(
        redis_->Pipeline(commands).status(),
        absl::StrCat("send ", commands.size(), " lines again to ", key_)));
    LogInfo("build log lines sent again after a change of Redis server",
            {{"key", key_},
             {"server", redis_->server()},
             {"lines", static_cast<int64_t>(commands.size())}});
  }
  server_ = redis_->server();
  return absl::OkStatus();
}

absl::Status JobLog::ConfirmOnCurrentMaster() {
  if (server_.empty() || redis_->options().sentinels.empty()) {
    return absl::OkStatus();
  }
  redis_->Disconnect();
  CIAGENT_RETURN_IF_ERROR(Annotate(
      redis_->Connect(), absl::StrCat("confirm the lines of ", key_)));
  if (redis_->server() == server_) return absl::OkStatus();
  return SendMissing();
}

absl::Status JobLog::Append(absl::Span<const LogLine> lines) {
  if (lines.empty()) return absl::OkStatus();
  if (!sequence_known_) {
    CIAGENT_ASSIGN_OR_RETURN(int64_t stored, LastStoredSeq());
    next_seq_ = stored + 1;
    sequence_known_ = true;
  } else {
    CIAGENT_RETURN_IF_ERROR(redis_->Connect());
    if (!server_.empty() && redis_->server() != server_) {
      CIAGENT_RETURN_IF_ERROR(SendMissing());
    }
  }
  std::vector<std::vector<std::string>> commands;
  commands.reserve(lines.size());
  int64_t seq = next_seq_;
  for (const LogLine& line : lines) commands.push_back(XaddCommand(seq++, line));
  CIAGENT_RETURN_IF_ERROR(
      Annotate(redis_->Pipeline(commands).status(),
               absl::StrCat("append ", lines.size(), " lines to ", key_)));
  server_ = redis_->server();
  Hold(next_seq_, lines);
  next_seq_ = seq;
  return absl::OkStatus();
}

}  // namespace ciagent
