#include "ciagent/git/internal/tls_stream.h"

#include <arpa/inet.h>
#include <git2.h>
#include <git2/sys/stream.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <sys/stat.h>

#include <algorithm>
#include <climits>
#include <cstdlib>
#include <map>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "absl/synchronization/mutex.h"
#include "ciagent/git/internal/socket_stream.h"

namespace ciagent {
namespace {

// --- trust -----------------------------------------------------------------

// One SSL_CTX per trust setting, made once and kept for the process: the
// system store as the environment named it, or a CA file as it was on disk
// (a rotated file, with another size or time, gets a context of its own).
absl::Mutex contexts_mutex;
std::map<std::string, SSL_CTX*>& Contexts() {
  static auto* contexts = new std::map<std::string, SSL_CTX*>();
  return *contexts;
}

thread_local SSL_CTX* thread_context = nullptr;

std::string OpenSslError() {
  const unsigned long code = ERR_get_error();
  ERR_clear_error();
  if (code == 0) return "unknown error";
  char text[256];
  ERR_error_string_n(code, text, sizeof(text));
  return text;
}

std::string TrustKey(const std::string& ca_file) {
  if (ca_file.empty()) {
    const char* file = std::getenv("SSL_CERT_FILE");
    const char* dir = std::getenv("SSL_CERT_DIR");
    return absl::StrCat("system\n", file != nullptr ? file : "", "\n",
                        dir != nullptr ? dir : "");
  }
  struct stat info = {};
  stat(ca_file.c_str(), &info);
  return absl::StrCat("file\n", ca_file, "\n", info.st_size, "\n",
                      info.st_mtim.tv_sec, ".", info.st_mtim.tv_nsec);
}

absl::StatusOr<SSL_CTX*> ContextFor(const std::string& ca_file) {
  const std::string key = TrustKey(ca_file);
  absl::MutexLock lock(&contexts_mutex);
  auto found = Contexts().find(key);
  if (found != Contexts().end()) return found->second;
  SSL_CTX* context = SSL_CTX_new(TLS_client_method());
  if (context == nullptr) {
    return absl::ResourceExhaustedError(
        absl::StrCat("TLS context: ", OpenSslError()));
  }
  SSL_CTX_set_min_proto_version(context, TLS1_2_VERSION);
  SSL_CTX_set_verify(context, SSL_VERIFY_PEER, nullptr);
  SSL_CTX_set_mode(context, SSL_MODE_AUTO_RETRY);
  const int loaded =
      ca_file.empty()
          ? SSL_CTX_set_default_verify_paths(context)
          : SSL_CTX_load_verify_locations(context, ca_file.c_str(), nullptr);
  if (loaded != 1) {
    const std::string error = OpenSslError();
    SSL_CTX_free(context);
    return absl::FailedPreconditionError(
        ca_file.empty()
            ? absl::StrCat("load the system's trusted certificates: ", error)
            : absl::StrCat("load CA file ", ca_file, ": ", error));
  }
  Contexts().emplace(key, context);
  return context;
}

// --- the stream ------------------------------------------------------------

struct TlsStream {
  git_stream parent;  // first: libgit2 sees a git_stream*
  git_stream* inner;
  bool owns_inner;
  std::string host;  // as in the URL, brackets of an IPv6 address removed
  SSL_CTX* context;
  SSL* ssl = nullptr;
  // The inner stream failed: its own error (a timeout, a reset) stands.
  bool inner_failed = false;
  std::vector<unsigned char> der;
  git_cert_x509 cert = {};
};

TlsStream* Self(git_stream* stream) {
  return reinterpret_cast<TlsStream*>(stream);
}

TlsStream* OfBio(BIO* bio) { return static_cast<TlsStream*>(BIO_get_data(bio)); }

int BioWrite(BIO* bio, const char* data, int size) {
  TlsStream* self = OfBio(bio);
  const ssize_t written = self->inner->write(self->inner, data, size, 0);
  if (written < 0) self->inner_failed = true;
  return written < 0 ? -1 : static_cast<int>(written);
}

int BioRead(BIO* bio, char* data, int size) {
  TlsStream* self = OfBio(bio);
  const ssize_t got = self->inner->read(self->inner, data, size);
  if (got < 0) self->inner_failed = true;
  return got < 0 ? -1 : static_cast<int>(got);
}

long BioCtrl(BIO* /*bio*/, int command, long /*number*/, void* /*pointer*/) {
  return command == BIO_CTRL_FLUSH ? 1 : 0;
}

int BioCreate(BIO* bio) {
  BIO_set_init(bio, 1);
  return 1;
}

int BioDestroy(BIO* /*bio*/) { return 1; }

// A BIO that reads and writes through the inner git_stream (the socket, or
// a proxy's CONNECT tunnel).
BIO_METHOD* StreamBioMethod() {
  static BIO_METHOD* method = [] {
    BIO_METHOD* m =
        BIO_meth_new(BIO_get_new_index() | BIO_TYPE_SOURCE_SINK, "git_stream");
    BIO_meth_set_write(m, BioWrite);
    BIO_meth_set_read(m, BioRead);
    BIO_meth_set_ctrl(m, BioCtrl);
    BIO_meth_set_create(m, BioCreate);
    BIO_meth_set_destroy(m, BioDestroy);
    return m;
  }();
  return method;
}

bool IsAddress(const std::string& host) {
  unsigned char buffer[sizeof(in6_addr)];
  return inet_pton(AF_INET, host.c_str(), buffer) == 1 ||
         inet_pton(AF_INET6, host.c_str(), buffer) == 1;
}

// Why the peer's certificate was refused, as a person fixing it reads it.
std::string VerifyFailure(const TlsStream& self, long result) {
  std::string why;
  switch (result) {
    case X509_V_ERR_HOSTNAME_MISMATCH:
    case X509_V_ERR_IP_ADDRESS_MISMATCH:
      why = absl::StrCat("its certificate does not name ", self.host,
                         IsAddress(self.host)
                             ? " (no IP address entry in subjectAltName)"
                             : " (no matching DNS name in subjectAltName)");
      break;
    case X509_V_ERR_CERT_HAS_EXPIRED:
      why = "its certificate has expired";
      break;
    case X509_V_ERR_CERT_NOT_YET_VALID:
      why = "its certificate is not valid yet (check the clocks)";
      break;
    case X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY:
    case X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT:
    case X509_V_ERR_DEPTH_ZERO_SELF_SIGNED_CERT:
    case X509_V_ERR_SELF_SIGNED_CERT_IN_CHAIN:
      why = absl::StrCat("unknown issuer: its certificate is not signed by a "
                         "trusted CA (",
                         X509_verify_cert_error_string(result),
                         "; give the CA with CI_CA_FILE)");
      break;
    default:
      why = X509_verify_cert_error_string(result);
  }
  return absl::StrCat("TLS to ", self.host, ": ", why);
}

int Connect(git_stream* stream) {
  TlsStream* self = Self(stream);
  if (self->owns_inner) {
    if (int rc = self->inner->connect(self->inner); rc < 0) return rc;
  }
  ERR_clear_error();
  self->ssl = SSL_new(self->context);
  if (self->ssl == nullptr) {
    git_error_set_str(GIT_ERROR_SSL, OpenSslError().c_str());
    return -1;
  }
  BIO* bio = BIO_new(StreamBioMethod());
  BIO_set_data(bio, self);
  SSL_set_bio(self->ssl, bio, bio);
  X509_VERIFY_PARAM* param = SSL_get0_param(self->ssl);
  X509_VERIFY_PARAM_set_hostflags(param, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
  if (IsAddress(self->host)) {
    X509_VERIFY_PARAM_set1_ip_asc(param, self->host.c_str());
  } else {
    SSL_set_tlsext_host_name(self->ssl, self->host.c_str());
    X509_VERIFY_PARAM_set1_host(param, self->host.c_str(), 0);
  }
  if (SSL_connect(self->ssl) != 1) {
    const long verified = SSL_get_verify_result(self->ssl);
    if (verified != X509_V_OK) {
      git_error_set_str(GIT_ERROR_SSL, VerifyFailure(*self, verified).c_str());
      ERR_clear_error();
      return GIT_ECERTIFICATE;
    }
    if (!self->inner_failed) {
      git_error_set_str(GIT_ERROR_SSL,
                        absl::StrCat("TLS handshake with ", self->host,
                                     " failed: ", OpenSslError())
                            .c_str());
    }
    ERR_clear_error();
    return -1;
  }
  if (X509* peer = SSL_get1_peer_certificate(self->ssl); peer != nullptr) {
    unsigned char* der = nullptr;
    const int length = i2d_X509(peer, &der);
    if (length > 0) self->der.assign(der, der + length);
    OPENSSL_free(der);
    X509_free(peer);
  }
  return 0;
}

int Certificate(git_cert** out, git_stream* stream) {
  TlsStream* self = Self(stream);
  self->cert.parent.cert_type = GIT_CERT_X509;
  self->cert.data = self->der.data();
  self->cert.len = self->der.size();
  *out = &self->cert.parent;
  return 0;
}

// A failed SSL_read/SSL_write: the inner stream's error when it failed,
// else OpenSSL's. Returns -1.
ssize_t Failed(TlsStream* self, int rc, const char* what) {
  const int error = SSL_get_error(self->ssl, rc);
  if (!self->inner_failed) {
    git_error_set_str(
        GIT_ERROR_SSL,
        absl::StrCat("TLS ", what, " ", self->host, ": ",
                     error == SSL_ERROR_SYSCALL ? "connection closed"
                                                : OpenSslError())
            .c_str());
  }
  ERR_clear_error();
  return -1;
}

ssize_t Read(git_stream* stream, void* data, size_t size) {
  TlsStream* self = Self(stream);
  ERR_clear_error();
  const int rc = SSL_read(self->ssl, data,
                          static_cast<int>(std::min<size_t>(size, INT_MAX)));
  if (rc > 0) return rc;
  if (SSL_get_error(self->ssl, rc) == SSL_ERROR_ZERO_RETURN) return 0;
  return Failed(self, rc, "read from");
}

ssize_t Write(git_stream* stream, const char* data, size_t size, int /*flags*/) {
  TlsStream* self = Self(stream);
  ERR_clear_error();
  const int rc = SSL_write(self->ssl, data,
                           static_cast<int>(std::min<size_t>(size, INT_MAX)));
  if (rc > 0) return rc;
  return Failed(self, rc, "write to");
}

int Close(git_stream* stream) {
  TlsStream* self = Self(stream);
  if (self->ssl != nullptr && !self->inner_failed) {
    SSL_shutdown(self->ssl);  // best effort: the peer may be gone
    ERR_clear_error();
  }
  return self->owns_inner ? self->inner->close(self->inner) : 0;
}

void Free(git_stream* stream) {
  TlsStream* self = Self(stream);
  if (self->ssl != nullptr) SSL_free(self->ssl);  // and its BIO
  if (self->owns_inner) self->inner->free(self->inner);
  delete self;
}

SSL_CTX* CurrentContext() {
  if (thread_context != nullptr) return thread_context;
  absl::StatusOr<SSL_CTX*> system_store = ContextFor("");
  return system_store.ok() ? *system_store : nullptr;
}

int NewTlsStream(git_stream** out, git_stream* inner, bool owns_inner,
                 const char* host) {
  SSL_CTX* context = CurrentContext();
  if (context == nullptr) {
    git_error_set_str(GIT_ERROR_SSL,
                      "TLS: the system's trusted certificates did not load");
    if (owns_inner) inner->free(inner);
    return -1;
  }
  auto* self = new TlsStream{};
  self->parent.version = GIT_STREAM_VERSION;
  self->parent.encrypted = 1;
  self->parent.connect = Connect;
  self->parent.certificate = Certificate;
  self->parent.read = Read;
  self->parent.write = Write;
  self->parent.close = Close;
  self->parent.free = Free;
  self->inner = inner;
  self->owns_inner = owns_inner;
  absl::string_view name = host;
  if (absl::ConsumePrefix(&name, "[")) absl::ConsumeSuffix(&name, "]");
  self->host = std::string(name);
  self->context = context;
  *out = &self->parent;
  return 0;
}

int Init(git_stream** out, const char* host, const char* port) {
  git_stream* socket = nullptr;
  if (int rc = NewNoDelaySocketStream(&socket, host, port); rc < 0) return rc;
  return NewTlsStream(out, socket, /*owns_inner=*/true, host);
}

int Wrap(git_stream** out, git_stream* in, const char* host) {
  return NewTlsStream(out, in, /*owns_inner=*/false, host);
}

}  // namespace

absl::Status RegisterOpenSslTlsStream() {
  git_stream_registration registration = {};
  registration.version = GIT_STREAM_VERSION;
  registration.init = Init;
  registration.wrap = Wrap;
  if (git_stream_register(GIT_STREAM_TLS, &registration) != 0) {
    const git_error* e = git_error_last();
    return absl::InternalError(absl::StrCat("register the TLS stream: ",
                                            e != nullptr ? e->message : "?"));
  }
  return absl::OkStatus();
}

absl::Status SetTlsTrust(const std::string& ca_file) {
  absl::StatusOr<SSL_CTX*> context = ContextFor(ca_file);
  if (!context.ok()) return context.status();
  thread_context = *context;
  return absl::OkStatus();
}

}  // namespace ciagent
