// Client TLS on OpenSSL that verifies as git and curl do, shared by every
// connection the agent opens itself: the git fetch (libgit2's TLS stream,
// git/internal/tls_stream.h) and Redis (net/socket.h).
//
// Verification:
//   - the peer's chain against one PEM bundle (`ca_file`), which replaces
//     the system store, or the system store: SSL_CERT_FILE / SSL_CERT_DIR
//     when set, else OpenSSL's default paths;
//   - the host: DNS names (wildcards as RFC 6125 says, no partial ones) for
//     a name, the IP address entries of subjectAltName for an address (IPv4
//     and IPv6);
//   - TLS 1.2 or newer; SNI sent for names, never for addresses.
// A client certificate and key (mutual TLS) are offered when both are set.
//
//   CIAGENT_ASSIGN_OR_RETURN(SSL_CTX* context,
//                            TlsClientContext({.ca_file = ca}));
//   CIAGENT_ASSIGN_OR_RETURN(SSL* ssl, NewTlsSession(context, "10.0.0.5"));
//   // SSL_set_fd / SSL_set_bio, SSL_connect; on a verify failure:
//   //   TlsVerifyFailure("10.0.0.5", SSL_get_verify_result(ssl), "CI_CA_FILE")
//
// Contexts are made once per setting and kept for the process (a CA file
// rewritten on disk, with another size or time, gets a new one): callers
// never free them. All functions are thread-safe.
//
// Errors:
//   kFailedPrecondition a CA, certificate or key file that cannot be loaded,
//                       or a key that does not match its certificate (the
//                       message names the file): fix the configuration.
//   kResourceExhausted  OpenSSL could not allocate.
#ifndef CIAGENT_NET_TLS_H_
#define CIAGENT_NET_TLS_H_

#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

typedef struct ssl_ctx_st SSL_CTX;
typedef struct ssl_st SSL;

namespace ciagent {

struct TlsClientOptions {
  // PEM bundle that replaces the system store; empty for the system store.
  std::string ca_file;
  // Client certificate chain and its private key (PEM) for mutual TLS;
  // both or neither.
  std::string cert_file;
  std::string key_file;
};

// The shared context for `options` (see above).
absl::StatusOr<SSL_CTX*> TlsClientContext(const TlsClientOptions& options);

// A new session of `context` that will verify `host` (a name, an IPv4
// address or an IPv6 address without brackets) and send SNI for a name.
// The caller owns it (SSL_free).
absl::StatusOr<SSL*> NewTlsSession(SSL_CTX* context, absl::string_view host);

// Why `host`'s certificate was refused (SSL_get_verify_result), as a person
// fixing it reads it: "TLS to 10.0.0.5: its certificate does not name
// 10.0.0.5 (no IP address entry in subjectAltName)", "... has expired",
// "... unknown issuer: ... (give the CA with <ca_setting>)".
std::string TlsVerifyFailure(absl::string_view host, long verify_result,
                             absl::string_view ca_setting);

// OpenSSL's first queued error as text ("unknown error" when none), and
// clears the queue.
std::string TakeOpenSslError();

// True when the thread's last OpenSSL failure (still queued) says the
// server refused or demanded a client certificate: TLS 1.3 servers say so
// in an alert that arrives after the handshake, at the first read.
bool OpenSslErrorIsClientCertificateRefused();

// True for an IPv4 or IPv6 address (no brackets).
bool IsIpAddress(absl::string_view host);

}  // namespace ciagent

#endif  // CIAGENT_NET_TLS_H_
