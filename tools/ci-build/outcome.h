// How ci-build reports a finished pipeline: the --result and
// --metrics-file files, the Pushgateway, and the exit code.
#ifndef CIAGENT_TOOLS_CI_BUILD_OUTCOME_H_
#define CIAGENT_TOOLS_CI_BUILD_OUTCOME_H_

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "ciagent/pipeline/pipeline_result.h"
#include "ciagent/queue/claim_file.h"

namespace ciagent {

// 0 success, 1 failed or error, 124 timeout, 130 cancelled, 143 when the
// agent was told to stop mid-run.
int ExitCodeForResult(const PipelineResult& result);

// Writes --result (ResultJson) and --metrics-file (PrometheusText) when
// asked, and pushes the metrics to --metrics-pushgateway (a failed push is
// only logged).
absl::Status WriteReports(const PipelineResult& result,
                          absl::string_view job_id);

// Logs `status` as the reason ci-build fails and returns `code`.
int Fail(int code, const absl::Status& status);

// A configuration error once the job is ours (bad flags, unreadable
// secrets): gives the job back at once, as an attempt spent, rather than
// leaving it `running` until its lease lapses; returns kExitUsage.
int FailClaimed(const ClaimFile& claim, const absl::Status& status);

}  // namespace ciagent

#endif  // CIAGENT_TOOLS_CI_BUILD_OUTCOME_H_
