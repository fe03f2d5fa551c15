// Module `oci` (docs/architecture.md, "Layers") owns OCI registries:
// references, manifests, auth challenges and tokens, blob and manifest
// uploads, pushing an image layout. It must not know about how an image is
// built, and the job: it pushes what it is given.
//
// RegistryClient: the OCI distribution API of one registry, with its auth
// and its retries. The building block of PushLayout and PushImage (push.h);
// usable on its own by services embedding libciagent. It pushes (blobs,
// mounts, manifests) and pulls (GetManifest, DownloadBlob, ReadBlob).
//
//   CIAGENT_ASSIGN_OR_RETURN(RegistryOptions options,
//   RegistryOptionsFromEnv()); CIAGENT_ASSIGN_OR_RETURN(auto client,
//   RegistryClient::Create(options)); CIAGENT_ASSIGN_OR_RETURN(bool present,
//   client->BlobExists("owner/app", d)); if (!present)
//   CIAGENT_RETURN_IF_ERROR(client->UploadBlob("owner/app", blob));
//   CIAGENT_ASSIGN_OR_RETURN(std::string digest,
//       client->PutManifest("owner/app", "v1", kOciManifest, bytes));
//
// Auth. The first request pings /v2/. A 401 challenge selects the scheme:
// Basic sends the credentials with every request; Bearer (Gitea, Harbor,
// distribution's token auth) fetches a token from the challenge's realm for
// `repository:<name>:pull,push` with the credentials, caches it per scope
// set until shortly before `expires_in` (60 s when absent), and on an
// `insufficient_scope` challenge merges the scopes it names and fetches
// again. Authorization is sent only to the registry's own scheme://host:port
// (never to an upload Location on another host); the token realm gets the
// username and password, as the protocol requires.
//
// Retries. Connection failures, 408, 429 and 5xx are retried up to
// `max_attempts` with jittered exponential backoff, waiting at least the
// server's Retry-After (capped at `max_retry_after`). A blob upload retried
// after a failure starts a new upload session.
//
// Uploads stream the file from disk (never loaded into memory), hashing it
// on the way: a file whose content does not match its digest aborts the
// request before its last byte, so a registry never commits it. Monolithic
// (one PUT) by default, the fastest; chunked (PATCH with Content-Range,
// following the newest Location, resynchronising on 416) when `chunk_bytes`
// is set, or after a registry refuses a monolithic upload with 413.
//
// Pulls. Manifests are asked for with all four manifest media types
// (manifest.h) in Accept and checked against the digest asked for and the
// registry's Docker-Content-Digest. Blobs are fetched with Range requests of
// `download_range_bytes`, each written to the destination file as it
// arrives (memory stays bounded whatever the blob's size) and hashed on the
// way; a blob not matching its digest or size is removed and kDataLoss
// returned. Redirects (a registry serving blobs from object storage) are
// followed without the registry's Authorization.
//
// Errors; messages name the operation, the object and the registry host:
//   kUnavailable        gave up after retries (connection, 408, 429, 5xx):
//                       retry later, e.g. requeue the job.
//   kUnauthenticated    credentials missing or rejected: final.
//   kPermissionDenied   authenticated but not allowed (403, denied): final.
//   kNotFound           unknown repository, blob or manifest (where asked).
//   kDataLoss           a local blob does not match its digest or size.
//   kInvalidArgument    the registry rejected what was sent (400: invalid
//                       manifest, unknown blob in a manifest): final.
//   kResourceExhausted  413 even for chunked uploads (a proxy's size limit).
//   kFailedPrecondition TLS verification failed: configure the CA file.
//   kInternal           an answer that breaks the protocol.
//
// Thread-safety: all methods may be called concurrently; PushLayout does,
// one thread per blob. The token cache is shared.
#ifndef CIAGENT_OCI_REGISTRY_CLIENT_H_
#define CIAGENT_OCI_REGISTRY_CLIENT_H_

#include <atomic>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "ciagent/base/backoff.h"
#include "ciagent/net/http.h"
#include "ciagent/oci/manifest.h"

namespace ciagent::oci {

struct RegistryOptions {
  // "https://host[:port]", "http://host[:port]" or "host[:port]". Without a
  // scheme: https, except plain http for loopback hosts (127.0.0.0/8,
  // localhost, ::1). Plain http to another host only when written out.
  std::string registry;
  // Credentials for Basic auth and for the token realm; the password may
  // be a token (Gitea: a personal access token). Never logged.
  std::string username;
  std::string password;
  // PEM CA bundle trusted instead of the system's; empty: system.
  std::string ca_file;
  int max_attempts = 5;
  BackoffOptions backoff = {.initial = absl::Milliseconds(250),
                            .max = absl::Seconds(8)};
  absl::Duration max_retry_after = absl::Seconds(30);
  // 0: monolithic uploads; else chunked uploads of this many bytes.
  uint64_t chunk_bytes = 0;
  // Chunk size after a 413 to a monolithic upload.
  uint64_t fallback_chunk_bytes = 8 << 20;
  // Bytes per Range request of a blob download; at most the transport's
  // max_response_bytes (4 MiB for the curl transport).
  uint64_t download_range_bytes = 4 << 20;
  // The HTTP seam; null: libcurl with `ca_file`. Not owned.
  HttpTransport* transport = nullptr;
};

// REGISTRY_URL (else the scheme://host[:port] of GITEA_URL),
// REGISTRY_USERNAME, REGISTRY_TOKEN or REGISTRY_TOKEN_FILE, CI_CA_FILE.
// kInvalidArgument when neither URL variable is set; the token's absence is
// not an error (anonymous push).
absl::StatusOr<RegistryOptions> RegistryOptionsFromEnv();

// The options for `registry` ("host[:port]", from an image reference):
// RegistryOptionsFromEnv() when the environment names that same host, else
// the bare host with CI_CA_FILE and the credentials REGISTRY_AUTH_FILE holds
// for exactly that host, if any -- a token is never offered to a registry it
// was not configured for. An empty `registry` means the environment's.
// REGISTRY_AUTH_FILE is the containers' auth.json (what `skopeo login`,
// `buildah login` and `docker login` write), e.g. for a base image's
// registry: {"auths": {"registry.example.com": {"auth": "<base64 user:pw>"}}};
// an unreadable or malformed file is kInvalidArgument.
absl::StatusOr<RegistryOptions> RegistryOptionsFor(absl::string_view registry);

struct RegistryCredentials {
  std::string username;
  std::string password;
};
// The credentials an auth.json document (`json`) holds for `host`: the
// entry named "host", "http(s)://host" or "http(s)://host/v2/"; its "auth"
// (base64 of user:password) or "username" and "password". nullopt when
// there is none; kInvalidArgument when the document or the entry is
// malformed (the message never holds a secret). Pure.
absl::StatusOr<std::optional<RegistryCredentials>> CredentialsFromAuthJson(
    absl::string_view json, absl::string_view host);

// A blob on local disk.
struct BlobFile {
  std::string digest;  // sha256:<hex>
  uint64_t size = 0;
  std::string path;
};

// Counters over the client's life.
struct RegistryStats {
  int64_t requests = 0;
  int64_t retries = 0;
  int64_t token_fetches = 0;
  int64_t bytes_uploaded = 0;    // request body bytes of blob uploads
  int64_t bytes_downloaded = 0;  // blob bytes received
};

class RegistryClient {
 public:
  // Validates the options; no network access yet.
  static absl::StatusOr<std::unique_ptr<RegistryClient>> Create(
      RegistryOptions options);
  ~RegistryClient();

  // "http(s)://host[:port]" and "host[:port]".
  const std::string& base_url() const { return base_url_; }
  const std::string& host() const { return host_; }

  // GET /v2/: the registry is there and, if it wants auth, accepts ours.
  absl::Status Ping();

  absl::StatusOr<bool> BlobExists(absl::string_view repository,
                                  absl::string_view digest);
  // Cross-repository mount: true when the registry linked the blob from
  // `from` (no bytes sent), false when it would not (then nothing changed).
  absl::StatusOr<bool> MountBlob(absl::string_view repository,
                                 absl::string_view digest,
                                 absl::string_view from);
  absl::Status UploadBlob(absl::string_view repository, const BlobFile& blob);

  // PUT of a manifest or index under `reference` (a tag or its digest);
  // `bytes` exactly as hashed. Returns the digest, checked against the
  // registry's Docker-Content-Digest.
  absl::StatusOr<std::string> PutManifest(absl::string_view repository,
                                          absl::string_view reference,
                                          absl::string_view media_type,
                                          absl::string_view bytes);
  // The digest a tag points at (HEAD); kNotFound when absent.
  absl::StatusOr<std::string> ManifestDigest(absl::string_view repository,
                                             absl::string_view reference);
  absl::StatusOr<std::vector<std::string>> ListTags(
      absl::string_view repository);

  // GET of the manifest or index `reference` (a tag or a digest) names.
  // kNotFound: no such repository, tag or digest; kDataLoss: the bytes do
  // not hash to the digest asked for or announced; kInvalidArgument: not a
  // manifest media type.
  absl::StatusOr<ManifestDocument> GetManifest(absl::string_view repository,
                                               absl::string_view reference);
  // GET of blob `blob.digest` (of `blob.size` bytes) into the file
  // `blob.path`, created or replaced (see Pulls above). kNotFound when the
  // repository lacks the blob; kDataLoss when the content does not match.
  absl::Status DownloadBlob(absl::string_view repository, const BlobFile& blob);
  // A small blob (an image config) into memory, verified as above;
  // kFailedPrecondition when `size` exceeds download_range_bytes.
  absl::StatusOr<std::string> ReadBlob(absl::string_view repository,
                                       absl::string_view digest,
                                       uint64_t size);

  RegistryStats stats() const;

 private:
  struct Call;
  enum class Scheme { kUnknown, kNone, kBasic, kBearer };
  struct Token {
    std::string value;
    absl::Time refresh_at;
  };

  explicit RegistryClient(RegistryOptions options);

  absl::StatusOr<HttpResponse> Execute(Call& call);
  absl::Status EnsurePinged();
  absl::StatusOr<std::string> Authorization(
      const std::vector<std::string>& scopes);
  absl::StatusOr<Token> FetchToken(const std::vector<std::string>& scopes);
  absl::Status OnUnauthorized(const HttpResponse& response, Call& call);
  absl::StatusOr<std::string> StartUpload(absl::string_view repository,
                                          absl::string_view digest);
  absl::Status UploadMonolithic(absl::string_view repository,
                                const BlobFile& blob, int fd);
  absl::Status UploadChunked(absl::string_view repository, const BlobFile& blob,
                             int fd, uint64_t chunk);
  // Execute, following up to five redirects of a GET.
  absl::StatusOr<HttpResponse> ExecuteFollowing(Call& call);
  std::string ResolveLocation(absl::string_view location) const;
  bool SameOrigin(absl::string_view url) const;
  void Sleep(absl::Duration delay);

  const RegistryOptions options_;
  std::unique_ptr<HttpTransport> owned_transport_;
  HttpTransport* transport_;
  std::string base_url_;
  std::string host_;

  absl::Mutex ping_mu_;  // one ping at a time; held across the request
  absl::Mutex mu_;
  Scheme scheme_ ABSL_GUARDED_BY(mu_) = Scheme::kUnknown;
  std::string realm_ ABSL_GUARDED_BY(mu_);
  std::string service_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, Token> tokens_ ABSL_GUARDED_BY(mu_);
  absl::Mutex token_fetch_mu_;  // one token request at a time

  std::atomic<int64_t> requests_{0};
  std::atomic<int64_t> retries_{0};
  std::atomic<int64_t> token_fetches_{0};
  std::atomic<int64_t> bytes_uploaded_{0};
  std::atomic<int64_t> bytes_downloaded_{0};
};

// Scopes as the token server wants them, merged: the same repository's
// actions are united ("repository:a:pull" + "repository:a:push" ->
// "repository:a:pull,push"), then sorted. Pure; exposed for tests.
std::vector<std::string> MergeScopes(const std::vector<std::string>& scopes);

// Seconds from a Retry-After header (delta-seconds form only; HTTP dates
// are rare from registries); nullopt-like zero when absent or unparseable.
absl::Duration ParseRetryAfter(absl::string_view value);

}  // namespace ciagent::oci

#endif  // CIAGENT_OCI_REGISTRY_CLIENT_H_
