// Exponential backoff with full jitter, for retrying transient failures
// (Redis reconnects, git fetches, registry uploads).
//
// The n-th delay is uniform in [0, min(max, initial * multiplier^n)], the
// "full jitter" schedule, so a fleet of agents that lost Redis together does
// not reconnect in lockstep.
//
// Example:
//   Backoff backoff(BackoffOptions{});
//   while (!(status = Connect()).ok() && IsTransient(status)) {
//     if (!SleepUnlessStopped(backoff.Next())) break;
//   }
//
// Not thread-safe; one per retry loop.
#ifndef CIAGENT_BASE_BACKOFF_H_
#define CIAGENT_BASE_BACKOFF_H_

#include "absl/random/random.h"
#include "absl/time/time.h"

namespace ciagent {

struct BackoffOptions {
  absl::Duration initial = absl::Milliseconds(100);
  absl::Duration max = absl::Seconds(5);
  double multiplier = 2.0;
};

class Backoff {
 public:
  explicit Backoff(BackoffOptions options = {}) : options_(options) {}

  // The next delay; grows the ceiling for the one after.
  absl::Duration Next();
  // The ceiling the next delay is drawn under.
  absl::Duration ceiling() const { return ceiling_; }
  void Reset() { ceiling_ = options_.initial; }

 private:
  BackoffOptions options_;
  absl::Duration ceiling_ = options_.initial;
  absl::BitGen rng_;
};

}  // namespace ciagent

#endif  // CIAGENT_BASE_BACKOFF_H_
