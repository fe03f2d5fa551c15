#include "ciagent/agent/log_shipper.h"

#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "ciagent/base/log.h"
#include "ciagent/base/status_macros.h"

namespace ciagent {
namespace {

constexpr absl::string_view kAgentStream = "agent";

LogShipperOptions Sanitized(LogShipperOptions options) {
  options.batch_lines = std::max<size_t>(options.batch_lines, 1);
  options.max_bytes = std::max<int64_t>(options.max_bytes, 0);
  return options;
}

}  // namespace

LogShipper::LogShipper(RedisOptions redis, QueueOptions queue, ClaimedJob claim,
                       LogShipperOptions options)
    : options_(Sanitized(std::move(options))),
      masker_(options_.secrets),
      // One entry stays free for the truncation marker, so that MAXLEN ~
      // (which keeps at least log_max_len entries) never trims the head of
      // this attempt's log.
      max_lines_(std::max<int64_t>(queue.log_max_len - 1, 1)),
      redis_(std::move(redis)),
      log_(&redis_, queue, claim),
      backoff_(options_.retry) {
  if (masker_.ignored() > 0) {
    LogWarning(
        "secret values shorter than 4 bytes are not masked in the "
        "build log",
        {{"count", static_cast<int64_t>(masker_.ignored())},
         {"key", log_.key()}});
  }
  thread_ = std::thread([this] { Run(); });
}

LogShipper::~LogShipper() { Close().IgnoreError(); }

bool LogShipper::HasRoom(int64_t cost) const {
  return buffered_cost_ == 0 ||
         buffered_cost_ + cost <= options_.max_buffered_bytes;
}

bool LogShipper::FitsCap(int64_t line_bytes) const {
  return stats_.bytes + line_bytes <= options_.max_bytes &&
         stored_lines_ < max_lines_;
}

void LogShipper::Enqueue(LogLine line) {
  const int64_t bytes = static_cast<int64_t>(line.line.size());
  stats_.bytes += bytes;
  buffered_cost_ += bytes + kPerLineOverhead;
  ++stored_lines_;
  ++queued_total_;
  queue_.push_back(Entry{std::move(line), absl::Now()});
}

void LogShipper::Truncate(absl::string_view step, int64_t line_bytes) {
  if (!truncating_) {
    truncating_ = true;
    truncated_step_ = std::string(step);
    truncated_limit_ = stored_lines_ >= max_lines_
                           ? absl::StrCat(max_lines_, " lines")
                           : absl::StrCat(options_.max_bytes, " bytes");
  }
  ++stats_.truncated;
  stats_.truncated_bytes += line_bytes;
}

void LogShipper::Drop(absl::string_view step, int64_t line_bytes) {
  if (gap_lines_ == 0) gap_step_ = std::string(step);
  ++gap_lines_;
  gap_bytes_ += line_bytes;
  ++stats_.dropped;
  stats_.dropped_bytes += line_bytes;
}

void LogShipper::EnqueueGapMarker() {
  std::string text = absl::StrCat(
      "log gap: ", gap_lines_, " lines (", gap_bytes_,
      " bytes) were lost here: Redis was unreachable or too slow and the "
      "log buffer was full");
  if (!FitsCap(static_cast<int64_t>(text.size()))) {
    // The cap is reached: the truncation marker reports these lines.
    if (!truncating_) {
      truncating_ = true;
      truncated_step_ = gap_step_;
      truncated_limit_ = stored_lines_ >= max_lines_
                             ? absl::StrCat(max_lines_, " lines")
                             : absl::StrCat(options_.max_bytes, " bytes");
    }
    return;
  }
  Enqueue({gap_step_, std::string(kAgentStream), std::move(text)});
  ++stats_.markers;
  gap_lines_ = 0;
  gap_bytes_ = 0;
}

void LogShipper::EnqueueFinalMarkers() {
  // The one marker past the cap: it says what the cap cost.
  if (truncating_) {
    std::string text =
        absl::StrCat("log truncated: the limit of ", truncated_limit_,
                     " was reached; ", stats_.truncated, " more lines (",
                     stats_.truncated_bytes, " bytes) were not stored");
    if (gap_lines_ > 0) {
      absl::StrAppend(&text, "; before that, ", gap_lines_, " lines (",
                      gap_bytes_,
                      " bytes) were lost while Redis was unreachable");
    }
    Enqueue({truncated_step_, std::string(kAgentStream), std::move(text)});
  } else if (gap_lines_ > 0) {
    Enqueue({gap_step_, std::string(kAgentStream),
             absl::StrCat("log gap: ", gap_lines_, " lines (", gap_bytes_,
                          " bytes) were lost at the end: Redis was "
                          "unreachable or too slow and the log buffer was "
                          "full")});
  } else {
    return;
  }
  ++stats_.markers;
  gap_lines_ = 0;
  gap_bytes_ = 0;
}

void LogShipper::Append(absl::string_view step, absl::string_view stream,
                        absl::string_view line) {
  // Masking and copying run before the lock, so that concurrent producers
  // and the sender taking a batch do not wait for them.
  LogLine entry = {std::string(step), std::string(stream),
                   masker_.empty() ? std::string(line) : masker_.Mask(line)};
  const int64_t bytes = static_cast<int64_t>(entry.line.size());
  const int64_t cost = bytes + kPerLineOverhead;

  absl::MutexLock lock(&mu_);
  ++stats_.lines_appended;
  if (closing_) {
    // The final markers are written already; nothing can follow them.
    ++stats_.dropped;
    stats_.dropped_bytes += bytes;
    return;
  }
  if (truncating_ || !FitsCap(bytes)) return Truncate(step, bytes);
  if (!HasRoom(cost) && !sender_stalled_ &&
      options_.max_append_wait > absl::ZeroDuration()) {
    // Redis takes batches but more slowly than the build prints: slow the
    // build down rather than lose its output. The cap bounds how much
    // output can be held up this way.
    ++producers_waiting_;
    const auto room = [this, cost]() ABSL_SHARED_LOCKS_REQUIRED(mu_) {
      return HasRoom(cost) || sender_stalled_ || closing_;
    };
    if (!mu_.AwaitWithTimeout(absl::Condition(&room),
                              options_.max_append_wait)) {
      // The batch on the wire is stuck (Redis hung): until one succeeds,
      // later lines are dropped without waiting.
      sender_stalled_ = true;
    }
    --producers_waiting_;
    if (closing_) {
      ++stats_.dropped;
      stats_.dropped_bytes += bytes;
      return;
    }
  }
  if (!HasRoom(cost)) return Drop(step, bytes);
  if (gap_lines_ > 0) EnqueueGapMarker();
  // Checked again: another producer or the gap marker may have used the
  // rest of the cap meanwhile.
  if (truncating_ || !FitsCap(bytes)) return Truncate(step, bytes);
  Enqueue(std::move(entry));
}

bool LogShipper::ShouldSendNow(absl::Time now) const {
  if (queue_.empty()) return false;
  const int64_t front_ordinal =
      queued_total_ - static_cast<int64_t>(queue_.size());
  return queue_.size() >= options_.batch_lines || closing_ ||
         producers_waiting_ > 0 || front_ordinal < flush_target_ ||
         now >= queue_.front().queued_at + options_.flush_interval;
}

bool LogShipper::NextBatch(std::vector<LogLine>* batch) {
  while (true) {
    const absl::Time now = absl::Now();
    const bool retrying = !batch->empty();
    if (closing_ && (now >= close_deadline_ || (!retrying && queue_.empty()))) {
      return false;
    }
    if (retrying) {
      if (retry_now_ || now >= retry_at_) {
        retry_now_ = false;
        return true;
      }
      const auto retry_requested = [this]() ABSL_SHARED_LOCKS_REQUIRED(mu_) {
        return retry_now_;
      };
      mu_.AwaitWithDeadline(
          absl::Condition(&retry_requested),
          closing_ ? std::min(retry_at_, close_deadline_) : retry_at_);
      continue;
    }
    if (ShouldSendNow(now)) {
      const size_t n = std::min(queue_.size(), options_.batch_lines);
      batch->reserve(n);
      for (size_t i = 0; i < n; ++i) {
        batch->push_back(std::move(queue_.front().line));
        queue_.pop_front();
      }
      in_flight_ = static_cast<int64_t>(n);
      retry_now_ = false;
      return true;
    }
    absl::Time deadline =
        queue_.empty() ? absl::InfiniteFuture()
                       : queue_.front().queued_at + options_.flush_interval;
    if (closing_) deadline = std::min(deadline, close_deadline_);
    const bool was_empty = queue_.empty();
    const auto wake = [this, was_empty]() ABSL_SHARED_LOCKS_REQUIRED(mu_) {
      // A first line sets the deadline, so the empty -> non-empty change
      // must wake us to compute it.
      // Must not be true while ShouldSendNow() is false: Await would
      // return at once and this loop would spin holding the lock.
      if (closing_ || queue_.empty() != was_empty) return true;
      return !queue_.empty() &&
             (queue_.size() >= options_.batch_lines || producers_waiting_ > 0 ||
              queued_total_ - static_cast<int64_t>(queue_.size()) <
                  flush_target_);
    };
    mu_.AwaitWithDeadline(absl::Condition(&wake), deadline);
  }
}

void LogShipper::Run() {
  std::vector<LogLine> batch;  // kept across a failure, for the retry
  while (true) {
    {
      absl::MutexLock lock(&mu_);
      if (!NextBatch(&batch)) {
        sender_done_ = true;
        return;
      }
    }
    int64_t cost = 0;
    for (const LogLine& line : batch) {
      cost += static_cast<int64_t>(line.line.size()) + kPerLineOverhead;
    }
    // JobLog numbers lines only once a batch succeeds, so the retry of a
    // failed batch carries the same seq values.
    absl::Status status = log_.Append(batch);

    absl::MutexLock lock(&mu_);
    if (status.ok()) {
      if (!last_error_.ok()) {
        LogInfo(
            "build log shipping resumed",
            {{"key", log_.key()}, {"failed_batches", stats_.failed_batches}});
      }
      stats_.lines_sent += static_cast<int64_t>(batch.size());
      buffered_cost_ -= cost;
      in_flight_ = 0;
      batch.clear();
      sender_stalled_ = false;
      last_error_ = absl::OkStatus();
      backoff_.Reset();
      continue;
    }
    ++stats_.failed_batches;
    if (last_error_.ok()) {
      LogWarning(
          "build log shipping failed; retrying",
          {{"key", log_.key()},
           {"error", status},
           {"buffered", static_cast<int64_t>(queue_.size()) + in_flight_}});
    }
    last_error_ = std::move(status);
    sender_stalled_ = true;
    retry_at_ = absl::Now() + backoff_.Next();
  }
}

absl::Status LogShipper::Flush() {
  absl::MutexLock lock(&mu_);
  if (closed_) return close_status_;
  const int64_t target = queued_total_;
  if (stats_.lines_sent >= target) return absl::OkStatus();
  const int64_t failures_before = stats_.failed_batches;
  flush_target_ = std::max(flush_target_, target);
  retry_now_ = true;
  const auto done = [this, target,
                     failures_before]() ABSL_SHARED_LOCKS_REQUIRED(mu_) {
    return stats_.lines_sent >= target ||
           stats_.failed_batches > failures_before || sender_done_;
  };
  mu_.Await(absl::Condition(&done));
  if (stats_.lines_sent >= target) return absl::OkStatus();
  const absl::Status error =
      last_error_.ok() ? absl::UnavailableError("the sender has stopped")
                       : last_error_;
  return Annotate(
      error, absl::StrCat("flush build log ", log_.key(), ": ",
                          target - stats_.lines_sent, " lines not stored yet"));
}

absl::Status LogShipper::Close() {
  absl::MutexLock close_lock(&close_mu_);
  {
    absl::MutexLock lock(&mu_);
    if (closed_) return close_status_;
    EnqueueFinalMarkers();
    closing_ = true;
    retry_now_ = true;
    close_deadline_ = absl::Now() + options_.close_timeout;
  }
  if (thread_.joinable()) thread_.join();

  absl::MutexLock lock(&mu_);
  closed_ = true;
  const int64_t lost = queued_total_ - stats_.lines_sent;
  if (lost == 0) {
    // The sender has stopped: the log is this thread's now.
    close_status_ = log_.ConfirmOnCurrentMaster();
    if (!close_status_.ok()) {
      LogWarning("build log incomplete", {{"error", close_status_}});
    }
    return close_status_;
  }
  // Given up: they move from buffered to dropped.
  stats_.dropped += lost;
  stats_.dropped_bytes += buffered_cost_ - lost * kPerLineOverhead;
  queue_.clear();
  buffered_cost_ = 0;
  in_flight_ = 0;
  const absl::Status error =
      !last_error_.ok() ? last_error_
                        : absl::DeadlineExceededError(absl::StrCat(
                              "Redis did not take the log within ",
                              absl::FormatDuration(options_.close_timeout)));
  close_status_ =
      Annotate(error, absl::StrCat("close build log ", log_.key(),
                                   ": gave up on ", lost, " lines"));
  LogWarning("build log incomplete", {{"error", close_status_}});
  return close_status_;
}

LogShipperStats LogShipper::stats() const {
  absl::MutexLock lock(&mu_);
  LogShipperStats stats = stats_;
  stats.buffered = static_cast<int64_t>(queue_.size()) + in_flight_;
  return stats;
}

}  // namespace ciagent
