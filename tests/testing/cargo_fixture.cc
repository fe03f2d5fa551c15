#include "testing/cargo_fixture.h"

#include <dirent.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <system_error>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "ciagent/base/process_runner.h"

namespace ciagent::testing {
namespace fs = std::filesystem;

absl::StatusOr<std::string> PathWithCargo() {
  const char* path = std::getenv("PATH");
  std::string result = path == nullptr ? "/usr/bin:/bin" : path;
  if (!FindExecutable("cargo", result).empty()) return result;
  const char* home = std::getenv("HOME");
  if (home != nullptr) {
    std::string rustup_bin = absl::StrCat(home, "/.cargo/bin");
    if (!FindExecutable("cargo", rustup_bin).empty()) {
      return absl::StrCat(rustup_bin, ":", result);
    }
  }
  return absl::NotFoundError("cargo is not in PATH nor in $HOME/.cargo/bin");
}

absl::StatusOr<std::string> FixturesDir() {
  return PathFromEnv("CIAGENT_FIXTURES");
}

absl::StatusOr<std::map<std::string, std::string>> FixtureFiles(
    const std::string& name) {
  absl::StatusOr<std::string> root = FixturesDir();
  if (!root.ok()) return root.status();
  const fs::path dir = fs::path(*root) / name;
  std::map<std::string, std::string> files;
  std::error_code error;
  for (fs::recursive_directory_iterator it(dir, error), end;
       !error && it != end; it.increment(error)) {
    const std::string relative = fs::relative(it->path(), dir).string();
    if (!it->is_regular_file() || absl::StartsWith(relative, "target")) {
      continue;
    }
    std::ifstream in(it->path(), std::ios::binary);
    std::ostringstream bytes;
    bytes << in.rdbuf();
    files[relative] = bytes.str();
  }
  if (error) {
    return absl::InternalError(absl::StrCat("read fixture ", dir.string(),
                                            ": ", error.message()));
  }
  return files;
}

absl::StatusOr<std::string> CopyFixture(const std::string& name,
                                        const std::string& dest_dir) {
  absl::StatusOr<std::string> fixtures = FixturesDir();
  if (!fixtures.ok()) return fixtures.status();
  const fs::path from = fs::path(*fixtures) / name;
  const fs::path to = fs::path(dest_dir) / name;
  std::error_code error;
  fs::copy(from, to, fs::copy_options::recursive, error);
  if (error) {
    return absl::InternalError(
        absl::StrCat("copy fixture ", from.string(), ": ", error.message()));
  }
  fs::remove_all(to / "target", error);
  return to.string();
}

namespace {

// Counts live processes for which `matches(cmdline, environ)` holds.
template <typename Predicate>
int CountProcesses(Predicate matches) {
  const auto read = [](const fs::path& file) {
    std::ifstream in(file, std::ios::binary);
    std::stringstream contents;
    contents << in.rdbuf();
    return contents.str();
  };
  int count = 0;
  std::error_code error;
  for (const fs::directory_entry& entry : fs::directory_iterator(
           "/proc", fs::directory_options::skip_permission_denied, error)) {
    const std::string pid = entry.path().filename().string();
    if (pid.find_first_not_of("0123456789") != std::string::npos) continue;
    if (matches(read(entry.path() / "cmdline"), read(entry.path() / "environ"))) {
      ++count;
    }
  }
  return count;
}

}  // namespace

int ProcessesWithMarker(const std::string& marker) {
  return CountProcesses([&](const std::string& cmdline,
                            const std::string& environ) {
    return cmdline.find(marker) != std::string::npos ||
           environ.find(marker) != std::string::npos;
  });
}

int ProcessesWithArgv0(const std::string& name) {
  return CountProcesses([&](const std::string& cmdline, const std::string&) {
    return cmdline.substr(0, cmdline.find('\0')) == name;
  });
}

}  // namespace ciagent::testing
