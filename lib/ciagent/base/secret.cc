#include "ciagent/base/secret.h"

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <sstream>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "ciagent/base/log.h"

namespace ciagent {

absl::StatusOr<std::optional<std::string>> ReadSecretFromEnv(
    absl::string_view name) {
  const std::string var(name);
  if (const char* value = std::getenv(var.c_str());
      value != nullptr && *value != '\0') {
    RegisterSecret(value);
    return std::optional<std::string>(value);
  }
  const std::string file_var = absl::StrCat(name, "_FILE");
  const char* path = std::getenv(file_var.c_str());
  if (path == nullptr || *path == '\0') return std::optional<std::string>();
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    return absl::FailedPreconditionError(absl::StrCat(
        "read secret ", file_var, "=", path, ": ", std::strerror(errno)));
  }
  std::ostringstream contents;
  contents << in.rdbuf();
  std::string secret = contents.str();
  while (!secret.empty() && (secret.back() == '\n' || secret.back() == '\r')) {
    secret.pop_back();
  }
  RegisterSecret(secret);
  return std::optional<std::string>(std::move(secret));
}

}  // namespace ciagent
