#include "testing/vendored_crate.h"

#include <glob.h>

#include <cstdlib>
#include <filesystem>
#include <map>
#include <utility>

#include "absl/strings/str_cat.h"
#include "ciagent/base/process_runner.h"
#include "testing/git_repo.h"

namespace ciagent::testing {

namespace fs = std::filesystem;

absl::StatusOr<std::string> VendoredCrate(absl::string_view name) {
  const std::string pattern =
      absl::StrCat("/usr/share/cargo/registry/", name, "-[0-9]*");
  glob_t matches;
  std::string found;
  if (glob(pattern.c_str(), 0, nullptr, &matches) == 0) {
    found = matches.gl_pathv[matches.gl_pathc - 1];
  }
  globfree(&matches);
  if (found.empty()) {
    return absl::NotFoundError(
        absl::StrCat("librust-", name, "-dev is not installed"));
  }
  return found;
}

absl::Status CommitTree(const std::string& bare_repo, const std::string& branch,
                        const std::string& dir, const std::string& message) {
  std::map<std::string, std::string> files;
  for (const auto& entry : fs::recursive_directory_iterator(dir)) {
    if (!entry.is_regular_file()) continue;
    files[fs::relative(entry.path(), dir).string()] =
        ReadFileOrEmpty(entry.path().string());
  }
  return CommitFiles(bare_repo, branch, files, message).status();
}

absl::StatusOr<std::string> PackageCrate(const std::string& crate_dir,
                                         const std::string& path,
                                         const std::string& out_dir) {
  ProcessOptions process;
  process.argv = {"cargo", "package", "--offline", "--no-verify",
                  "--allow-dirty", "--target-dir", out_dir + "/target"};
  process.working_dir = crate_dir;
  process.env = {{"PATH", path},
                 {"HOME", getenv("HOME") != nullptr ? getenv("HOME") : "/"},
                 {"CARGO_HOME", out_dir + "/cargo-home"}};
  if (const char* rustup = getenv("RUSTUP_HOME"); rustup != nullptr) {
    process.env.emplace_back("RUSTUP_HOME", rustup);
  }
  std::string output;
  absl::StatusOr<ProcessResult> run =
      RunProcess(process, [&](StreamKind, absl::string_view line) {
        absl::StrAppend(&output, line, "\n");
      });
  if (!run.ok()) return run.status();
  if (run->exit_code != 0) {
    return absl::InternalError(
        absl::StrCat("cargo package in ", crate_dir, ": ", output));
  }
  for (const auto& entry :
       std::filesystem::directory_iterator(out_dir + "/target/package")) {
    if (entry.path().extension() == ".crate") {
      const std::string dest = out_dir + "/" + entry.path().filename().string();
      std::filesystem::rename(entry.path(), dest);
      return dest;
    }
  }
  return absl::InternalError(
      absl::StrCat("cargo package in ", crate_dir, " wrote no .crate"));
}

}  // namespace ciagent::testing
