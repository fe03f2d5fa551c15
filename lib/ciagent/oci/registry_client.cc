#include "ciagent/oci/registry_client.h"

#include <simdjson.h>

#include <algorithm>
#include <cstdlib>
#include <fstream>
#include <iterator>

#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/strip.h"
#include "ciagent/base/secret.h"
#include "ciagent/base/sha256.h"
#include "ciagent/base/status_macros.h"
#include "ciagent/base/stop_signal.h"
#include "ciagent/oci/internal/registry_call.h"
#include "ciagent/oci/manifest.h"
#include "ciagent/oci/reference.h"

namespace ciagent::oci {
namespace {

namespace dom = simdjson::dom;
using internal::HttpError;
using internal::IsRetryableHttp;
using internal::PercentEncode;
using internal::RepositoryScope;
using internal::ShortDigest;

bool IsLoopbackHost(absl::string_view host) {
  // host[:port], or [v6]:port.
  if (absl::StartsWith(host, "[::1]")) return true;
  host = host.substr(0, host.rfind(':') == absl::string_view::npos
                            ? host.size()
                            : host.rfind(':'));
  return host == "localhost" || host == "::1" || absl::StartsWith(host, "127.");
}

}  // namespace

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
    const size_t path = url.find(
        '/', scheme_end == absl::string_view::npos ? 0 : scheme_end + 3);
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
  const char* auth_file = std::getenv("REGISTRY_AUTH_FILE");
  if (auth_file == nullptr || auth_file[0] == '\0') return options;
  std::ifstream in(auth_file, std::ios::binary);
  std::string json((std::istreambuf_iterator<char>(in)),
                   std::istreambuf_iterator<char>());
  if (!in.good() && !in.eof()) {
    return absl::InvalidArgumentError(
        absl::StrCat("REGISTRY_AUTH_FILE ", auth_file, ": cannot read it"));
  }
  absl::StatusOr<std::optional<RegistryCredentials>> credentials =
      CredentialsFromAuthJson(json, registry);
  if (!credentials.ok()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "REGISTRY_AUTH_FILE ", auth_file, ": ", credentials.status().message()));
  }
  if (credentials->has_value()) {
    options.username = (*credentials)->username;
    options.password = (*credentials)->password;
  }
  return options;
}

absl::StatusOr<std::optional<RegistryCredentials>> CredentialsFromAuthJson(
    absl::string_view json, absl::string_view host) {
  dom::parser parser;
  dom::object auths;
  if (parser.parse(json.data(), json.size())["auths"].get_object().get(auths) !=
      simdjson::SUCCESS) {
    return absl::InvalidArgumentError("not an auth file: no \"auths\" object");
  }
  for (const std::string& key :
       {std::string(host), absl::StrCat("https://", host),
        absl::StrCat("http://", host), absl::StrCat("https://", host, "/v2/"),
        absl::StrCat("http://", host, "/v2/")}) {
    dom::object entry;
    if (auths[key].get_object().get(entry) != simdjson::SUCCESS) continue;
    const std::string what = absl::StrCat("entry \"", key, "\"");
    std::string_view auth, username, password;
    if (entry["auth"].get_string().get(auth) == simdjson::SUCCESS &&
        !auth.empty()) {
      std::string decoded;
      if (!absl::Base64Unescape(absl::string_view(auth.data(), auth.size()),
                                &decoded) ||
          decoded.find(':') == std::string::npos) {
        return absl::InvalidArgumentError(absl::StrCat(
            what, ": \"auth\" is not base64 of user:password"));
      }
      const size_t colon = decoded.find(':');
      return RegistryCredentials{.username = decoded.substr(0, colon),
                                 .password = decoded.substr(colon + 1)};
    }
    if (entry["username"].get_string().get(username) == simdjson::SUCCESS &&
        entry["password"].get_string().get(password) == simdjson::SUCCESS) {
      return RegistryCredentials{.username = std::string(username),
                                 .password = std::string(password)};
    }
    return absl::InvalidArgumentError(
        absl::StrCat(what, ": neither \"auth\" nor username and password"));
  }
  return std::nullopt;
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
  if (registry.empty() ||
      registry.find_first_of("/?#@ ") != absl::string_view::npos) {
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
          .bytes_uploaded = bytes_uploaded_.load(),
          .bytes_downloaded = bytes_downloaded_.load()};
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
        std::string suffix =
            call.attempts > 1
                ? absl::StrCat(" (after ", call.attempts, " attempts)")
                : "";
        return absl::Status(
            response.status().code(),
            absl::StrCat(call.what, ": ", response.status().message(), suffix));
      }
      delay = backoff.Next();
    } else if (response->status == 401 && call.authorize && auth_rounds < 3) {
      ++auth_rounds;
      CIAGENT_RETURN_IF_ERROR(OnUnauthorized(*response, call));
      --call.attempts;  // not a failure of the registry
      continue;
    } else if (call.retry && IsRetryableHttp(response->status) &&
               call.attempts < options_.max_attempts) {
      delay =
          std::max(backoff.Next(),
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
  Call call{.request = {.method = "POST",
                        .url = absl::StrCat(
                            base_url_, "/v2/", repository,
                            "/blobs/uploads/?mount=", PercentEncode(digest),
                            "&from=", PercentEncode(from))},
            .scopes = {RepositoryScope(repository, "pull,push"),
                       RepositoryScope(from, "pull")},
            .what = absl::StrCat("mount blob ", ShortDigest(digest), " from ",
                                 from, " into ", repository)};
  CIAGENT_ASSIGN_OR_RETURN(HttpResponse response, Execute(call));
  if (response.status == 201) return true;
  if (response.status != 202) {
    return HttpError(call.what, host_, response, call.attempts);
  }
  // Not mounted: the registry opened an upload instead. Close it; the
  // caller uploads through its own session.
  if (std::string location = response.Header("location"); !location.empty()) {
    Call cancel{
        .request = {.method = "DELETE", .url = ResolveLocation(location)},
        .scopes = call.scopes,
        .retry = false,
        .what = "cancel upload"};
    (void)Execute(cancel);
  }
  return false;
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
    return absl::DataLossError(
        absl::StrCat(call.what, ": ", host_, " stored it as ", answered));
  }
  return digest;
}

absl::StatusOr<std::string> RegistryClient::ManifestDigest(
    absl::string_view repository, absl::string_view reference) {
  Call call{
      .request = {.method = "HEAD",
                  .url = absl::StrCat(base_url_, "/v2/", repository,
                                      "/manifests/", reference),
                  .headers = {{"Accept", internal::ManifestAccept()}}},
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
