// libgit2's TLS stream on OpenSSL, in place of the mbedTLS one it was built
// with.
//
// libgit2 1.5 on mbedTLS 2.28 matches a certificate's DNS names only: a git
// server reached by IP address (https://10.0.0.5:3000/...) fails with "The
// certificate Common Name (CN) does not match" even when its certificate
// names the address in subjectAltName, and mbedTLS ignores SSL_CERT_FILE.
// This stream verifies as git (and curl) do, with net/tls.h (the client TLS
// shared with Redis): the trust of the connection's thread (SetTlsTrust),
// DNS names and IP addresses in subjectAltName, TLS 1.2 or newer, SNI for
// names. A certificate that fails is GIT_ECERTIFICATE with a message naming
// the host and the reason: "does not name 10.0.0.5", "has expired",
// "unknown issuer (not signed by a trusted CA: set CI_CA_FILE)", ...
//
// It runs over the registered socket stream (socket_stream.h: no delay,
// timeouts), and over an HTTP CONNECT tunnel when libgit2 goes through a
// proxy (the registration's `wrap`).
//
// Process-wide registration (RegisterOpenSslTlsStream, once, before the
// first fetch; InitLibGit2 does it); the trust is per thread, so concurrent
// fetches with different CA files do not disturb each other.
#ifndef CIAGENT_GIT_INTERNAL_TLS_STREAM_H_
#define CIAGENT_GIT_INTERNAL_TLS_STREAM_H_

#include <string>

#include "absl/status/status.h"

namespace ciagent {

// Makes this file's stream libgit2's TLS stream.
absl::Status RegisterOpenSslTlsStream();

// What TLS connections opened later on this thread trust: the PEM bundle
// `ca_file` alone, or (empty) the system store. kFailedPrecondition when the
// file cannot be loaded (the message names it).
absl::Status SetTlsTrust(const std::string& ca_file);

}  // namespace ciagent

#endif  // CIAGENT_GIT_INTERNAL_TLS_STREAM_H_
