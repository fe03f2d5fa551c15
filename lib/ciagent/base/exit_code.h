// Exit codes shared by the tools, so the container entrypoint and operators
// can act on them without parsing logs.
//
//   0  success
//   1  failure that may pass on retry (infrastructure); any claimed job was
//      left for redelivery
//   2  usage or configuration error: fix the flags, secrets or Redis setup
//   3  nothing to do (ci-consume: no job within --wait, or stopped while
//      waiting)
//   4  the claimed job ended before its build (finalized during intake)
#ifndef CIAGENT_BASE_EXIT_CODE_H_
#define CIAGENT_BASE_EXIT_CODE_H_

#include "absl/status/status.h"

namespace ciagent {

inline constexpr int kExitOk = 0;
inline constexpr int kExitFailure = 1;
inline constexpr int kExitUsage = 2;
inline constexpr int kExitNothingToDo = 3;
inline constexpr int kExitJobEnded = 4;

// kExitOk for OK; kExitUsage for codes that mean "fix the configuration"
// (InvalidArgument, FailedPrecondition, Unauthenticated, PermissionDenied,
// NotFound); kExitFailure otherwise.
int ExitCodeFor(const absl::Status& status);

}  // namespace ciagent

#endif  // CIAGENT_BASE_EXIT_CODE_H_
