// Private dependencies: what lets cargo, inside the build steps, reach the
// git repositories and cargo registries a workspace depends on when they
// need credentials (docs/private-dependencies.md).
//
// Git dependencies. The agent's git credentials (GIT_USERNAME, GIT_TOKEN /
// GITEA_TOKEN, the ones that fetch the job's repository) are offered to the
// origins the operator allows (CI_GIT_CREDENTIAL_HOSTS; default: the job
// repository's origin) through a git credential helper. Both of cargo's git
// transports ask it: its built-in libgit2 and the git CLI
// (net.git-fetch-with-cli), for the dependency and its submodules alike.
// The helper answers `get` only for an allowed `protocol://host[:port]`,
// reading the token from a file; nothing else (store, erase, another host)
// gets an answer.
//
// cargo's built-in git does not tell a credential helper the host of a URL
// with an IP address (it sends the protocol alone), so such a request can
// never match an allowed origin. When an allowed origin is an IP address,
// the steps get CARGO_NET_GIT_FETCH_WITH_CLI=true: the git CLI names every
// host.
//
// Cargo registries. CI_CARGO_REGISTRIES names private registries,
// `name[=index]` separated by commas; the index (`sparse+https://…/`) may
// come from the operator's cargo config instead. Each one's token is
// CI_CARGO_REGISTRY_<NAME>_TOKEN or _TOKEN_FILE (NAME upper-cased, '-' as
// '_'), exactly what cargo sends as Authorization (Gitea: `Bearer <token>`).
// cargo reads it through its credential-provider mechanism,
// `cargo:token-from-stdout cat <token file>`: the token reaches cargo's
// process through a pipe, never an environment variable that every build
// script and test would inherit (CARGO_REGISTRIES_<NAME>_TOKEN would).
//
// Where the secrets are. DependencyAccess::Install writes the helper, its
// configuration and one file per token into a fresh mode-0700 directory
// beside the checkout (under the job's work dir), never into the checkout or
// the cache volume, and removes it when the run ends. The steps find it
// through XDG_CONFIG_HOME (git and libgit2 read $XDG_CONFIG_HOME/git/config)
// and CARGO_REGISTRIES_<NAME>_CREDENTIAL_PROVIDER; no token is in argv or in
// any process's environment. Build scripts run as the same user and can read
// what cargo can: give builds a read-only token, separate from the registry
// push token.
//
// Thread-safety: the functions are pure or read the environment;
// a DependencyAccess belongs to one run.
#ifndef CIAGENT_PIPELINE_PRIVATE_DEPENDENCIES_H_
#define CIAGENT_PIPELINE_PRIVATE_DEPENDENCIES_H_

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "ciagent/git/fetch.h"

namespace ciagent {

struct PrivateRegistry {
  // The name Cargo.toml uses: `registry = "<name>"`; [A-Za-z0-9_-]+.
  std::string name;
  // `sparse+https://…/` (or sparse+http://); empty: the operator's cargo
  // config defines [registries.<name>].
  std::string index;
  // Secret: sent verbatim as the Authorization header.
  std::string token;
};

struct PrivateDependencies {
  // The agent's git credentials; an empty token: git dependencies get none.
  GitCredentials git;
  // Origins whose git dependencies get `git`: "https://host[:port]" as
  // OriginOf() writes them.
  std::vector<std::string> git_origins;
  std::vector<PrivateRegistry> registries;

  bool empty() const {
    return (git.token.empty() || git_origins.empty()) && registries.empty();
  }
  bool AllowsGitOrigin(absl::string_view origin) const;
};

// "scheme://host[:port]" of an http(s) URL, scheme and host lower-cased,
// user info dropped; a bare "host[:port]" is taken as https.
// kInvalidArgument for another scheme or an empty host.
absl::StatusOr<std::string> OriginOf(absl::string_view url);

// What the agent's environment says, for a job fetched from `job_repo`
// (empty: a local run, no default origin): the git credentials
// (GitCredentialsFromEnv), CI_GIT_CREDENTIAL_HOSTS (comma-separated
// origins or hosts; "none": no origin), CI_CARGO_REGISTRIES and each
// registry's token. Tokens are registered for log masking.
// kInvalidArgument for a malformed list, a bad registry name or index, or a
// registry without a token; kFailedPrecondition for an unreadable token
// file.
absl::StatusOr<PrivateDependencies> PrivateDependenciesFromEnv(
    absl::string_view job_repo);

// The credentials of one run, laid out for the steps: owns the private
// directory and removes it on destruction.
class DependencyAccess {
 public:
  // Writes the helper and the token files into a new directory under
  // `parent_dir`. kFailedPrecondition when it cannot be created or written,
  // or when its path has whitespace (cargo splits a credential-provider
  // given in the environment on whitespace).
  static absl::StatusOr<std::unique_ptr<DependencyAccess>> Install(
      const PrivateDependencies& dependencies, const std::string& parent_dir);

  ~DependencyAccess();
  DependencyAccess(const DependencyAccess&) = delete;
  DependencyAccess& operator=(const DependencyAccess&) = delete;

  // Variables the steps need (XDG_CONFIG_HOME, GIT_TERMINAL_PROMPT,
  // CARGO_NET_GIT_FETCH_WITH_CLI, CARGO_REGISTRIES_<NAME>_…); no secrets.
  const std::vector<std::pair<std::string, std::string>>& env() const {
    return env_;
  }
  const std::string& dir() const { return dir_; }

 private:
  explicit DependencyAccess(std::string dir) : dir_(std::move(dir)) {}

  std::string dir_;
  std::vector<std::pair<std::string, std::string>> env_;
};

// "CARGO_REGISTRIES_<NAME>_" as cargo spells a registry's variables.
std::string CargoRegistryEnvPrefix(absl::string_view name);

}  // namespace ciagent

#endif  // CIAGENT_PIPELINE_PRIVATE_DEPENDENCIES_H_
