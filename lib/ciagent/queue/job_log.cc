#include "ciagent/queue/job_log.h"

#include <vector>

#include "absl/strings/str_cat.h"
#include "ciagent/base/status_macros.h"

namespace ciagent {

JobLog::JobLog(RedisClient* redis, const QueueOptions& options,
               const ClaimedJob& claim)
    : redis_(redis),
      key_(options.LogKey(claim.job.job_id)),
      attempt_(absl::StrCat(claim.attempt)),
      max_len_(absl::StrCat(options.log_max_len)) {}

absl::Status JobLog::Append(absl::Span<const LogLine> lines) {
  if (lines.empty()) return absl::OkStatus();
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
