// Real crates for tests, as Debian vendors them (librust-<name>-dev puts
// their sources under /usr/share/cargo/registry): inputs these tests did not
// write. Published to the test git server or packed for the test cargo
// registry, they play a team's private crates.
//
//   CIAGENT_REQUIRE_VENDORED_CRATE(itoa, "itoa");  // in a TEST or SetUp()
//   ASSERT_OK(CommitTree(bare_repo, "main", itoa, "import"));
//   ASSERT_OK_AND_ASSIGN(std::string crate, PackageCrate(copy, path, out));
#ifndef CIAGENT_TESTS_TESTING_VENDORED_CRATE_H_
#define CIAGENT_TESTS_TESTING_VENDORED_CRATE_H_

#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "testing/subprocess.h"

namespace ciagent::testing {

// The sources of Debian's vendored crate `name` (any version);
// kNotFound when its librust-<name>-dev package is not installed.
absl::StatusOr<std::string> VendoredCrate(absl::string_view name);

// Commits every file under `dir` to `branch` of the bare repository.
absl::Status CommitTree(const std::string& bare_repo, const std::string& branch,
                        const std::string& dir, const std::string& message);

// Packs the crate at `crate_dir` with `cargo package` (PATH `path`, no
// network) into `out_dir`; returns the .crate file's path.
absl::StatusOr<std::string> PackageCrate(const std::string& crate_dir,
                                         const std::string& path,
                                         const std::string& out_dir);

}  // namespace ciagent::testing

// Declares `std::string var` = VendoredCrate(name); skips the test when the
// crate is not installed (fails under CI=true).
#define CIAGENT_REQUIRE_VENDORED_CRATE(var, name)                             \
  std::string var;                                                            \
  do {                                                                        \
    auto found_ = ::ciagent::testing::VendoredCrate(name);                    \
    if (!found_.ok()) {                                                       \
      if (::ciagent::testing::RunningUnderCi()) {                             \
        FAIL() << found_.status() << " (required under CI=true)";             \
      }                                                                       \
      GTEST_SKIP() << found_.status() << " (a failure under CI=true)";        \
    }                                                                         \
    var = *std::move(found_);                                                 \
  } while (0)

#endif  // CIAGENT_TESTS_TESTING_VENDORED_CRATE_H_
