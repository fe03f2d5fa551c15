// Secrets from the environment: NAME, or the contents of the file named by
// NAME_FILE (Kubernetes Secret volumes). Secrets are never taken from argv.
//
// Every secret read here is registered with the logger (RegisterSecret) so a
// slip that would log it prints [MASKED] instead.
//
// Example:
//   CIAGENT_ASSIGN_OR_RETURN(std::optional<std::string> password,
//                            ReadSecretFromEnv("REDIS_PASSWORD"));
#ifndef CIAGENT_BASE_SECRET_H_
#define CIAGENT_BASE_SECRET_H_

#include <optional>
#include <string>
#include "absl/strings/string_view.h"

#include "absl/status/statusor.h"

namespace ciagent {

// NAME wins over NAME_FILE. A trailing newline in the file is removed.
// nullopt when neither is set (or NAME is empty). kFailedPrecondition when
// NAME_FILE names a file that cannot be read (the message names the
// variable and the path, never the contents).
absl::StatusOr<std::optional<std::string>> ReadSecretFromEnv(
    absl::string_view name);

}  // namespace ciagent

#endif  // CIAGENT_BASE_SECRET_H_
