#include "ciagent/queue/lease_renewer.h"

#include <algorithm>
#include <utility>

#include "ciagent/base/backoff.h"
#include "ciagent/base/log.h"

namespace ciagent {

LeaseRenewer::LeaseRenewer(RedisOptions redis, QueueOptions options,
                           ClaimedJob claim)
    : queue_(std::move(redis), std::move(options)),
      claim_(std::move(claim)),
      thread_([this] { Run(); }) {}

LeaseRenewer::~LeaseRenewer() { Stop(); }

void LeaseRenewer::Stop() {
  {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
  }
  if (thread_.joinable()) thread_.join();
}

void LeaseRenewer::Run() {
  const absl::Duration interval = queue_.options().renew_interval;
  Backoff backoff(BackoffOptions{.initial = absl::Milliseconds(100),
                                 .max = std::max(interval / 4,
                                                 absl::Milliseconds(100))});
  absl::Duration wait = interval;
  while (true) {
    {
      absl::MutexLock lock(&mu_);
      const auto stopping = [this]() ABSL_SHARED_LOCKS_REQUIRED(mu_) {
        return stopping_;
      };
      if (mu_.AwaitWithTimeout(absl::Condition(&stopping), wait)) return;
    }
    absl::StatusOr<RenewResult> result = queue_.Renew(claim_);
    absl::MutexLock lock(&mu_);
    if (result.ok()) {
      ++renewals_;
      backoff.Reset();
      wait = interval;
      if (result->cancel_requested && !cancel_requested_) {
        cancel_requested_ = true;
        cancel_reason_ = result->cancel_reason;
        LogInfo("cancel requested", {{"reason", cancel_reason_}});
      }
      continue;
    }
    if (result.status().code() == absl::StatusCode::kAborted) {
      lease_lost_ = true;
      LogError("lease lost; abandoning the job", {{"error", result.status()}});
      return;
    }
    wait = backoff.Next();
    LogWarning("lease renewal failed, retrying",
               {{"error", result.status()}, {"retry_in_ms", wait}});
  }
}

bool LeaseRenewer::lease_lost() const {
  absl::MutexLock lock(&mu_);
  return lease_lost_;
}

bool LeaseRenewer::cancel_requested() const {
  absl::MutexLock lock(&mu_);
  return cancel_requested_;
}

std::string LeaseRenewer::cancel_reason() const {
  absl::MutexLock lock(&mu_);
  return cancel_reason_;
}

int LeaseRenewer::renewals() const {
  absl::MutexLock lock(&mu_);
  return renewals_;
}

bool LeaseRenewer::WaitForLossOrCancel(absl::Duration timeout) const {
  absl::MutexLock lock(&mu_);
  const auto done = [this]() ABSL_SHARED_LOCKS_REQUIRED(mu_) {
    return lease_lost_ || cancel_requested_;
  };
  return mu_.AwaitWithTimeout(absl::Condition(&done), timeout);
}

}  // namespace ciagent
