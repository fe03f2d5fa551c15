#include "ciagent/job/env_rules.h"

#include "absl/algorithm/container.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"

namespace ciagent {
namespace {

// Variables the agent sets for itself, or that would let a build run code
// around the compiler, move its output, or read credentials.
constexpr absl::string_view kReservedEnvNames[] = {
    "PATH",
    "HOME",
    "CARGO_HOME",
    "RUSTUP_HOME",
    "CARGO_TARGET_DIR",
    "CARGO_BUILD_TARGET_DIR",
    "RUSTC_WRAPPER",
    "RUSTC_WORKSPACE_WRAPPER",
    "CARGO_BUILD_RUSTC_WRAPPER",
    "CARGO_BUILD_RUSTC_WORKSPACE_WRAPPER",
    "RUSTC",
    "CARGO_BUILD_RUSTC",
    "RUSTDOC",
    "CARGO_BUILD_RUSTDOC",
    "CARGO",
    "CARGO_INCREMENTAL",
    "CARGO_TERM_COLOR",
    "CI",
    "CI_CACHE_DIR",
    "BASH_ENV",
    "ENV",
    "SHELL",
    "GITEA_TOKEN",
    // Where the steps' git finds the private dependencies' credential
    // helper (pipeline/private_dependencies.h).
    "XDG_CONFIG_HOME",
};
// Any name with one of these prefixes is reserved too.
constexpr absl::string_view kReservedEnvPrefixes[] = {
    "LD_",         "GIT_",      "CARGO_REGISTRIES_", "CARGO_REGISTRY_",
    "CARGO_HTTP_", "CARGO_NET_", "CIAGENT_",         "REDIS_",
    "REGISTRY_",   "SCCACHE_"};

}  // namespace

bool IsValidEnvName(absl::string_view name) {
  return !name.empty() && name.size() <= kMaxEnvNameBytes &&
         !absl::ascii_isdigit(static_cast<unsigned char>(name[0])) &&
         absl::c_all_of(name, [](char c) {
           return absl::ascii_isalnum(static_cast<unsigned char>(c)) ||
                  c == '_';
         });
}

bool IsReservedEnvName(absl::string_view name) {
  const auto has_prefix = [name](absl::string_view prefix) {
    return absl::StartsWith(name, prefix);
  };
  return absl::c_linear_search(kReservedEnvNames, name) ||
         absl::c_any_of(kReservedEnvPrefixes, has_prefix);
}

}  // namespace ciagent
