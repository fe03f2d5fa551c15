// What ci-queue prints, as pure functions: values in, text out, so that
// every layout is tested without a server (tests/tools/ci_queue_format_test.cc).
//
// Text is for people: aligned tables, relative times ("3m05s ago"), and ANSI
// colour only when Style::color is set (the tool sets it when stdout is a
// terminal and NO_COLOR is unset). JSON is for programs: one document per
// command, or one object per line for a log and for `stats --watch`.
#ifndef CIAGENT_TOOLS_CI_QUEUE_FORMAT_H_
#define CIAGENT_TOOLS_CI_QUEUE_FORMAT_H_

#include <string>
#include <vector>

#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "ciagent/queue/queue_admin.h"

namespace ciagent {

struct Style {
  bool color = false;
};

// A compact age: "45s", "3m05s", "2h04m", "3d04h"; below a second "0s".
std::string FormatAge(absl::Duration age);
// A duration as a step takes it: "850ms", "3.2s", then as FormatAge.
std::string FormatElapsed(absl::Duration elapsed);
// "3m05s ago", "just now" (under a second), "in 4s" (a clock ahead of ours).
std::string FormatAgo(absl::Time time, absl::Time now);

// `text` in the colour of a job or step status (green success/ok, red
// failed/error/timeout, yellow cancelled/skipped, cyan running); unchanged
// without style.color or for another status.
std::string PaintStatus(absl::string_view status, const Style& style);

// Columns padded to their widest cell (counted in UTF-8 code points, so
// colour codes and non-ASCII text keep the alignment), two spaces apart,
// the header in bold on a terminal, no trailing spaces.
class TextTable {
 public:
  explicit TextTable(std::vector<std::string> header);
  // `cells` as plain text; `colored` optionally holds the same cells with
  // colour codes, used for output while `cells` sets the widths.
  void AddRow(std::vector<std::string> cells,
              std::vector<std::string> colored = {});
  std::string Render(const Style& style) const;

 private:
  std::vector<std::string> header_;
  std::vector<std::vector<std::string>> rows_;
  std::vector<std::vector<std::string>> colored_;
};

std::string StatsText(const QueueStats& stats, const QueueOptions& queue,
                      const Style& style);
std::string StatsJson(const QueueStats& stats, const QueueOptions& queue);

std::string JobListText(const std::vector<JobRecord>& jobs, absl::Time now,
                        const Style& style);
std::string JobListJson(const std::vector<JobRecord>& jobs);

// `show`: the status hash as people read it: status and reason, identity,
// times, the steps table, tests, image, cache, cancel and earlier reasons.
std::string JobText(const JobRecord& job, absl::Time now, const Style& style);
// The status hash as one object; the fields the schema defines as JSON
// (steps, artifacts, cache, config, failed_tests, earlier_reasons) embedded
// as JSON values, the others as strings.
std::string JobJson(const JobRecord& job);

// One log line, "<step> <line>", with a "--- attempt N ---" line first when
// the attempt differs from `previous_attempt` (0 before the first line).
std::string LogLineText(const LogEntry& entry, int previous_attempt,
                        const Style& style);
std::string LogLineJson(const LogEntry& entry);

std::string DeadLettersText(const std::vector<DeadLetter>& letters,
                            absl::Time now, const Style& style);
std::string DeadLettersJson(const std::vector<DeadLetter>& letters);

std::string RedriveText(const std::vector<RedriveResult>& results,
                        const Style& style);
std::string RedriveJson(const std::vector<RedriveResult>& results);

// A job id for `enqueue` without --job-id: "<repository name>-<UTC time
// yyyymmdd-hhmmss>-<4 hex digits>", e.g. "hello-ci-20261127-054000-3fa2";
// always a valid job_id.
std::string MakeJobId(absl::string_view repo, absl::Time now, uint16_t nonce);

}  // namespace ciagent

#endif  // CIAGENT_TOOLS_CI_QUEUE_FORMAT_H_
