// The one rule for the names of build environment variables.
#include "ciagent/job/env_rules.h"

#include <string>

#include "gtest/gtest.h"

namespace ciagent {
namespace {

TEST(IsValidEnvNameTest, AcceptsShellNamesUpTo128Bytes) {
  for (const std::string& name :
       {std::string("A"), std::string("_a1_B2"), std::string("OLD_LD_PATH"),
        std::string(128, 'A')}) {
    EXPECT_TRUE(IsValidEnvName(name)) << name;
  }
  for (const std::string& name :
       {std::string(""), std::string("1A"), std::string("A-B"),
        std::string("A=B"), std::string("A B"), std::string(129, 'A')}) {
    EXPECT_FALSE(IsValidEnvName(name)) << name;
  }
}

TEST(IsReservedEnvNameTest, ReservesTheAgentsNamesAndPrefixes) {
  for (const char* name :
       {"PATH", "HOME", "CARGO_HOME", "CARGO_TARGET_DIR", "RUSTC_WRAPPER",
        "RUSTC", "CI", "CI_CACHE_DIR", "CARGO_TERM_COLOR", "LD_PRELOAD", "LD_",
        "GIT_DIR", "GIT_CONFIG_GLOBAL", "REDIS_URL", "REGISTRY_TOKEN",
        "CARGO_REGISTRIES_ACME_TOKEN", "CARGO_NET_OFFLINE", "SCCACHE_DIR",
        "CIAGENT_LOG_LEVEL", "BASH_ENV"}) {
    EXPECT_TRUE(IsReservedEnvName(name)) << name;
  }
  for (const char* name : {"RUST_LOG", "RUST_BACKTRACE", "OLD_LD_PATH", "LDX",
                           "CARGO_BUILD_JOBS", "RUSTFLAGS", "MY_GIT_DIR"}) {
    EXPECT_FALSE(IsReservedEnvName(name)) << name;
  }
}

}  // namespace
}  // namespace ciagent
