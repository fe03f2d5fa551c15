// Cooperative shutdown on SIGTERM / SIGINT.
//
// Tools call InstallStopHandlers() once at start. The handlers only set a
// flag and wake sleepers (async-signal-safe); long-running code polls
// StopRequested() and sleeps through SleepUnlessStopped(), which returns at
// once when a stop arrives. That is how `ci-consume` leaves a blocking wait
// within a second of SIGTERM, without claiming a job.
//
// Example:
//   CIAGENT_RETURN_IF_ERROR(InstallStopHandlers());
//   while (!StopRequested()) {
//     if (!SleepUnlessStopped(absl::Seconds(1))) break;
//   }
//
// All functions are thread-safe.
#ifndef CIAGENT_BASE_STOP_SIGNAL_H_
#define CIAGENT_BASE_STOP_SIGNAL_H_

#include "absl/status/status.h"
#include "absl/time/time.h"

namespace ciagent {

// Installs handlers for SIGTERM and SIGINT. Idempotent.
absl::Status InstallStopHandlers();

bool StopRequested();

// The signal number that requested the stop, 0 if none (or RequestStop()).
int StopSignalNumber();

// Sleeps for `duration` unless a stop arrives first. Returns false when the
// sleep ended because of a stop (including one that arrived earlier).
bool SleepUnlessStopped(absl::Duration duration);

// Requests a stop as if a signal had arrived.
void RequestStop();

// Clears the stop flag. Tests only.
void ResetStopForTesting();

}  // namespace ciagent

#endif  // CIAGENT_BASE_STOP_SIGNAL_H_
