// Clock: the one seam through which libciagent reads the time and sleeps.
//
// Components take a `Clock*` (default: RealClock()) so tests can substitute
// a manual clock. Implementations must be thread-safe.
//
// Example:
//   Clock* clock = RealClock();
//   absl::Time deadline = clock->Now() + absl::Seconds(30);
//   std::string stamp = FormatTimestamp(clock->Now());  // "2026-11-27T05:40:00.123Z"
#ifndef CIAGENT_BASE_CLOCK_H_
#define CIAGENT_BASE_CLOCK_H_

#include <optional>
#include <string>

#include "absl/strings/string_view.h"

#include "absl/time/time.h"

namespace ciagent {

class Clock {
 public:
  virtual ~Clock() = default;
  virtual absl::Time Now() const = 0;
  virtual void SleepFor(absl::Duration duration) = 0;
};

// The process-wide wall clock. Never null; never deleted.
Clock* RealClock();

// RFC 3339 UTC with millisecond precision: "2026-11-27T05:40:00.123Z".
// This is the timestamp format of logs and of the Redis status hash.
std::string FormatTimestamp(absl::Time time);

// Reads a timestamp FormatTimestamp wrote (any RFC 3339 time is accepted);
// nullopt for anything else, such as an empty status field.
std::optional<absl::Time> ParseTimestamp(absl::string_view text);

}  // namespace ciagent

#endif  // CIAGENT_BASE_CLOCK_H_
