// What the files of RegistryClient share (registry_client.cc: requests,
// retries, blobs and manifests; registry_auth.cc: the auth schemes and
// tokens; registry_upload.cc: blob uploads). Not installed.
#ifndef CIAGENT_OCI_INTERNAL_REGISTRY_CALL_H_
#define CIAGENT_OCI_INTERNAL_REGISTRY_CALL_H_

#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "ciagent/net/http.h"
#include "ciagent/oci/registry_client.h"

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

namespace internal {

// The Accept header of manifest requests: the four media types manifest.h
// names.
std::string ManifestAccept();
// 408, 429 and 5xx: worth another attempt.
bool IsRetryableHttp(int status);
// RFC 3986 unreserved characters stay; everything else is %XX.
std::string PercentEncode(absl::string_view text);
// `url` with `query` appended after '?' or '&'.
std::string AppendQuery(absl::string_view url, absl::string_view query);
// "sha256:" and 12 hex digits, for messages.
std::string ShortDigest(absl::string_view digest);
// "repository:<name>:<actions>".
std::string RepositoryScope(absl::string_view repository,
                            absl::string_view actions);
// The status for an HTTP answer that ends `what`: the code from the HTTP
// status (registry_client.h's table), the message naming what, the host,
// the attempts and the registry's own error code and message.
absl::Status HttpError(absl::string_view what, absl::string_view host,
                       const HttpResponse& response, int attempts);

}  // namespace internal
}  // namespace ciagent::oci

#endif  // CIAGENT_OCI_INTERNAL_REGISTRY_CALL_H_
