#include "ciagent/base/backoff.h"

#include <algorithm>

namespace ciagent {

absl::Duration Backoff::Next() {
  const absl::Duration ceiling = std::min(ceiling_, options_.max);
  const double fraction = absl::Uniform(rng_, 0.0, 1.0);
  ceiling_ = std::min(ceiling * options_.multiplier, options_.max);
  return ceiling * fraction;
}

}  // namespace ciagent
