#include "ciagent/oci/registry_client.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <set>
#include <simdjson.h>

#include "absl/cleanup/cleanup.h"
#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "absl/time/clock.h"
#include "ciagent/base/secret.h"
#include "ciagent/base/sha256.h"
#include "ciagent/base/status_macros.h"
#include "ciagent/base/stop_signal.h"
#include "ciagent/oci/manifest.h"
#include "ciagent/oci/reference.h"
#include "ciagent/oci/www_authenticate.h"

namespace ciagent::oci {

// One request as the client sends it: auth, retries and what to call it in
// errors.
struct RegistryClient::Call {
  HttpRequest request;
  // Token scopes the request needs (Bearer auth).
  std::vector<std::string> scopes;
  // Whether this request is retried on transient failures; uploads retry
  // at a higher level, with a new session.
  bool retry = true;
  // Whether it goes through the registry's auth (the ping and the token
  // request do not).
  bool authorize = true;
  // "push blob sha256:ab12..." -- for error messages.
  std::string what;
  int attempts = 0;  // out: how many were made
};

namespace {

namespace dom = simdjson::dom;

bool IsLoopbackHost(absl::string_view host) {
  // host[:port], or [v6]:port.
  if (absl::StartsWith(host, "[::1]")) return true;
  host = host.substr(0, host.rfind(':') == absl::string_view::npos
                            ? host.size()
                            : host.rfind(':'));
  return host == "localhost" || host == "::1" ||
         absl::StartsWith(host, "127.");
}

bool IsRetryableHttp(int status) {
  return status == 408 || status == 429 || (status >= 500 && status <= 599);
}

// RFC 3986 unreserved characters stay; everything else is %XX.
std::string PercentEncode(absl::string_view text) {
  std::string out;
  for (unsigned char c : text) {
    if (absl::ascii_isalnum(c) || c == '-' || c == '.' || c == '_' ||
        c == '~') {
      out.push_back(static_cast<char>(c));
    } else {
      constexpr char kHex[] = "0123456789ABCDEF";
      out.push_back('%');
      out.push_back(kHex[c >> 4]);
      out.push_back(kHex[c & 15]);
    }
  }
  return out;
}

std::string AppendQuery(absl::string_view url, absl::string_view query) {
  return absl::StrCat(url, absl::StrContains(url, '?') ? "&" : "?", query);
}

std::string ShortDigest(absl::string_view digest) {
  return std::string(digest.substr(0, 19));  // sha256: + 12 hex digits
}

std::string RepositoryScope(absl::string_view repository,
                            absl::string_view actions) {
  return absl::StrCat("repository:", repository, ":", actions);
}

// "code: message" of the first error in a registry's error body, else the
// start of the body on one line.
std::string RegistryErrorText(absl::string_view body) {
  dom::parser parser;
  dom::element root;
  dom::array errors;
  dom::object first;
  if (parser.parse(body.data(), body.size()).get(root) == simdjson::SUCCESS &&
      root["errors"].get_array().get(errors) == simdjson::SUCCESS &&
      errors.at(0).get_object().get(first) == simdjson::SUCCESS) {
    std::string_view code, message;
    if (first["code"].get_string().get(code) != simdjson::SUCCESS) code = "";
    if (first["message"].get_string().get(message) != simdjson::SUCCESS) {
      message = "";
    }
    return absl::StrCat(absl::string_view(code.data(), code.size()), ": ",
                        absl::string_view(message.data(), message.size()));
  }
  std::string text(body.substr(0, 200));
  std::replace_if(text.begin(), text.end(),
                  [](char c) { return c == '\n' || c == '\r'; }, ' ');
  return std::string(absl::StripAsciiWhitespace(text));
}

// "0-1023" (or "bytes=0-1023") -> 1024: the size the registry holds.
uint64_t RangeEndExclusive(absl::string_view range) {
  absl::ConsumePrefix(&range, "bytes=");
  const size_t dash = range.find('-');
  uint64_t end = 0;
  if (dash == absl::string_view::npos ||
      !absl::SimpleAtoi(range.substr(dash + 1), &end)) {
    return 0;
  }
  return end + 1;
}

// A file range as a request body, hashed as it is read when a digest is
// expected: the read that would send the last byte fails instead when the
// content does not match, so the registry never receives a complete (and
// so committable) blob.
class FileBody : public RequestBody {
 public:
  FileBody(int fd, uint64_t offset, uint64_t length,
           std::string expected_digest = "")
      : fd_(fd),
        offset_(offset),
        length_(length),
        expected_digest_(std::move(expected_digest)) {}

  uint64_t size() const override { return length_; }
  absl::Status Rewind() override {
    position_ = 0;
    hash_.Reset();
    return absl::OkStatus();
  }
  absl::StatusOr<size_t> Read(char* buffer, size_t capacity) override {
    const uint64_t want = std::min<uint64_t>(capacity, length_ - position_);
    if (want == 0) return 0;
    const ssize_t n = pread(fd_, buffer, want, offset_ + position_);
    if (n < 0) return absl::ErrnoToStatus(errno, "read blob");
    if (n == 0) return absl::DataLossError("blob file shrank while uploading");
    position_ += n;
    if (!expected_digest_.empty()) {
      hash_.Update(absl::string_view(buffer, n));
      if (position_ == length_) {
        const std::string actual = absl::StrCat("sha256:", hash_.HexDigest());
        if (actual != expected_digest_) {
          return absl::DataLossError(absl::StrCat(
              "local blob ", expected_digest_, " has content ", actual));
        }
      }
    }
    return static_cast<size_t>(n);
  }

 private:
  const int fd_;
  const uint64_t offset_;
  const uint64_t length_;
  const std::string expected_digest_;
  uint64_t position_ = 0;
  Sha256 hash_;
};

absl::Status HashFileInto(int fd, uint64_t size, Sha256* hash) {
  std::string buffer(1 << 20, '\0');
  for (uint64_t offset = 0; offset < size;) {
    const ssize_t n = pread(fd, buffer.data(), buffer.size(), offset);
    if (n < 0) return absl::ErrnoToStatus(errno, "read blob");
    if (n == 0) return absl::DataLossError("blob file shorter than its size");
    hash->Update(absl::string_view(buffer.data(), n));
    offset += n;
  }
  return absl::OkStatus();
}

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

absl::Duration ParseRetryAfter(absl::string_view value) {
  int64_t seconds = 0;
  if (!absl::SimpleAtoi(absl::StripAsciiWhitespace(value), &seconds) ||
      seconds < 0) {
    return absl::ZeroDuration();
  }
  return absl::Seconds(seconds);
}

absl::StatusOr<RegistryOptions> RegistryOptionsFromEnv() {
  RegistryOptions options;
  const char* registry = std::getenv("REGISTRY_URL");
  const char* gitea = std::getenv("GITEA_URL");
  if (registry != nullptr && registry[0] != '\0') {
    options.registry = registry;
  } else if (gitea != nullptr && gitea[0] != '\0') {
    // The Gitea registry lives at the root of Gitea's host.
    absl::string_view url = gitea;
    const size_t scheme_end = url.find("://");
    const size_t path = url.find('/', scheme_end == absl::string_view::npos
                                          ? 0
                                          : scheme_end + 3);
    options.registry = std::string(url.substr(0, path));
  } else {
    return absl::InvalidArgumentError(
        "no registry configured: set REGISTRY_URL (or GITEA_URL)");
  }
  if (const char* user = std::getenv("REGISTRY_USERNAME")) {
    options.username = user;
  }
  CIAGENT_ASSIGN_OR_RETURN(std::optional<std::string> token,
                           ReadSecretFromEnv("REGISTRY_TOKEN"));
  if (token.has_value()) options.password = *std::move(token);
  if (const char* ca = std::getenv("CI_CA_FILE")) options.ca_file = ca;
  return options;
}

absl::StatusOr<RegistryOptions> RegistryOptionsFor(absl::string_view registry) {
  absl::StatusOr<RegistryOptions> env = RegistryOptionsFromEnv();
  if (registry.empty()) return env;
  if (env.ok()) {
    absl::string_view host = env->registry;
    if (const size_t scheme = host.find("://"); scheme != host.npos) {
      host.remove_prefix(scheme + 3);
    }
    if (absl::StripSuffix(host, "/") == registry) return env;
  }
  RegistryOptions options{.registry = std::string(registry)};
  if (const char* ca = std::getenv("CI_CA_FILE")) options.ca_file = ca;
  return options;
}

absl::StatusOr<std::unique_ptr<RegistryClient>> RegistryClient::Create(
    RegistryOptions options) {
  absl::string_view registry = absl::StripSuffix(options.registry, "/");
  std::string scheme;
  if (absl::ConsumePrefix(&registry, "https://")) {
    scheme = "https";
  } else if (absl::ConsumePrefix(&registry, "http://")) {
    scheme = "http";
  } else if (absl::StrContains(registry, "://")) {
    return absl::InvalidArgumentError(absl::StrCat(
        "registry \"", options.registry, "\": only http(s) is supported"));
  }
  if (registry.empty() || registry.find_first_of("/?#@ ") != absl::string_view::npos) {
    return absl::InvalidArgumentError(absl::StrCat(
        "registry \"", options.registry,
        "\": expected host[:port] or http(s)://host[:port], without "
        "path or credentials"));
  }
  if (scheme.empty()) scheme = IsLoopbackHost(registry) ? "http" : "https";
  if (options.max_attempts < 1) options.max_attempts = 1;
  std::string host(registry);  // `registry` points into `options`
  auto client = absl::WrapUnique(new RegistryClient(std::move(options)));
  client->base_url_ = absl::StrCat(scheme, "://", host);
  client->host_ = std::move(host);
  if (client->transport_ == nullptr) {
    client->owned_transport_ =
        MakeCurlTransport({.ca_file = client->options_.ca_file});
    client->transport_ = client->owned_transport_.get();
  }
  return client;
}

RegistryClient::RegistryClient(RegistryOptions options)
    : options_(std::move(options)), transport_(options_.transport) {}

RegistryClient::~RegistryClient() = default;

RegistryStats RegistryClient::stats() const {
  return {.requests = requests_.load(),
          .retries = retries_.load(),
          .token_fetches = token_fetches_.load(),
          .bytes_uploaded = bytes_uploaded_.load()};
}

bool RegistryClient::SameOrigin(absl::string_view url) const {
  if (!absl::ConsumePrefix(&url, base_url_)) return false;
  return url.empty() || url[0] == '/' || url[0] == '?';
}

std::string RegistryClient::ResolveLocation(absl::string_view location) const {
  if (absl::StartsWith(location, "http://") ||
      absl::StartsWith(location, "https://")) {
    return std::string(location);
  }
  if (absl::StartsWith(location, "/")) return absl::StrCat(base_url_, location);
  return absl::StrCat(base_url_, "/", location);
}

void RegistryClient::Sleep(absl::Duration delay) {
  ++retries_;
  SleepUnlessStopped(delay);
}

namespace {

absl::Status HttpError(absl::string_view what, absl::string_view host,
                       const HttpResponse& response, int attempts) {
  std::string message = absl::StrCat(what, ": HTTP ", response.status,
                                     " from ", host);
  if (attempts > 1) absl::StrAppend(&message, " after ", attempts, " attempts");
  if (std::string detail = RegistryErrorText(response.body); !detail.empty()) {
    absl::StrAppend(&message, ": ", detail);
  }
  const int status = response.status;
  if (status == 400) return absl::InvalidArgumentError(message);
  if (status == 401) return absl::UnauthenticatedError(message);
  if (status == 403) return absl::PermissionDeniedError(message);
  if (status == 404) return absl::NotFoundError(message);
  if (status == 413) return absl::ResourceExhaustedError(message);
  if (IsRetryableHttp(status)) return absl::UnavailableError(message);
  return absl::InternalError(message);
}

}  // namespace

absl::StatusOr<HttpResponse> RegistryClient::Execute(Call& call) {
  if (call.authorize) CIAGENT_RETURN_IF_ERROR(EnsurePinged());
  Backoff backoff(options_.backoff);
  const HttpHeaders headers = call.request.headers;
  // A 401 may ask for a scheme switch, then for more scopes, then reject a
  // stale token: three rounds settle any honest registry.
  int auth_rounds = 0;
  for (call.attempts = 1;; ++call.attempts) {
    call.request.headers = headers;
    if (call.authorize && SameOrigin(call.request.url)) {
      CIAGENT_ASSIGN_OR_RETURN(std::string authorization,
                               Authorization(call.scopes));
      if (!authorization.empty()) {
        call.request.headers.emplace_back("Authorization",
                                          std::move(authorization));
      }
    }
    ++requests_;
    absl::StatusOr<HttpResponse> response = transport_->Send(call.request);
    absl::Duration delay;
    if (!response.ok()) {
      if (!call.retry || !IsTransient(response.status()) ||
          call.attempts >= options_.max_attempts) {
        std::string suffix = call.attempts > 1
            ? absl::StrCat(" (after ", call.attempts, " attempts)")
            : "";
        return absl::Status(response.status().code(),
                            absl::StrCat(call.what, ": ",
                                         response.status().message(), suffix));
      }
      delay = backoff.Next();
    } else if (response->status == 401 && call.authorize && auth_rounds < 3) {
      ++auth_rounds;
      CIAGENT_RETURN_IF_ERROR(OnUnauthorized(*response, call));
      --call.attempts;  // not a failure of the registry
      continue;
    } else if (call.retry && IsRetryableHttp(response->status) &&
               call.attempts < options_.max_attempts) {
      delay = std::max(backoff.Next(),
                       std::min(ParseRetryAfter(response->Header("retry-after")),
                                options_.max_retry_after));
    } else {
      return response;
    }
    if (StopRequested()) {
      return absl::CancelledError(absl::StrCat(call.what, ": stopped"));
    }
    Sleep(delay);
  }
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
      return absl::UnauthenticatedError(absl::StrCat(
          call.what, ": ", host_, " requires credentials (set "
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
  return absl::UnauthenticatedError(absl::StrCat(
      call.what, ": HTTP 401 from ", host_, " with no Basic or Bearer "
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
        return absl::StrCat("Basic ",
                            absl::Base64Escape(absl::StrCat(
                                options_.username, ":", options_.password)));
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
        "Authorization",
        absl::StrCat("Basic ", absl::Base64Escape(absl::StrCat(
                                   options_.username, ":", options_.password))));
  }
  ++token_fetches_;
  CIAGENT_ASSIGN_OR_RETURN(HttpResponse response, Execute(call));
  if (response.status == 401 || response.status == 403) {
    return absl::UnauthenticatedError(absl::StrCat(
        call.what, ": HTTP ", response.status, ", credentials of user \"",
        options_.username, "\" rejected (check REGISTRY_USERNAME and "
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

absl::StatusOr<bool> RegistryClient::BlobExists(absl::string_view repository,
                                                absl::string_view digest) {
  Call call{.request = {.method = "HEAD",
                        .url = absl::StrCat(base_url_, "/v2/", repository,
                                            "/blobs/", digest)},
            .scopes = {RepositoryScope(repository, "pull,push")},
            .what = absl::StrCat("check blob ", ShortDigest(digest), " in ",
                                 repository)};
  CIAGENT_ASSIGN_OR_RETURN(HttpResponse response, Execute(call));
  if (response.status == 200) return true;
  if (response.status == 404) return false;
  return HttpError(call.what, host_, response, call.attempts);
}

absl::StatusOr<bool> RegistryClient::MountBlob(absl::string_view repository,
                                               absl::string_view digest,
                                               absl::string_view from) {
  Call call{
      .request = {.method = "POST",
                  .url = absl::StrCat(base_url_, "/v2/", repository,
                                      "/blobs/uploads/?mount=",
                                      PercentEncode(digest),
                                      "&from=", PercentEncode(from))},
      .scopes = {RepositoryScope(repository, "pull,push"),
                 RepositoryScope(from, "pull")},
      .what = absl::StrCat("mount blob ", ShortDigest(digest), " from ", from,
                           " into ", repository)};
  CIAGENT_ASSIGN_OR_RETURN(HttpResponse response, Execute(call));
  if (response.status == 201) return true;
  if (response.status != 202) {
    return HttpError(call.what, host_, response, call.attempts);
  }
  // Not mounted: the registry opened an upload instead. Close it; the
  // caller uploads through its own session.
  if (std::string location = response.Header("location"); !location.empty()) {
    Call cancel{.request = {.method = "DELETE",
                            .url = ResolveLocation(location)},
                .scopes = call.scopes,
                .retry = false,
                .what = "cancel upload"};
    (void)Execute(cancel);
  }
  return false;
}

absl::StatusOr<std::string> RegistryClient::StartUpload(
    absl::string_view repository, absl::string_view digest) {
  Call call{.request = {.method = "POST",
                        .url = absl::StrCat(base_url_, "/v2/", repository,
                                            "/blobs/uploads/")},
            .scopes = {RepositoryScope(repository, "pull,push")},
            .what = absl::StrCat("start upload of blob ", ShortDigest(digest),
                                 " to ", repository)};
  CIAGENT_ASSIGN_OR_RETURN(HttpResponse response, Execute(call));
  if (response.status != 202) {
    return HttpError(call.what, host_, response, call.attempts);
  }
  const std::string location = response.Header("location");
  if (location.empty()) {
    return absl::InternalError(absl::StrCat(call.what, ": ", host_,
                                            " answered 202 without Location"));
  }
  return ResolveLocation(location);
}

absl::Status RegistryClient::UploadBlob(absl::string_view repository,
                                        const BlobFile& blob) {
  const std::string what = absl::StrCat("push blob ", ShortDigest(blob.digest),
                                        " to ", host_, "/", repository);
  if (!IsValidDigest(blob.digest)) {
    return absl::InvalidArgumentError(
        absl::StrCat(what, ": not a sha256 digest"));
  }
  const int fd = open(blob.path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    return absl::DataLossError(absl::StrCat(what, ": cannot open ", blob.path,
                                            ": ", std::strerror(errno)));
  }
  absl::Cleanup close_fd = [fd] { close(fd); };
  struct stat st {};
  if (fstat(fd, &st) != 0 || static_cast<uint64_t>(st.st_size) != blob.size) {
    return absl::DataLossError(absl::StrCat(
        what, ": ", blob.path, " has ", st.st_size, " bytes, the descriptor says ",
        blob.size));
  }
  absl::Status status =
      options_.chunk_bytes > 0
          ? UploadChunked(repository, blob, fd, options_.chunk_bytes)
          : UploadMonolithic(repository, blob, fd);
  if (status.code() == absl::StatusCode::kResourceExhausted &&
      options_.chunk_bytes == 0) {
    // 413: a proxy in front of the registry limits request bodies.
    status = UploadChunked(repository, blob, fd, options_.fallback_chunk_bytes);
  }
  return status;
}

absl::Status RegistryClient::UploadMonolithic(absl::string_view repository,
                                              const BlobFile& blob, int fd) {
  FileBody body(fd, 0, blob.size, blob.digest);
  Backoff backoff(options_.backoff);
  for (int attempt = 1;; ++attempt) {
    CIAGENT_ASSIGN_OR_RETURN(std::string location,
                             StartUpload(repository, blob.digest));
    Call call{
        .request = {.method = "PUT",
                    .url = AppendQuery(location, absl::StrCat(
                        "digest=", PercentEncode(blob.digest))),
                    .headers = {{"Content-Type", "application/octet-stream"}},
                    .body_stream = &body},
        .scopes = {RepositoryScope(repository, "pull,push")},
        .retry = false,
        .what = absl::StrCat("push blob ", ShortDigest(blob.digest), " to ",
                             repository)};
    absl::StatusOr<HttpResponse> response = Execute(call);
    absl::Duration delay = backoff.Next();
    if (!response.ok()) {
      if (response.status().code() == absl::StatusCode::kAborted) {
        return absl::DataLossError(response.status().message());
      }
      if (!IsTransient(response.status()) ||
          attempt >= options_.max_attempts) {
        return Annotate(response.status(),
                        absl::StrCat("after ", attempt, " attempts"));
      }
    } else if (response->status == 201) {
      bytes_uploaded_ += blob.size;
      return absl::OkStatus();
    } else if (!IsRetryableHttp(response->status) ||
               attempt >= options_.max_attempts) {
      return HttpError(call.what, host_, *response, attempt);
    } else {
      delay = std::max(delay, std::min(ParseRetryAfter(
                                           response->Header("retry-after")),
                                       options_.max_retry_after));
    }
    if (StopRequested()) {
      return absl::CancelledError(absl::StrCat(call.what, ": stopped"));
    }
    Sleep(delay);
  }
}

absl::Status RegistryClient::UploadChunked(absl::string_view repository,
                                           const BlobFile& blob, int fd,
                                           uint64_t chunk) {
  const std::string what = absl::StrCat(
      "push blob ", ShortDigest(blob.digest), " to ", repository, " (chunked)");
  // Chunks are resent individually, so the digest is checked up front.
  Sha256 hash;
  CIAGENT_RETURN_IF_ERROR(HashFileInto(fd, blob.size, &hash));
  if (const std::string actual = absl::StrCat("sha256:", hash.HexDigest());
      actual != blob.digest) {
    return absl::DataLossError(absl::StrCat(
        what, ": local blob ", blob.digest, " has content ", actual));
  }
  CIAGENT_ASSIGN_OR_RETURN(std::string location,
                           StartUpload(repository, blob.digest));
  const std::vector<std::string> scopes = {
      RepositoryScope(repository, "pull,push")};
  Backoff backoff(options_.backoff);
  int failures = 0;
  uint64_t acknowledged = 0;  // bytes the registry confirmed holding
  for (uint64_t offset = 0; offset < blob.size;) {
    const uint64_t n = std::min(chunk, blob.size - offset);
    FileBody body(fd, offset, n);
    Call call{
        .request = {.method = "PATCH",
                    .url = location,
                    .headers = {{"Content-Type", "application/octet-stream"},
                                {"Content-Range",
                                 absl::StrCat(offset, "-", offset + n - 1)}},
                    .body_stream = &body},
        .scopes = scopes,
        .retry = false,
        .what = what};
    absl::StatusOr<HttpResponse> response = Execute(call);
    if (response.ok() && response->status == 202) {
      bytes_uploaded_ += n;
      if (std::string next = response->Header("location"); !next.empty()) {
        location = ResolveLocation(next);
      }
      const std::string range = response->Header("range");
      offset = range.empty() ? offset + n : RangeEndExclusive(range);
      acknowledged = offset;
      continue;
    }
    const bool resync = response.ok() && response->status == 416;
    const bool transient = response.ok() ? IsRetryableHttp(response->status)
                                         : IsTransient(response.status());
    if (!resync && !transient) {
      return response.ok() ? HttpError(what, host_, *response, failures + 1)
                           : response.status();
    }
    if (++failures >= options_.max_attempts) {
      return response.ok() ? HttpError(what, host_, *response, failures)
                           : Annotate(response.status(),
                                      absl::StrCat("after ", failures,
                                                   " attempts"));
    }
    if (!resync) Sleep(backoff.Next());
    // Ask where the upload stands and go on from there.
    Call status_call{.request = {.url = location},
                     .scopes = scopes,
                     .what = absl::StrCat(what, ": upload status")};
    CIAGENT_ASSIGN_OR_RETURN(HttpResponse status, Execute(status_call));
    if (status.status != 204 && status.status != 202) {
      return HttpError(status_call.what, host_, status, status_call.attempts);
    }
    if (std::string next = status.Header("location"); !next.empty()) {
      location = ResolveLocation(next);
    }
    // "0-0" means zero bytes as well as one (distribution writes 0-0 for
    // an empty upload); what the registry acknowledged before decides.
    const uint64_t held = RangeEndExclusive(status.Header("range"));
    offset = held == 1 && acknowledged == 0 ? 0 : held;
  }
  Call finish{.request = {.method = "PUT",
                          .url = AppendQuery(location, absl::StrCat(
                              "digest=", PercentEncode(blob.digest))),
                          .headers = {{"Content-Type",
                                       "application/octet-stream"}}},
              .scopes = scopes,
              .what = absl::StrCat(what, ": finish")};
  CIAGENT_ASSIGN_OR_RETURN(HttpResponse response, Execute(finish));
  if (response.status != 201) {
    return HttpError(finish.what, host_, response, finish.attempts);
  }
  return absl::OkStatus();
}

absl::StatusOr<std::string> RegistryClient::PutManifest(
    absl::string_view repository, absl::string_view reference,
    absl::string_view media_type, absl::string_view bytes) {
  const std::string digest = absl::StrCat("sha256:", Sha256Hex(bytes));
  Call call{.request = {.method = "PUT",
                        .url = absl::StrCat(base_url_, "/v2/", repository,
                                            "/manifests/", reference),
                        .headers = {{"Content-Type", std::string(media_type)}},
                        .body = std::string(bytes)},
            .scopes = {RepositoryScope(repository, "pull,push")},
            .what = absl::StrCat("push manifest ", ShortDigest(digest), " as ",
                                 repository, ":", reference)};
  CIAGENT_ASSIGN_OR_RETURN(HttpResponse response, Execute(call));
  if (response.status != 201) {
    return HttpError(call.what, host_, response, call.attempts);
  }
  if (std::string answered = response.Header("docker-content-digest");
      !answered.empty() && answered != digest) {
    return absl::DataLossError(absl::StrCat(
        call.what, ": ", host_, " stored it as ", answered));
  }
  return digest;
}

absl::StatusOr<std::string> RegistryClient::ManifestDigest(
    absl::string_view repository, absl::string_view reference) {
  Call call{.request = {.method = "HEAD",
                        .url = absl::StrCat(base_url_, "/v2/", repository,
                                            "/manifests/", reference),
                        .headers = {{"Accept",
                                     absl::StrJoin({kOciIndex, kOciManifest,
                                                    kDockerManifestList,
                                                    kDockerManifest},
                                                   ", ")}}},
            .scopes = {RepositoryScope(repository, "pull")},
            .what = absl::StrCat("look up ", repository, ":", reference)};
  CIAGENT_ASSIGN_OR_RETURN(HttpResponse response, Execute(call));
  if (response.status != 200) {
    return HttpError(call.what, host_, response, call.attempts);
  }
  std::string digest = response.Header("docker-content-digest");
  if (!IsValidDigest(digest)) {
    return absl::InternalError(absl::StrCat(
        call.what, ": ", host_, " sent no valid Docker-Content-Digest"));
  }
  return digest;
}

absl::StatusOr<std::vector<std::string>> RegistryClient::ListTags(
    absl::string_view repository) {
  Call call{.request = {.url = absl::StrCat(base_url_, "/v2/", repository,
                                            "/tags/list")},
            .scopes = {RepositoryScope(repository, "pull")},
            .what = absl::StrCat("list tags of ", repository)};
  CIAGENT_ASSIGN_OR_RETURN(HttpResponse response, Execute(call));
  if (response.status != 200) {
    return HttpError(call.what, host_, response, call.attempts);
  }
  dom::parser parser;
  dom::element root;
  if (parser.parse(response.body).get(root) != simdjson::SUCCESS) {
    return absl::InternalError(absl::StrCat(call.what, ": answer is not JSON"));
  }
  std::vector<std::string> tags;
  dom::array array;
  if (root["tags"].get_array().get(array) == simdjson::SUCCESS) {
    for (dom::element element : array) {
      std::string_view tag;
      if (element.get_string().get(tag) == simdjson::SUCCESS) {
        tags.emplace_back(tag);
      }
    }
  }
  return tags;
}

}  // namespace ciagent::oci
