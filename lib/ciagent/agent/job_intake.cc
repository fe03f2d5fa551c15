#include "ciagent/agent/job_intake.h"

#include <unistd.h>

#include <filesystem>
#include <thread>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/synchronization/notification.h"
#include "ciagent/base/log.h"
#include "ciagent/base/status_macros.h"
#include "ciagent/base/stop_signal.h"
#include "ciagent/pipeline/pipeline_result.h"
#include "ciagent/queue/claim_file.h"
#include "ciagent/queue/job_log.h"
#include "ciagent/queue/lease_renewer.h"

namespace ciagent {
namespace {

std::string DescribeProgress(const FetchProgress& p) {
  return absl::StrFormat("received %d/%d objects, %.1f MiB at %.1f MiB/s",
                         p.received_objects, p.total_objects,
                         p.received_bytes / 1048576.0,
                         p.bytes_per_second / 1048576.0);
}

// Fetches the claimed job's source while its lease is renewed; streams
// progress into the job's log.
absl::StatusOr<FetchResult> FetchClaimed(const IntakeOptions& options,
                                         JobQueue& queue,
                                         const ClaimedJob& claim,
                                         LeaseRenewer& renewer) {
  JobLog log(&queue.redis(), queue.options(), claim);
  const auto say = [&](const std::string& line) {
    // The log stream is best effort here: a Redis blip must not fail a fetch.
    absl::Status status = log.Append({{"fetch", "agent", line}});
    if (!status.ok()) LogWarning("job log append failed", {{"error", status}});
  };
  FetchOptions fetch = options.fetch;
  fetch.should_abort = [&renewer] {
    return renewer.lease_lost() || renewer.cancel_requested();
  };
  fetch.on_progress = [&](const FetchProgress& progress) {
    LogInfo("fetch progress",
            {{"received_objects", progress.received_objects},
             {"total_objects", progress.total_objects},
             {"received_bytes", progress.received_bytes},
             {"bytes_per_second", progress.bytes_per_second}});
    say(DescribeProgress(progress));
  };
  say(absl::StrCat("fetching ", claim.job.repo, " branch ", claim.job.branch,
                   " commit ", claim.job.commit));
  const std::string src =
      (std::filesystem::path(options.workdir) / "src").string();
  absl::StatusOr<FetchResult> result = FetchJobSource(claim.job, src, fetch);
  if (result.ok()) {
    say(absl::StrCat("checked out ", result->commit, " in ",
                     FormatMillis(result->duration),
                     result->mirror_was_warm ? " (warm mirror)" : " (cold)"));
  } else {
    say(absl::StrCat("fetch failed: ", result.status().message()));
  }
  return result;
}

// The fetch's connections time out when silent (FetchOptions::io_timeout),
// but a server that trickles bytes would still hold the fetch, and the
// renewed lease would hold the job, indefinitely. Past fetch_timeout the watchdog stops renewing, requeues the job
// on its own connection and calls on_fetch_timeout (the tool exits there:
// a blocked transfer cannot be interrupted from another thread).
class FetchWatchdog {
 public:
  FetchWatchdog(const IntakeOptions& options, const ClaimedJob& claim,
                LeaseRenewer& renewer)
      : thread_([this, &options, &claim, &renewer] {
          if (done_.WaitForNotificationWithTimeout(options.fetch_timeout)) {
            return;
          }
          renewer.Stop();
          const std::string reason =
              absl::StrCat("fetch timed out after ",
                           absl::FormatDuration(options.fetch_timeout));
          JobQueue queue(options.redis, options.queue);
          const absl::Status requeued = queue.Requeue(claim, reason);
          LogError("fetch timed out; job requeued",
                   {{"timeout", options.fetch_timeout}, {"requeue", requeued}});
          if (options.on_fetch_timeout) options.on_fetch_timeout();
        }) {}
  ~FetchWatchdog() { Disarm(); }

  void Disarm() {
    if (!done_.HasBeenNotified()) done_.Notify();
    if (thread_.joinable()) thread_.join();
  }

 private:
  absl::Notification done_;
  std::thread thread_;
};

}  // namespace

absl::Status ValidateIntakeOptions(const IntakeOptions& options) {
  const QueueOptions& queue = options.queue;
  if (queue.consumer.empty() || options.wait < absl::ZeroDuration() ||
      queue.lease <= absl::ZeroDuration() || queue.max_deliveries <= 0 ||
      queue.max_entry_bytes <= 0) {
    return absl::InvalidArgumentError(
        "intake: the consumer name must be set, the wait >= 0, the lease, "
        "max deliveries and max entry bytes > 0");
  }
  if (!options.fetch.ca_file.empty() &&
      access(options.fetch.ca_file.c_str(), R_OK) != 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "intake: CA file ", options.fetch.ca_file, " is not readable"));
  }
  return absl::OkStatus();
}

absl::StatusOr<IntakeResult> TakeJob(const IntakeOptions& options) {
  std::error_code ec;
  std::filesystem::create_directories(options.workdir, ec);
  if (ec) {
    return absl::InvalidArgumentError(
        absl::StrCat("workdir ", options.workdir, ": ", ec.message()));
  }
  JobQueue queue(options.redis, options.queue);
  absl::StatusOr<ClaimedJob> claim = queue.Claim(options.wait);
  IntakeResult result;
  if (claim.status().code() == absl::StatusCode::kDeadlineExceeded ||
      claim.status().code() == absl::StatusCode::kCancelled) {
    result.reason = std::string(claim.status().message());
    return result;
  }
  CIAGENT_RETURN_IF_ERROR(claim.status());
  result.job_id = claim->job.job_id;
  SetLogJobId(claim->job.job_id);
  LogInfo("claimed job", {{"stream_id", claim->stream_id},
                          {"attempt", claim->attempt},
                          {"repo", claim->job.repo},
                          {"commit", claim->job.commit}});

  absl::Status failure;
  if (options.fetch_source) {
    LeaseRenewer renewer(options.redis, options.queue, *claim);
    FetchWatchdog watchdog(options, *claim, renewer);
    absl::StatusOr<FetchResult> fetched =
        FetchClaimed(options, queue, *claim, renewer);
    watchdog.Disarm();
    renewer.Stop();
    if (renewer.lease_lost()) {
      result.outcome = IntakeOutcome::kLeaseLost;
      result.reason = "lease lost during fetch";
      return result;
    }
    if (renewer.cancel_requested()) {
      result.outcome = IntakeOutcome::kJobEnded;
      result.reason = absl::StrCat("cancelled: ", renewer.cancel_reason());
      CIAGENT_RETURN_IF_ERROR(
          queue.Finalize(*claim, {JobStatus::kCancelled, result.reason, {}}));
      return result;
    }
    failure = fetched.status();
  }
  if (failure.ok()) {
    result.job_file =
        (std::filesystem::path(options.workdir) / "job.json").string();
    failure =
        WriteClaimFile(result.job_file, *claim, options.queue, options.redis);
  }
  if (failure.ok()) {
    result.outcome = IntakeOutcome::kReady;
    return result;
  }
  result.reason = std::string(failure.message());
  if (IsTransient(failure) || failure.code() == absl::StatusCode::kCancelled ||
      StopRequested()) {
    LogWarning("requeueing job", {{"error", failure}});
    result.outcome = IntakeOutcome::kRequeued;
    CIAGENT_RETURN_IF_ERROR(queue.Requeue(*claim, result.reason));
    return result;
  }
  LogError("job cannot run", {{"error", failure}});
  result.outcome = IntakeOutcome::kJobEnded;
  CIAGENT_RETURN_IF_ERROR(queue.Finalize(
      *claim, {JobStatus::kError, absl::StrCat("fetch: ", result.reason), {}}));
  return result;
}

}  // namespace ciagent
