// Container registries for integration tests: the real CNCF distribution
// registry, a fault-injecting proxy in front of one, and a registry with
// Gitea's protocol quirks.
//
// RegistryServer runs `docker-registry serve` (distribution 2.8) on a free
// 127.0.0.1 port with filesystem storage in its own temporary directory,
// stopped and removed when the object dies. Authentication is none, HTTP
// Basic (htpasswd) or Bearer tokens from a real token service
// (registry_token_server.py) whose JWTs the registry verifies; optionally
// over HTTPS with a CA made for the server alone.
//
//   RegistryServerOptions options;
//   options.auth = RegistryServerOptions::Auth::kToken;
//   CIAGENT_START_REGISTRY(registry, options);   // in a TEST body or SetUp()
//   // push to registry->host() + "/app:1" as options.username/password ...
//   EXPECT_NE(registry->BlobPath(digest), "");
//   EXPECT_EQ(registry->token_requests(), 1);
//
// FaultProxy sits between a client and an http:// registry and answers a
// seeded, reproducible fraction of the requests with 500, 503, 429 or a
// connection reset instead of forwarding them:
//
//   CIAGENT_START_FAULT_PROXY(proxy, {.upstream = registry->url(),
//                                     .fault_rate = 0.3});
//   // push through proxy->url(); then proxy->faults_injected() > 0
//
// QuirksRegistry (registry_quirks_server.py) is a small, complete registry
// that answers as Gitea's does where distribution differs: token without
// expires_in from /v2/token, relative upload Locations without a query, 416
// for a PATCH without Content-Range after the first write.
//
// When a tool is missing (docker-registry, /usr/bin/python3 with the jwt and
// cryptography modules, openssl for HTTPS or tokens) the macros skip the
// test, except under CI=true, where that is a failure.
//
// Secrets: passwords go to mode-0600 files (the htpasswd file holds a
// bcrypt hash), never to argv; request logs hold method, path and status.
//
// Thread-safety: none; use each object from the test's thread. Clients may
// make concurrent requests to the services.
#ifndef CIAGENT_TESTS_TESTING_REGISTRY_SERVER_H_
#define CIAGENT_TESTS_TESTING_REGISTRY_SERVER_H_

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "testing/subprocess.h"

namespace ciagent::testing {

struct RegistryServerOptions {
  enum class Auth {
    kNone,
    // HTTP Basic against an htpasswd file: 401 with
    // `WWW-Authenticate: Basic realm="ciagent-test-registry"` without it.
    kBasic,
    // Bearer tokens: 401 with `WWW-Authenticate: Bearer realm=
    // "http(s)://127.0.0.1:<token port>/token",service="ciagent-test-registry"`;
    // the realm wants HTTP Basic with username/password and grants what the
    // scopes ask for.
    kToken,
  };
  Auth auth = Auth::kNone;
  // Credentials for kBasic and kToken; the user may not contain ':', neither
  // may hold a newline.
  std::string username = "ci";
  std::string password = "s3cret-registry-pass";
  // Serve HTTPS (the token service too) with a certificate for 127.0.0.1 /
  // localhost signed by a CA made for this server alone; see ca_file().
  bool https = false;
  // kToken: `expires_in` announced with each token (and its JWT lifetime).
  // distribution still accepts a token up to 60 s after its `exp` (its
  // clock-skew leeway), so a refresh test should count token_requests()
  // rather than wait for the registry to refuse an old token.
  int token_expires_in_s = 300;
  // kToken: leave `expires_in` out of the answer, as Gitea does; the JWT
  // then expires after 60 s.
  bool token_omit_expires_in = false;
};

class RegistryServer {
 public:
  // kNotFound when docker-registry, /usr/bin/python3 (kToken, with the jwt
  // and cryptography modules) or openssl (kToken, https) is not installed;
  // kFailedPrecondition when a helper script cannot be found (set
  // CIAGENT_REGISTRY_TOKEN_SERVER to registry_token_server.py).
  static absl::StatusOr<std::unique_ptr<RegistryServer>> Start(
      RegistryServerOptions options = {});
  ~RegistryServer();

  RegistryServer(const RegistryServer&) = delete;
  RegistryServer& operator=(const RegistryServer&) = delete;

  const RegistryServerOptions& options() const { return options_; }
  int port() const { return port_; }
  // "http(s)://127.0.0.1:<port>", no trailing slash.
  std::string url() const;
  // "127.0.0.1:<port>", the registry part of an image reference.
  std::string host() const;
  // PEM certificate of the CA that signed the server's (and the token
  // service's) certificate; empty without https.
  const std::string& ca_file() const { return ca_file_; }
  // Root of the registry's filesystem storage.
  std::string storage_dir() const;
  // The data file of blob `digest` ("sha256:<hex>") in the storage, or ""
  // when the registry does not hold it.
  std::string BlobPath(absl::string_view digest) const;
  // kToken: token requests the realm has answered (any status), across
  // restarts; 0 for other modes.
  int token_requests() const;
  // One line per request the registry served, `<method> <path?query>
  // <status>`, across restarts (from distribution's access log). A line is
  // written once its response is complete, so the latest one may show up a
  // moment after the client got its answer.
  std::string RequestLog() const;

  // Graceful stop (SIGTERM) of the registry and the token service; clients
  // then get "connection refused".
  absl::Status Stop();
  // Serves again on the same ports, storage, certificates and credentials;
  // uploads begun before Stop() can be continued. kUnavailable if a port
  // was taken meanwhile.
  absl::Status StartAgain();

 private:
  RegistryServer() = default;
  absl::Status Launch();
  absl::Status LaunchTokenServer();
  absl::Status WriteConfig();

  RegistryServerOptions options_;
  std::string dir_;
  std::string ca_file_;
  std::string tls_cert_;
  std::string tls_key_;
  std::string token_script_;
  int port_ = 0;
  int token_port_ = 0;
  std::unique_ptr<Subprocess> registry_;
  std::unique_ptr<Subprocess> token_server_;
};

struct FaultProxyOptions {
  // http://host:port of the server to forward to, e.g. registry->url().
  std::string upstream;
  // Fraction (0..1) of requests answered with a fault instead of forwarded.
  double fault_rate = 0.2;
  // Seed of the fault sequence: a client making requests one at a time sees
  // the same faults on every run.
  int seed = 1;
  // Retry-After (seconds) sent with 429 and 503.
  int retry_after_s = 1;
  // The fault kinds are drawn uniformly from 500, 503 (+Retry-After), 429
  // (+Retry-After) and, when this is set, a connection reset: the request
  // head is read, then the connection closed with a TCP RST, no response.
  bool reset_connections = true;
  // Only requests with these methods (e.g. {"PUT", "PATCH"}) may be
  // faulted; empty: all.
  std::vector<std::string> methods;
};

// Streams bodies both ways (request bodies with Content-Length or chunked),
// keeps client connections alive, rewrites Location headers that name the
// upstream to name the proxy, and passes every other end-to-end header
// (WWW-Authenticate included) through. A faulted request's body is read and
// discarded before a 5xx/429 answer.
class FaultProxy {
 public:
  // kNotFound when /usr/bin/python3 is missing; kInvalidArgument for an
  // upstream that is not http://host:port or a rate outside [0, 1];
  // kFailedPrecondition when registry_fault_proxy.py cannot be found (set
  // CIAGENT_REGISTRY_FAULT_PROXY to its path).
  static absl::StatusOr<std::unique_ptr<FaultProxy>> Start(
      FaultProxyOptions options);
  ~FaultProxy();

  FaultProxy(const FaultProxy&) = delete;
  FaultProxy& operator=(const FaultProxy&) = delete;

  int port() const { return port_; }
  // "http://127.0.0.1:<port>"; host() is "127.0.0.1:<port>".
  std::string url() const;
  std::string host() const;
  // Requests faulted so far / all requests received so far (faulted or
  // forwarded). Up to date once the client has its answer.
  int faults_injected() const;
  int requests_seen() const;
  // One line per request: `<method> <path?query> <status>`, the status
  // followed by " injected" for a fault, or `reset` for a reset.
  std::string RequestLog() const;

 private:
  FaultProxy() = default;
  absl::Status Launch();
  // {requests seen, faults injected} from the proxy's state file.
  std::pair<int, int> Counters() const;

  FaultProxyOptions options_;
  std::string script_;
  std::string dir_;
  int port_ = 0;
  std::unique_ptr<Subprocess> process_;
};

struct QuirksRegistryOptions {
  // Credentials /v2/token wants (HTTP Basic) before it issues a token; the
  // user may not contain ':', neither may hold a newline.
  std::string username = "ci";
  std::string password = "s3cret-registry-pass";
  // Status refusing a PATCH without Content-Range after the first write
  // (error code BLOB_UPLOAD_INVALID either way). Gitea's source answers 400
  // there; 416 is what clients are told to expect, so both are worth a test.
  int stream_patch_status = 416;
};

// A registry speaking like Gitea's, over http:
//  - `GET /v2/` without a token: 401, `WWW-Authenticate: Bearer realm=
//    "http://127.0.0.1:<port>/v2/token",service="container_registry",
//    scope="*"`; /v2/token answers {"token": ...} with no expires_in.
//    Every other request needs `Authorization: Bearer <that token>`.
//  - POST .../blobs/uploads/ → 202, `Location: /v2/<name>/blobs/uploads/
//    <uuid>` (relative, no query); `?mount=&from=` → 201 when `from` has
//    the blob, else a new upload (202); `?digest=` uploads monolithically.
//  - PATCH with `Content-Range: <start>-<end>` → 202 + `Range: 0-<end>`;
//    start != current size → 416 + Range; no Content-Range → accepted only
//    as the first write, refused after that (416, or
//    stream_patch_status). GET <upload> → 204 + Range.
//  - PUT <upload>?digest= (optional last piece) → 201, or 400
//    DIGEST_INVALID; manifests are checked for missing blobs / child
//    manifests (400 MANIFEST_BLOB_UNKNOWN); tags/list.
// Blobs are visible in a repository once uploaded to or mounted into it.
class QuirksRegistry {
 public:
  // kNotFound when /usr/bin/python3 is missing; kFailedPrecondition when
  // registry_quirks_server.py cannot be found (set
  // CIAGENT_REGISTRY_QUIRKS_SERVER to its path).
  static absl::StatusOr<std::unique_ptr<QuirksRegistry>> Start(
      QuirksRegistryOptions options = {});
  ~QuirksRegistry();

  QuirksRegistry(const QuirksRegistry&) = delete;
  QuirksRegistry& operator=(const QuirksRegistry&) = delete;

  int port() const { return port_; }
  // "http://127.0.0.1:<port>"; host() is "127.0.0.1:<port>".
  std::string url() const;
  std::string host() const;
  // One line per request: `<method> <path?query> <status>`; never an
  // Authorization value or a token.
  std::string RequestLog() const;

 private:
  QuirksRegistry() = default;
  absl::Status Launch();

  QuirksRegistryOptions options_;
  std::string script_;
  std::string dir_;
  int port_ = 0;
  std::unique_ptr<Subprocess> process_;
};

}  // namespace ciagent::testing

// Each macro declares `var` (a std::unique_ptr) and starts the service with
// the options given as `...`: a variable, a braced initializer such as
// {.auth = RegistryServerOptions::Auth::kBasic, .https = true} (commas and
// all), or nothing (not for the proxy, which needs an upstream). A missing
// tool skips the test unless CI=true; any other error fails it.
#define CIAGENT_START_REGISTRY(var, ...) \
  CIAGENT_TESTING_START_SERVICE_(RegistryServer, var, __VA_ARGS__)
#define CIAGENT_START_FAULT_PROXY(var, ...) \
  CIAGENT_TESTING_START_SERVICE_(FaultProxy, var, __VA_ARGS__)
#define CIAGENT_START_QUIRKS_REGISTRY(var, ...) \
  CIAGENT_TESTING_START_SERVICE_(QuirksRegistry, var, __VA_ARGS__)

#endif  // CIAGENT_TESTS_TESTING_REGISTRY_SERVER_H_
