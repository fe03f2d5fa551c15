// CIAGENT_REQUIRE_BUILDAH: tests that build images need buildah, and root
// (its vfs storage and chroot isolation need it here).
//
//   CIAGENT_REQUIRE_BUILDAH(path);  // in a TEST body: PATH with buildah on it
//
// Skips the test when either is missing, except under CI=true, where that
// is a failure.
#ifndef CIAGENT_TESTS_TESTING_BUILDAH_H_
#define CIAGENT_TESTS_TESTING_BUILDAH_H_

#include <unistd.h>

#include <cstdlib>
#include <string>

#include "ciagent/base/process_runner.h"
#include "gtest/gtest.h"
#include "testing/subprocess.h"

namespace ciagent::testing {

// This process's PATH when buildah is on it, else "".
inline std::string PathWithBuildah() {
  const char* path = std::getenv("PATH");
  const std::string result = path == nullptr ? "/usr/bin:/bin" : path;
  return FindExecutable("buildah", result).empty() ? "" : result;
}

}  // namespace ciagent::testing

#define CIAGENT_REQUIRE_BUILDAH(var)                                     \
  std::string var = ::ciagent::testing::PathWithBuildah();               \
  do {                                                                   \
    const char* missing = var.empty()        ? "buildah is not in PATH"  \
                          : ::geteuid() != 0 ? "buildah needs root here" \
                                             : nullptr;                  \
    if (missing != nullptr) {                                            \
      if (::ciagent::testing::RunningUnderCi()) {                        \
        FAIL() << missing << " (required under CI=true)";                \
      }                                                                  \
      GTEST_SKIP() << missing << " (a failure under CI=true)";           \
    }                                                                    \
  } while (0)

#endif  // CIAGENT_TESTS_TESTING_BUILDAH_H_
