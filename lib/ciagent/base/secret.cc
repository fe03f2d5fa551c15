#include "ciagent/base/secret.h"

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>
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
  const auto unreadable = [&](absl::string_view why) {
    return absl::FailedPreconditionError(
        absl::StrCat("read secret ", file_var, "=", path, ": ", why));
  };
  // A directory opens fine as a stream and reads as empty: the common
  // mistake of naming the Secret volume instead of the file in it.
  std::error_code ec;
  if (!std::filesystem::is_regular_file(path, ec)) {
    return unreadable(ec ? ec.message() : "not a regular file");
  }
  std::ifstream in(path, std::ios::binary);
  std::ostringstream contents;
  if (!in || !(contents << in.rdbuf()) || in.bad()) {
    return unreadable(std::strerror(errno));
  }
  std::string secret = contents.str();
  while (!secret.empty() && (secret.back() == '\n' || secret.back() == '\r')) {
    secret.pop_back();
  }
  RegisterSecret(secret);
  return std::optional<std::string>(std::move(secret));
}

}  // namespace ciagent
