#include "ciagent/agent/queued_build.h"

#include <iterator>
#include <utility>

#include "absl/algorithm/container.h"
#include "absl/strings/str_cat.h"
#include "ciagent/base/backoff.h"
#include "ciagent/base/log.h"
#include "ciagent/base/status_macros.h"
#include "ciagent/base/stop_signal.h"
#include "ciagent/pipeline/pipeline_config.h"
#include "ciagent/pipeline/report.h"
#include "ciagent/pipeline/test_retry.h"
#include "ciagent/queue/job_queue.h"
#include "ciagent/queue/lease_renewer.h"
#include "ciagent/queue/test_history.h"

namespace ciagent {
namespace {

// Retries `write` while it fails with a transient error, up to `budget`.
absl::Status RetryTransient(absl::Duration budget,
                            const std::function<absl::Status()>& write) {
  Backoff backoff(BackoffOptions{});
  absl::Time deadline = absl::Now() + budget;
  while (true) {
    absl::Status status = write();
    if (status.ok() || !IsTransient(status) || absl::Now() >= deadline) {
      return status;
    }
    absl::SleepFor(std::min(backoff.Next(), deadline - absl::Now()));
  }
}

// Records the run's test outcomes on the job's branch and applies what the
// history says (ApplyTestHistory). Retried while Redis is briefly away (a
// failover), safely: the run is recorded once (its id is the job's and
// attempt's). Without Redis the result stays as the pipeline made it:
// history is worth less than the job's own result.
void RecordTestHistory(const ClaimedJob& claim, TestHistoryStore* store,
                       PipelineResult* result) {
  const Job& job = claim.job;
  std::vector<TestRun> runs;
  for (const TestCase& test : result->tests.cases) {
    switch (test.outcome) {
      case TestCase::Outcome::kPassed:
        runs.push_back({test.name, TestRun::Outcome::kPassed});
        break;
      case TestCase::Outcome::kFailed:
        runs.push_back({test.name, TestRun::Outcome::kFailed});
        break;
      case TestCase::Outcome::kFlaky:
        runs.push_back({test.name, TestRun::Outcome::kFlaky});
        break;
      case TestCase::Outcome::kIgnored:
        break;
    }
  }
  if (runs.empty()) return;
  absl::StatusOr<std::vector<TestHistoryRecord>> records;
  const std::string run_id = absl::StrCat(job.job_id, "#", claim.attempt);
  RetryTransient(absl::Seconds(20), [&] {
    records = store->Record(job.repo, job.branch, job.commit, runs, run_id);
    return records.status();
  }).IgnoreError();
  if (!records.ok()) {
    LogWarning("test history not recorded", {{"error", records.status()}});
    return;
  }
  std::vector<TestHistory> history;
  std::vector<std::string> flaky_on_commit;
  for (size_t i = 0; i < runs.size(); ++i) {
    const TestHistoryRecord& record = (*records)[i];
    if (runs[i].outcome == TestRun::Outcome::kPassed) continue;
    history.push_back({.name = record.name,
                       .runs = record.runs,
                       .failed = record.failed,
                       .failing_since = record.failing_since});
    if (runs[i].outcome == TestRun::Outcome::kFailed &&
        record.passed_and_failed_on_commit) {
      flaky_on_commit.push_back(record.name);
      LogInfo("test passed and failed on one commit: flaky",
              {{"test", record.name}, {"commit", job.commit}});
    }
  }
  ApplyTestHistory(job.branch, std::move(history), flaky_on_commit, result);
}

std::string DirOf(const std::string& path) {
  size_t slash = path.find_last_of('/');
  if (slash == std::string::npos) return ".";
  return slash == 0 ? "/" : path.substr(0, slash);
}

// Sends the pipeline's output to the job's log stream, with one agent line
// per step transition so a reader sees where each step starts and ends.
class LogStreamObserver : public PipelineObserver {
 public:
  explicit LogStreamObserver(LogShipper* shipper) : shipper_(shipper) {}

  void StepStarted(absl::string_view step) override {
    shipper_->Append(step, "agent", absl::StrCat("step ", step, " started"));
  }
  void StepOutput(absl::string_view step, absl::string_view stream,
                  absl::string_view line) override {
    shipper_->Append(step, stream, line);
  }
  void StepFinished(const StepRecord& record) override {
    std::string line = absl::StrCat("step ", record.name, " ",
                                    StepStatusName(record.status));
    if (record.status != StepStatus::kSkipped) {
      absl::StrAppend(&line, " in ", FormatMillis(record.duration));
    }
    if (!record.reason.empty()) absl::StrAppend(&line, ": ", record.reason);
    shipper_->Append(record.name, "agent", line);
  }

 private:
  LogShipper* shipper_;
};

}  // namespace

absl::StatusOr<QueuedBuildResult> RunQueuedBuild(
    const ClaimFile& claim_file, const QueuedBuildOptions& options) {
  const ClaimedJob& claim = claim_file.claim;
  QueueOptions queue = claim_file.queue;
  queue.renew_interval = options.poll_interval;
  SetLogJobId(claim.job.job_id);

  PipelineOptions pipeline = options.pipeline;
  const std::string job_dir = DirOf(claim_file.path);
  if (pipeline.work_dir.empty()) pipeline.work_dir = job_dir;
  if (pipeline.source_dir.empty()) pipeline.source_dir = job_dir + "/src";

  LeaseRenewer renewer(claim_file.redis, queue, claim);
  LogShipper shipper(claim_file.redis, queue, claim, options.logs);
  LogStreamObserver observer(&shipper);
  pipeline.cancel_requested = [&renewer] {
    return renewer.cancel_requested() || renewer.lease_lost();
  };
  pipeline.stop_requested = [] { return StopRequested(); };

  LogInfo("build started", {{"attempt", claim.attempt},
                            {"source", pipeline.source_dir}});
  QueuedBuildResult done;
  // The operators' quarantine of the repository joins the repository's
  // own; without Redis the run goes on with the repository's list.
  TestHistoryStore test_history(claim_file.redis, {});
  if (absl::StatusOr<std::vector<std::string>> quarantined =
          test_history.ReadQuarantine(claim.job.repo);
      quarantined.ok()) {
    absl::c_copy(*quarantined, std::back_inserter(pipeline.quarantine));
  } else {
    LogWarning("quarantine not read", {{"error", quarantined.status()}});
  }
  // The repository's configuration under the job's; one it must fix ends
  // the job `error` (kInvalidArgument is not transient: no requeue).
  absl::StatusOr<PipelineResult> result;
  if (absl::Status configured = ConfigureForJob(claim.job, &pipeline);
      configured.ok()) {
    result = RunPipeline(pipeline, &observer);
  } else {
    result = configured;
  }
  if (result.ok()) {
    done.pipeline = *std::move(result);
  } else {
    shipper.Append("", "agent",
                   absl::StrCat("build could not run: ",
                                result.status().message()));
  }
  // Logs first: when a reader sees the final status, the log is complete.
  absl::Status logs = shipper.Close();
  if (!logs.ok()) LogWarning("job log incomplete", {{"error", logs}});
  renewer.Stop();

  JobQueue writer(claim_file.redis, queue);
  if (renewer.lease_lost()) {
    done.disposition = BuildDisposition::kLeaseLost;
    done.reason = "lease lost: another agent owns the job";
    LogWarning("job taken over; nothing written");
    return done;
  }
  const bool infrastructure =
      !result.ok() && IsTransient(result.status());
  if (done.pipeline.interrupted || infrastructure) {
    done.disposition = BuildDisposition::kRequeued;
    done.reason = infrastructure
                      ? absl::StrCat("agent failure: ",
                                     result.status().message())
                      : "agent shutting down";
    // What the result file and metrics say: not finished, back in the queue.
    done.pipeline.status = JobStatus::kQueued;
    done.pipeline.reason = done.reason;
    CIAGENT_RETURN_IF_ERROR(
        RetryTransient(options.finalize_retry,
                       [&] { return writer.Requeue(claim, done.reason); }));
    LogInfo("job requeued", {{"reason", done.reason}});
    return done;
  }
  JobOutcome outcome;
  if (result.ok()) {
    RecordTestHistory(claim, &test_history, &done.pipeline);
    outcome.status = done.pipeline.status;
    outcome.reason = done.pipeline.reason;
    outcome.fields = StatusFields(done.pipeline);
    if (renewer.cancel_requested() &&
        outcome.status == JobStatus::kCancelled) {
      outcome.reason = absl::StrCat("cancelled: ", renewer.cancel_reason());
    }
  } else {
    outcome.status = JobStatus::kError;
    outcome.reason = std::string(result.status().message());
    done.pipeline.status = JobStatus::kError;
    done.pipeline.reason = outcome.reason;
  }
  done.reason = outcome.reason;
  absl::Status finalized = RetryTransient(
      options.finalize_retry, [&] { return writer.Finalize(claim, outcome); });
  if (absl::IsAborted(finalized)) {
    done.disposition = BuildDisposition::kLeaseLost;
    done.reason = std::string(finalized.message());
    return done;
  }
  CIAGENT_RETURN_IF_ERROR(finalized);
  LogInfo("job finalized", {{"status", JobStatusName(outcome.status)},
                            {"reason", outcome.reason}});
  return done;
}

}  // namespace ciagent
