#include "ciagent/pipeline/dependency_failure.h"

#include "absl/algorithm/container.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/strip.h"

namespace ciagent {
namespace {

// Lines kept per command: a dependency error chain is a dozen lines.
constexpr size_t kMaxLines = 64;

// The first line of an error cargo reports about a source it was loading.
constexpr absl::string_view kChainStarts[] = {
    "error: failed to get `",
    "error: failed to download",
    "error: failed to load source",
    "error: failed to update ",
    "error: failed to fetch",
    "error: failed to query replaced source",
    "error: unable to update ",
};

// Credentials missing or refused: libgit2 (through cargo), the git CLI,
// cargo's registry client.
constexpr absl::string_view kAuthMarkers[] = {
    "failed to authenticate when downloading repository",
    "Authentication failed for '",
    "could not read Username for '",
    "could not read Password for '",
    "token rejected for `",
    "no token found for `",
    "authenticated registries require a credential-provider",
    ", got 401",
    ", got 403",
    "status code: 401",
    "status code: 403",
    "returned error: 401",
    "returned error: 403",
};

// A server that is down, unreachable or overloaded.
constexpr absl::string_view kNetworkMarkers[] = {
    "network failure seems to have happened",
    "failed to connect to",
    "Could not connect to server",
    "Couldn't connect to server",
    "Could not resolve host",
    "Couldn't resolve host",
    "failed to resolve address",
    "Connection refused",
    "Connection reset",
    "timed out",
    "Timeout was reached",
    ", got 429",
    "returned error: 429",
    "status code: 429",
};

// HTTP 5xx in the three spellings cargo and git use.
bool HasServerError(absl::string_view line) {
  for (absl::string_view prefix :
       {absl::string_view(", got 5"), absl::string_view("status code: 5"),
        absl::string_view("returned error: 5")}) {
    size_t at = line.find(prefix);
    if (at == absl::string_view::npos) continue;
    absl::string_view rest = line.substr(at + prefix.size());
    if (rest.size() >= 2 && absl::ascii_isdigit(rest[0]) &&
        absl::ascii_isdigit(rest[1])) {
      return true;
    }
  }
  return false;
}

bool HasAny(absl::string_view line, absl::Span<const absl::string_view> markers) {
  return absl::c_any_of(markers, [line](absl::string_view marker) {
    return absl::StrContains(line, marker);
  });
}

// The text between the first pair of backticks after `after`, or "".
absl::string_view Quoted(absl::string_view line, absl::string_view after) {
  size_t at = line.find(after);
  if (at == absl::string_view::npos) return "";
  absl::string_view rest = line.substr(at + after.size());
  size_t open = rest.find('`');
  if (open == absl::string_view::npos) return "";
  rest = rest.substr(open + 1);
  return rest.substr(0, rest.find('`'));
}

// cargo writes a git source as "<url>?branch=main#<commit>".
std::string GitUrl(absl::string_view line) {
  absl::string_view url = line.substr(line.find("unable to update ") + 17);
  url = absl::StripAsciiWhitespace(url.substr(0, url.find_first_of("?# ")));
  size_t scheme = url.find("://");
  if (scheme != absl::string_view::npos) {
    absl::string_view rest = url.substr(scheme + 3);
    size_t at = rest.find('@');
    if (at != absl::string_view::npos && at < rest.find('/')) {
      return absl::StrCat(url.substr(0, scheme + 3), rest.substr(at + 1));
    }
  }
  return std::string(url);
}

}  // namespace

void DependencyFailureReader::AddLine(absl::string_view line) {
  line = absl::StripTrailingAsciiWhitespace(line);
  absl::string_view trimmed = absl::StripLeadingAsciiWhitespace(line);
  if (absl::StartsWith(trimmed, "Updating `") &&
      absl::EndsWith(trimmed, "` index")) {
    registry_ = std::string(Quoted(trimmed, "Updating"));
    return;
  }
  if (absl::StartsWith(line, "fatal: ")) {
    if (git_fatal_.size() < kMaxLines) git_fatal_.emplace_back(line);
    return;
  }
  if (!in_chain_) {
    in_chain_ = absl::c_any_of(kChainStarts, [line](absl::string_view start) {
      return absl::StartsWith(line, start);
    });
    if (!in_chain_) return;
  }
  if (chain_.size() < kMaxLines) chain_.emplace_back(trimmed);
}

std::optional<DependencyFailure> DependencyFailureReader::failure() const {
  if (!in_chain_) return std::nullopt;
  DependencyFailure failure;
  std::string registry_url;
  bool auth = false;
  bool network = false;
  std::string auth_cause;
  std::string network_cause;
  const auto look_at = [&](const std::string& line) {
    if (HasAny(line, kAuthMarkers)) {
      auth = true;
      auth_cause = line;
    } else if (HasAny(line, kNetworkMarkers) || HasServerError(line)) {
      network = true;
      network_cause = line;
    }
  };
  for (const std::string& line : git_fatal_) look_at(line);
  for (const std::string& line : chain_) {
    if (absl::StrContains(line, "unable to update ")) {
      failure.git_url = GitUrl(line);
    }
    for (absl::string_view marker : {"token rejected for", "no token found for"}) {
      if (absl::string_view name = Quoted(line, marker); !name.empty()) {
        failure.registry = std::string(name);
      }
    }
    if (absl::string_view url = Quoted(line, " from"); !url.empty()) {
      registry_url = std::string(url);
    }
    look_at(line);
  }
  if (!auth && !network) return std::nullopt;
  if (failure.registry.empty() && failure.git_url.empty()) {
    failure.registry = !registry_.empty() ? registry_ : registry_url;
  }
  failure.kind = auth ? DependencyFailure::Kind::kAuthentication
                      : DependencyFailure::Kind::kUnavailable;
  failure.cause = auth ? auth_cause : network_cause;
  return failure;
}

std::string DescribeDependencyFailure(const DependencyFailure& failure,
                                      const PrivateDependencies& dependencies) {
  const std::string what =
      failure.git_url.empty()
          ? absl::StrCat("registry `", failure.registry, "`")
          : absl::StrCat("git dependency ", failure.git_url);
  if (failure.kind == DependencyFailure::Kind::kUnavailable) {
    return absl::StrCat(what, " unavailable: ", failure.cause);
  }
  std::string why;
  if (!failure.git_url.empty()) {
    absl::StatusOr<std::string> origin = OriginOf(failure.git_url);
    if (!origin.ok() || !dependencies.AllowsGitOrigin(*origin)) {
      why = dependencies.git_origins.empty()
                ? "host not in the allowed list, which is empty"
                : absl::StrCat("host not in the allowed list: ",
                               absl::StrJoin(dependencies.git_origins, ", "));
    } else if (dependencies.git.token.empty()) {
      why = "host allowed, no git token configured";
    } else {
      why = "host allowed, token rejected";
    }
  } else {
    const bool known =
        absl::c_any_of(dependencies.registries, [&](const PrivateRegistry& r) {
          return r.name == failure.registry;
        });
    why = known ? "token rejected"
                : "no token configured: name it in CI_CARGO_REGISTRIES";
  }
  return absl::StrCat("authentication failed for ", what, " (", why, ")");
}

}  // namespace ciagent
