// RegistryClient's auth: the ping that picks the scheme, 401 challenges,
// and Bearer tokens fetched from the realm and cached per scope set.
#include <simdjson.h>

#include <algorithm>
#include <map>
#include <set>

#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "ciagent/base/status_macros.h"
#include "ciagent/oci/internal/registry_call.h"
#include "ciagent/oci/registry_client.h"
#include "ciagent/oci/www_authenticate.h"

namespace ciagent::oci {
namespace {

namespace dom = simdjson::dom;
using internal::AppendQuery;
using internal::HttpError;
using internal::PercentEncode;

}  // namespace

std::vector<std::string> MergeScopes(const std::vector<std::string>& scopes) {
  // resource ("repository:name") -> actions; other scopes kept verbatim.
  std::map<std::string, std::set<std::string>> actions;
  std::set<std::string> others;
  for (const std::string& scope : scopes) {
    const size_t last = scope.rfind(':');
    if (!absl::StartsWith(scope, "repository:") || last <= 11) {
      if (!scope.empty()) others.insert(scope);
      continue;
    }
    auto& set = actions[scope.substr(0, last)];
    for (absl::string_view action :
         absl::StrSplit(absl::string_view(scope).substr(last + 1), ',',
                        absl::SkipEmpty())) {
      set.insert(std::string(action));
    }
  }
  std::vector<std::string> merged(others.begin(), others.end());
  for (const auto& [resource, set] : actions) {
    merged.push_back(absl::StrCat(resource, ":", absl::StrJoin(set, ",")));
  }
  std::sort(merged.begin(), merged.end());
  return merged;
}

absl::Status RegistryClient::EnsurePinged() {
  {
    absl::MutexLock lock(&mu_);
    if (scheme_ != Scheme::kUnknown) return absl::OkStatus();
  }
  absl::MutexLock ping_lock(&ping_mu_);
  {
    absl::MutexLock lock(&mu_);
    if (scheme_ != Scheme::kUnknown) return absl::OkStatus();
  }
  Call call{.request = {.url = absl::StrCat(base_url_, "/v2/")},
            .authorize = false,
            .what = absl::StrCat("ping ", host_)};
  CIAGENT_ASSIGN_OR_RETURN(HttpResponse response, Execute(call));
  if (response.status == 200) {
    absl::MutexLock lock(&mu_);
    scheme_ = Scheme::kNone;
    return absl::OkStatus();
  }
  if (response.status != 401) {
    return HttpError(call.what, host_, response, call.attempts);
  }
  return OnUnauthorized(response, call);
}

absl::Status RegistryClient::OnUnauthorized(const HttpResponse& response,
                                            Call& call) {
  absl::StatusOr<std::vector<AuthChallenge>> challenges =
      ParseWwwAuthenticate(response.Header("www-authenticate"));
  if (!challenges.ok()) {
    return absl::UnauthenticatedError(absl::StrCat(
        call.what, ": HTTP 401 from ", host_, " without a usable challenge (",
        challenges.status().message(), ")"));
  }
  const AuthChallenge* bearer = nullptr;
  const AuthChallenge* basic = nullptr;
  for (const AuthChallenge& challenge : *challenges) {
    if (challenge.scheme == "bearer" && bearer == nullptr) bearer = &challenge;
    if (challenge.scheme == "basic" && basic == nullptr) basic = &challenge;
  }
  absl::MutexLock lock(&mu_);
  if (bearer != nullptr && !bearer->Param("realm").empty()) {
    scheme_ = Scheme::kBearer;
    realm_ = bearer->Param("realm");
    service_ = bearer->Param("service");
    std::vector<std::string> wanted = call.scopes;
    for (absl::string_view scope :
         absl::StrSplit(bearer->Param("scope"), ' ', absl::SkipEmpty())) {
      // Gitea's ping challenge says scope="*"; it is not a real scope.
      if (scope != "*") wanted.push_back(std::string(scope));
    }
    wanted = MergeScopes(wanted);
    if (wanted != MergeScopes(call.scopes)) {
      call.scopes = std::move(wanted);  // a token with more rights
    } else {
      tokens_.erase(absl::StrJoin(wanted, " "));  // ours was rejected
    }
    return absl::OkStatus();
  }
  if (basic != nullptr) {
    if (options_.username.empty()) {
      return absl::UnauthenticatedError(
          absl::StrCat(call.what, ": ", host_,
                       " requires credentials (set "
                       "REGISTRY_USERNAME and REGISTRY_TOKEN)"));
    }
    if (scheme_ == Scheme::kBasic) {
      return absl::UnauthenticatedError(absl::StrCat(
          call.what, ": ", host_, " rejected the credentials of user \"",
          options_.username, "\""));
    }
    scheme_ = Scheme::kBasic;
    return absl::OkStatus();
  }
  return absl::UnauthenticatedError(absl::StrCat(call.what, ": HTTP 401 from ",
                                                 host_,
                                                 " with no Basic or Bearer "
                                                 "challenge"));
}

absl::StatusOr<std::string> RegistryClient::Authorization(
    const std::vector<std::string>& scopes) {
  const std::vector<std::string> merged = MergeScopes(scopes);
  const std::string key = absl::StrJoin(merged, " ");
  {
    absl::MutexLock lock(&mu_);
    switch (scheme_) {
      case Scheme::kUnknown:
      case Scheme::kNone:
        return "";
      case Scheme::kBasic:
        return absl::StrCat(
            "Basic ", absl::Base64Escape(absl::StrCat(options_.username, ":",
                                                      options_.password)));
      case Scheme::kBearer:
        break;
    }
    if (auto it = tokens_.find(key);
        it != tokens_.end() && absl::Now() < it->second.refresh_at) {
      return absl::StrCat("Bearer ", it->second.value);
    }
  }
  // Concurrent uploads starting together need one token, not four.
  absl::MutexLock fetch_lock(&token_fetch_mu_);
  {
    absl::MutexLock lock(&mu_);
    if (auto it = tokens_.find(key);
        it != tokens_.end() && absl::Now() < it->second.refresh_at) {
      return absl::StrCat("Bearer ", it->second.value);
    }
  }
  CIAGENT_ASSIGN_OR_RETURN(Token token, FetchToken(merged));
  std::string header = absl::StrCat("Bearer ", token.value);
  absl::MutexLock lock(&mu_);
  tokens_[key] = std::move(token);
  return header;
}

absl::StatusOr<RegistryClient::Token> RegistryClient::FetchToken(
    const std::vector<std::string>& scopes) {
  std::string realm, service;
  {
    absl::MutexLock lock(&mu_);
    realm = realm_;
    service = service_;
  }
  std::string url = realm;
  if (!service.empty()) {
    url = AppendQuery(url, absl::StrCat("service=", PercentEncode(service)));
  }
  for (const std::string& scope : scopes) {
    url = AppendQuery(url, absl::StrCat("scope=", PercentEncode(scope)));
  }
  Call call{.request = {.url = url},
            .authorize = false,
            .what = absl::StrCat("token request to ",
                                 realm.substr(0, realm.find('?')))};
  if (!options_.username.empty()) {
    call.request.headers.emplace_back(
        "Authorization", absl::StrCat("Basic ", absl::Base64Escape(absl::StrCat(
                                                    options_.username, ":",
                                                    options_.password))));
  }
  ++token_fetches_;
  CIAGENT_ASSIGN_OR_RETURN(HttpResponse response, Execute(call));
  if (response.status == 401 || response.status == 403) {
    return absl::UnauthenticatedError(
        absl::StrCat(call.what, ": HTTP ", response.status,
                     ", credentials of user \"", options_.username,
                     "\" rejected (check REGISTRY_USERNAME and "
                     "REGISTRY_TOKEN)"));
  }
  if (response.status != 200) {
    return HttpError(call.what, host_, response, call.attempts);
  }
  dom::parser parser;
  dom::element root;
  std::string_view value;
  if (parser.parse(response.body).get(root) != simdjson::SUCCESS ||
      (root["token"].get_string().get(value) != simdjson::SUCCESS &&
       root["access_token"].get_string().get(value) != simdjson::SUCCESS) ||
      value.empty()) {
    return absl::InternalError(
        absl::StrCat(call.what, ": answer has no token"));
  }
  int64_t expires_in = 60;  // the spec's default; Gitea sends none
  if (int64_t given = 0;
      root["expires_in"].get_int64().get(given) == simdjson::SUCCESS &&
      given > 0) {
    expires_in = given;
  }
  // Renew at 80 % of the lifetime: a long upload must not start with a
  // token about to expire.
  return Token{.value = std::string(value),
               .refresh_at = absl::Now() + absl::Seconds(expires_in) * 0.8};
}

absl::Status RegistryClient::Ping() {
  CIAGENT_RETURN_IF_ERROR(EnsurePinged());
  Call call{.request = {.url = absl::StrCat(base_url_, "/v2/")},
            .what = absl::StrCat("ping ", host_)};
  CIAGENT_ASSIGN_OR_RETURN(HttpResponse response, Execute(call));
  if (response.status != 200) {
    return HttpError(call.what, host_, response, call.attempts);
  }
  return absl::OkStatus();
}

}  // namespace ciagent::oci
