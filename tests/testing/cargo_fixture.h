// Rust fixture crates (tests/fixtures/<name>) for pipeline and ci-build
// tests: a fresh copy per test, and the PATH that holds a real cargo.
//
// Example:
//   CIAGENT_REQUIRE_CARGO(path);   // in a TEST body or SetUp()
//   ASSERT_OK_AND_ASSIGN(std::string src, CopyFixture("passing", tmp));
#ifndef CIAGENT_TESTS_TESTING_CARGO_FIXTURE_H_
#define CIAGENT_TESTS_TESTING_CARGO_FIXTURE_H_

#include <cstdint>
#include <map>
#include <string>

#include "absl/status/statusor.h"
#include "gtest/gtest.h"
#include "testing/subprocess.h"

namespace ciagent::testing {

// Outcomes of the fixtures (tests/fixtures/README.md has the whole table).
inline constexpr int64_t kPassingPassed = 6;
inline constexpr int64_t kPassingIgnored = 1;
inline constexpr int64_t kFailingPassed = 3;
inline constexpr char kFailingName[] = "math::tests::subtracts_wrongly";
inline constexpr int64_t kClippyWarnings = 2;

// This process's PATH, plus $HOME/.cargo/bin when cargo lives there (rustup);
// kNotFound when no cargo is found on it.
absl::StatusOr<std::string> PathWithCargo();

// Copies tests/fixtures/<name> (located through CIAGENT_FIXTURES) to
// <dest_dir>/<name> and returns that path.
absl::StatusOr<std::string> CopyFixture(const std::string& name,
                                        const std::string& dest_dir);

// Directory of the fixtures (CIAGENT_FIXTURES).
absl::StatusOr<std::string> FixturesDir();

// Every file of fixture `name` (hidden ones too, but nothing under a
// `target` directory), relative path => bytes: what CommitFiles
// (git_repo.h) puts in a repository for a job to fetch.
absl::StatusOr<std::map<std::string, std::string>> FixtureFiles(
    const std::string& name);

// Number of live processes whose command line or environment contains
// `marker`.
int ProcessesWithMarker(const std::string& marker);

// Number of live processes whose argv[0] is `name` (the hanging_test
// fixture's stubborn sleeps carry its marker there).
int ProcessesWithArgv0(const std::string& name);

}  // namespace ciagent::testing

// Declares `std::string var` = PathWithCargo(); skips the test without cargo
// (fails under CI=true).
#define CIAGENT_REQUIRE_CARGO(var)                                            \
  std::string var;                                                            \
  do {                                                                        \
    auto found = ::ciagent::testing::PathWithCargo();                         \
    if (!found.ok()) {                                                        \
      if (::ciagent::testing::RunningUnderCi()) {                             \
        FAIL() << "cargo is required under CI=true: " << found.status();      \
      }                                                                       \
      GTEST_SKIP() << "cargo not installed (a failure under CI=true)";        \
    }                                                                         \
    var = *std::move(found);                                                  \
  } while (0)

#endif  // CIAGENT_TESTS_TESTING_CARGO_FIXTURE_H_
