#include "ciagent/pipeline/private_dependencies.h"

#include <stdlib.h>

#include <cstdlib>
#include <filesystem>
#include <system_error>

#include "absl/algorithm/container.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_replace.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "ciagent/base/atomic_file.h"
#include "ciagent/base/comma_list.h"
#include "ciagent/base/log.h"
#include "ciagent/base/secret.h"
#include "ciagent/base/status_macros.h"

namespace ciagent {
namespace {

namespace fs = std::filesystem;

// Answers `get` for the origins listed in git-origins beside it, with the
// username and token in the files beside it; everything else gets nothing,
// which git and cargo read as "no credentials here". git passes the host
// with its port when the URL has one; default ports are dropped so that
// https://h and https://h:443 are one origin, as OriginOf() writes them.
constexpr char kCredentialHelper[] = R"(#!/bin/sh
# git credential helper of one job's build (libciagent,
# docs/private-dependencies.md): the job's git credentials for the allowed
# origins only; store and erase are ignored.
[ "$1" = get ] || exit 0
dir=${0%/*}
protocol=
host=
while IFS= read -r line && [ -n "$line" ]; do
  case $line in
    protocol=*) protocol=${line#protocol=} ;;
    host=*) host=${line#host=} ;;
  esac
done
[ -n "$host" ] || exit 0
case "$protocol:$host" in
  https:*:443) host=${host%:443} ;;
  http:*:80) host=${host%:80} ;;
esac
origin=$(printf '%s://%s' "$protocol" "$host" | tr 'A-Z' 'a-z')
while IFS= read -r allowed; do
  if [ "$origin" = "$allowed" ]; then
    printf 'username='
    cat "$dir/git-username"
    printf '\npassword='
    cat "$dir/git-token"
    printf '\n'
    exit 0
  fi
done < "$dir/git-origins"
exit 0
)";

// A registry's name as cargo writes it in variable names: "my-reg" is MY_REG.
std::string RegistryVariablePart(absl::string_view name) {
  return absl::StrReplaceAll(absl::AsciiStrToUpper(name), {{"-", "_"}});
}

bool IsRegistryName(absl::string_view name) {
  return !name.empty() && absl::c_all_of(name, [](char c) {
    return absl::ascii_isalnum(static_cast<unsigned char>(c)) || c == '-' ||
           c == '_';
  });
}

// A host git and cargo would write as an address, not a name.
bool IsIpLiteral(absl::string_view host) {
  if (absl::StartsWith(host, "[")) return true;
  std::vector<absl::string_view> parts = absl::StrSplit(host, '.');
  return parts.size() == 4 && absl::c_all_of(parts, [](absl::string_view p) {
           return !p.empty() && absl::c_all_of(p, absl::ascii_isdigit);
         });
}

// The host of an origin, without its port.
absl::string_view OriginHost(absl::string_view origin) {
  absl::string_view host = origin.substr(origin.find("://") + 3);
  if (absl::StartsWith(host, "[")) return host.substr(0, host.find(']') + 1);
  return host.substr(0, host.find(':'));
}

// Characters a shell (git runs credential helpers through sh -c) and
// cargo's whitespace-split credential-provider read as themselves.
bool IsPlainPath(absl::string_view path) {
  return absl::c_all_of(path, [](char c) {
    return absl::ascii_isalnum(static_cast<unsigned char>(c)) ||
           absl::StrContains("/._+-@:,=", c);
  });
}

absl::StatusOr<std::vector<std::string>> GitOriginsFromEnv(
    absl::string_view job_repo) {
  const char* env = std::getenv("CI_GIT_CREDENTIAL_HOSTS");
  std::vector<std::string> origins;
  if (env == nullptr || absl::StripAsciiWhitespace(env).empty()) {
    if (absl::StartsWith(job_repo, "https://") ||
        absl::StartsWith(job_repo, "http://")) {
      CIAGENT_ASSIGN_OR_RETURN(std::string origin, OriginOf(job_repo));
      origins.push_back(std::move(origin));
    }
    return origins;
  }
  if (absl::StripAsciiWhitespace(env) == "none") return origins;
  for (absl::string_view item : SplitCommaList(env)) {
    absl::StatusOr<std::string> origin = OriginOf(item);
    if (!origin.ok()) {
      return absl::InvalidArgumentError(absl::StrCat(
          "CI_GIT_CREDENTIAL_HOSTS: ", origin.status().message()));
    }
    if (!absl::c_linear_search(origins, *origin)) {
      origins.push_back(*std::move(origin));
    }
  }
  return origins;
}

absl::StatusOr<std::vector<PrivateRegistry>> RegistriesFromEnv() {
  std::vector<PrivateRegistry> registries;
  const char* env = std::getenv("CI_CARGO_REGISTRIES");
  if (env == nullptr) return registries;
  for (absl::string_view item : SplitCommaList(env)) {
    std::pair<absl::string_view, absl::string_view> parts =
        absl::StrSplit(item, absl::MaxSplits('=', 1));
    PrivateRegistry registry;
    registry.name = std::string(absl::StripAsciiWhitespace(parts.first));
    registry.index = std::string(absl::StripAsciiWhitespace(parts.second));
    if (!IsRegistryName(registry.name)) {
      return absl::InvalidArgumentError(absl::StrCat(
          "CI_CARGO_REGISTRIES: \"", registry.name,
          "\" is not a registry name (letters, digits, '-' and '_')"));
    }
    if (absl::c_any_of(registries, [&](const PrivateRegistry& r) {
          return r.name == registry.name;
        })) {
      return absl::InvalidArgumentError(absl::StrCat(
          "CI_CARGO_REGISTRIES: registry \"", registry.name, "\" given twice"));
    }
    if (!registry.index.empty() &&
        !absl::StartsWith(registry.index, "sparse+https://") &&
        !absl::StartsWith(registry.index, "sparse+http://")) {
      return absl::InvalidArgumentError(absl::StrCat(
          "CI_CARGO_REGISTRIES: the index of \"", registry.name,
          "\" must be a sparse index (sparse+https://...): only sparse "
          "registries take tokens for reading"));
    }
    const std::string variable = absl::StrCat(
        "CI_CARGO_REGISTRY_", RegistryVariablePart(registry.name), "_TOKEN");
    CIAGENT_ASSIGN_OR_RETURN(std::optional<std::string> token,
                             ReadSecretFromEnv(variable));
    if (!token.has_value() || token->empty()) {
      return absl::InvalidArgumentError(absl::StrCat(
          "CI_CARGO_REGISTRIES names \"", registry.name, "\" but ", variable,
          " (or ", variable, "_FILE) is not set"));
    }
    registry.token = *std::move(token);
    registries.push_back(std::move(registry));
  }
  return registries;
}

absl::Status WriteGitHelper(const PrivateDependencies& dependencies,
                            const std::string& dir,
                            std::vector<std::pair<std::string, std::string>>* env) {
  CIAGENT_RETURN_IF_ERROR(WriteFileAtomically(
      dir + "/git-username",
      dependencies.git.username.empty() ? "git" : dependencies.git.username,
      0600));
  CIAGENT_RETURN_IF_ERROR(
      WriteFileAtomically(dir + "/git-token", dependencies.git.token, 0600));
  CIAGENT_RETURN_IF_ERROR(WriteFileAtomically(
      dir + "/git-origins",
      absl::StrCat(absl::StrJoin(dependencies.git_origins, "\n"), "\n"), 0600));
  CIAGENT_RETURN_IF_ERROR(
      WriteFileAtomically(dir + "/git-credential", kCredentialHelper, 0700));
  std::error_code error;
  fs::create_directory(dir + "/git", error);
  if (error) {
    return absl::FailedPreconditionError(
        absl::StrCat("create ", dir, "/git: ", error.message()));
  }
  CIAGENT_RETURN_IF_ERROR(WriteFileAtomically(
      dir + "/git/config",
      absl::StrCat("[credential]\n\thelper = \"", dir, "/git-credential\"\n"),
      0600));
  env->emplace_back("XDG_CONFIG_HOME", dir);
  env->emplace_back("GIT_TERMINAL_PROMPT", "0");
  if (absl::c_any_of(dependencies.git_origins, [](const std::string& origin) {
        return IsIpLiteral(OriginHost(origin));
      })) {
    env->emplace_back("CARGO_NET_GIT_FETCH_WITH_CLI", "true");
  }
  return absl::OkStatus();
}

}  // namespace

bool PrivateDependencies::AllowsGitOrigin(absl::string_view origin) const {
  return absl::c_linear_search(git_origins, origin);
}

absl::StatusOr<std::string> OriginOf(absl::string_view url) {
  std::string scheme = "https";
  absl::string_view rest = url;
  if (size_t colon = url.find("://"); colon != absl::string_view::npos) {
    scheme = absl::AsciiStrToLower(url.substr(0, colon));
    rest = url.substr(colon + 3);
  }
  if (scheme != "https" && scheme != "http") {
    return absl::InvalidArgumentError(absl::StrCat(
        "\"", scheme, "\": only http and https origins get git credentials"));
  }
  absl::string_view authority = rest.substr(0, rest.find_first_of("/?#"));
  if (size_t at = authority.rfind('@'); at != absl::string_view::npos) {
    authority = authority.substr(at + 1);
  }
  std::string host = absl::AsciiStrToLower(authority);
  const absl::string_view default_port = scheme == "https" ? ":443" : ":80";
  if (absl::EndsWith(host, default_port)) {
    host.resize(host.size() - default_port.size());
  }
  if (host.empty() || absl::StartsWith(host, ":")) {
    return absl::InvalidArgumentError("an origin needs a host");
  }
  return absl::StrCat(scheme, "://", host);
}

absl::StatusOr<PrivateDependencies> PrivateDependenciesFromEnv(
    absl::string_view job_repo) {
  PrivateDependencies dependencies;
  CIAGENT_ASSIGN_OR_RETURN(dependencies.git, GitCredentialsFromEnv());
  CIAGENT_ASSIGN_OR_RETURN(dependencies.git_origins,
                           GitOriginsFromEnv(job_repo));
  CIAGENT_ASSIGN_OR_RETURN(dependencies.registries, RegistriesFromEnv());
  return dependencies;
}

std::string CargoRegistryEnvPrefix(absl::string_view name) {
  return absl::StrCat("CARGO_REGISTRIES_", RegistryVariablePart(name), "_");
}

absl::StatusOr<std::unique_ptr<DependencyAccess>> DependencyAccess::Install(
    const PrivateDependencies& dependencies, const std::string& parent_dir) {
  std::string pattern = parent_dir + "/.ciagent-credentials-XXXXXX";
  if (mkdtemp(pattern.data()) == nullptr) {
    return absl::FailedPreconditionError(absl::StrCat(
        "private dependencies: create a directory in ", parent_dir, ": ",
        std::generic_category().message(errno)));
  }
  std::unique_ptr<DependencyAccess> access(
      new DependencyAccess(fs::absolute(pattern).string()));
  const std::string& dir = access->dir_;
  if (!IsPlainPath(dir)) {
    return absl::FailedPreconditionError(absl::StrCat(
        "private dependencies: the work dir's path \"", parent_dir,
        "\" has whitespace or shell characters; git and cargo could not run "
        "a credential helper from it"));
  }
  if (!dependencies.git.token.empty() && !dependencies.git_origins.empty()) {
    CIAGENT_RETURN_IF_ERROR(WriteGitHelper(dependencies, dir, &access->env_));
  }
  for (const PrivateRegistry& registry : dependencies.registries) {
    const std::string token_file =
        absl::StrCat(dir, "/registry-", registry.name, ".token");
    CIAGENT_RETURN_IF_ERROR(
        WriteFileAtomically(token_file, registry.token, 0600));
    const std::string prefix = CargoRegistryEnvPrefix(registry.name);
    if (!registry.index.empty()) {
      access->env_.emplace_back(prefix + "INDEX", registry.index);
    }
    access->env_.emplace_back(prefix + "CREDENTIAL_PROVIDER",
                              "cargo:token-from-stdout cat " + token_file);
  }
  return access;
}

DependencyAccess::~DependencyAccess() {
  std::error_code error;
  fs::remove_all(dir_, error);
  if (error) {
    LogWarning("private dependencies: credentials not removed",
               {{"dir", dir_}, {"error", error.message()}});
  }
}

}  // namespace ciagent
