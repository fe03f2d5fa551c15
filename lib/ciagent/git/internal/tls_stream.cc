#include "ciagent/git/internal/tls_stream.h"

#include <git2.h>
#include <git2/sys/stream.h>
#include <openssl/err.h>
#include <openssl/ssl.h>

#include <algorithm>
#include <climits>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "ciagent/git/internal/socket_stream.h"
#include "ciagent/net/tls.h"

namespace ciagent {
namespace {

// The context TLS connections opened on this thread use; null for the
// system store.
thread_local SSL_CTX* thread_context = nullptr;

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

int Connect(git_stream* stream) {
  TlsStream* self = Self(stream);
  if (self->owns_inner) {
    if (int rc = self->inner->connect(self->inner); rc < 0) return rc;
  }
  absl::StatusOr<SSL*> ssl = NewTlsSession(self->context, self->host);
  if (!ssl.ok()) {
    git_error_set_str(GIT_ERROR_SSL, std::string(ssl.status().message()).c_str());
    return -1;
  }
  self->ssl = *ssl;
  BIO* bio = BIO_new(StreamBioMethod());
  BIO_set_data(bio, self);
  SSL_set_bio(self->ssl, bio, bio);
  if (SSL_connect(self->ssl) != 1) {
    const long verified = SSL_get_verify_result(self->ssl);
    if (verified != X509_V_OK) {
      git_error_set_str(GIT_ERROR_SSL, TlsVerifyFailure(self->host, verified, "CI_CA_FILE").c_str());
      ERR_clear_error();
      return GIT_ECERTIFICATE;
    }
    if (!self->inner_failed) {
      git_error_set_str(GIT_ERROR_SSL,
                        absl::StrCat("TLS handshake with ", self->host,
                                     " failed: ", TakeOpenSslError())
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
                                                : TakeOpenSslError())
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
  absl::StatusOr<SSL_CTX*> system_store = TlsClientContext({});
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
  absl::StatusOr<SSL_CTX*> context = TlsClientContext({.ca_file = ca_file});
  if (!context.ok()) return context.status();
  thread_context = *context;
  return absl::OkStatus();
}

}  // namespace ciagent
