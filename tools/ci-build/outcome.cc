#include "outcome.h"

#include <string>

#include "absl/flags/flag.h"
#include "absl/strings/str_cat.h"
#include "ciagent/base/atomic_file.h"
#include "ciagent/base/exit_code.h"
#include "ciagent/base/log.h"
#include "ciagent/base/status_macros.h"
#include "ciagent/pipeline/report.h"
#include "ciagent/metrics/pushgateway.h"
#include "ciagent/queue/job_queue.h"
#include "tool_flags.h"

ABSL_FLAG(std::string, result, "", "write the JSON summary to this file");
ABSL_FLAG(std::string, metrics_file, "",
          "write Prometheus text-format metrics to this file");
ABSL_FLAG(std::string, metrics_pushgateway, "",
          "push the metrics to this Prometheus Pushgateway URL, grouped by "
          "instance=$POD_NAME; default: env CI_METRICS_PUSHGATEWAY");

namespace ciagent {

int ExitCodeForResult(const PipelineResult& result) {
  if (result.interrupted) return 143;
  switch (result.status) {
    case JobStatus::kSuccess:
      return kExitOk;
    case JobStatus::kTimeout:
      return 124;
    case JobStatus::kCancelled:
      return 130;
    default:
      return kExitFailure;
  }
}

namespace {

// The job's metrics, and this process's Redis writes that fewer replicas
// than --redis-min-replicas acknowledged (RedisClient::ConfirmReplicated).
std::string MetricsText(const PipelineResult& result, absl::string_view job_id) {
  return absl::StrCat(
      PrometheusText(result, job_id),
      "# HELP ciagent_redis_unconfirmed_writes Writes of this job (finalize, "
      "requeue, dead letter) not acknowledged by --redis-min-replicas "
      "replicas in time.\n"
      "# TYPE ciagent_redis_unconfirmed_writes gauge\n"
      "ciagent_redis_unconfirmed_writes ",
      UnconfirmedRedisWrites(), "\n");
}

}  // namespace

absl::Status WriteReports(const PipelineResult& result,
                          absl::string_view job_id) {
  const std::string result_file = absl::GetFlag(FLAGS_result);
  if (!result_file.empty()) {
    CIAGENT_RETURN_IF_ERROR(
        WriteFileAtomically(result_file, ResultJson(result)));
  }
  const std::string metrics_file = absl::GetFlag(FLAGS_metrics_file);
  if (!metrics_file.empty()) {
    CIAGENT_RETURN_IF_ERROR(
        WriteFileAtomically(metrics_file, MetricsText(result, job_id)));
  }
  const std::string gateway = FlagOrEnv(
      absl::GetFlag(FLAGS_metrics_pushgateway), "CI_METRICS_PUSHGATEWAY", "");
  if (!gateway.empty()) {
    // Metrics are worth a warning, not the job's outcome.
    const absl::Status pushed =
        PushMetrics({.url = gateway,
                     .grouping = {{"instance", EnvOr("POD_NAME", "ci-build")}},
                     .ca_file = EnvOr("CI_CA_FILE", "")},
                    MetricsText(result, job_id));
    if (!pushed.ok()) LogWarning("metrics not pushed", {{"error", pushed}});
  }
  return absl::OkStatus();
}

int Fail(int code, const absl::Status& status) {
  LogError("ci-build failed", {{"error", status}, {"exit_code", code}});
  return code;
}

int FailClaimed(const ClaimFile& claim, const absl::Status& status) {
  JobQueue queue(claim.redis, claim.queue);
  const absl::Status requeued = queue.Requeue(
      claim.claim, absl::StrCat("agent configuration error: ", status.message()));
  if (!requeued.ok()) LogWarning("job not requeued", {{"error", requeued}});
  return Fail(kExitUsage, status);
}

}  // namespace ciagent
