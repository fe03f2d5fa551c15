#include "ciagent/net/tls.h"

#include <arpa/inet.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <sys/stat.h>

#include <cstdlib>
#include <map>
#include <string>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"

namespace ciagent {
namespace {

absl::Mutex contexts_mutex;
std::map<std::string, SSL_CTX*>& Contexts() {
  static auto* contexts = new std::map<std::string, SSL_CTX*>();
  return *contexts;
}

// A file as it is on disk now: a rotated file gets a context of its own.
std::string FileIdentity(const std::string& path) {
  if (path.empty()) return "";
  struct stat info = {};
  stat(path.c_str(), &info);
  return absl::StrCat(path, "@", info.st_size, ":", info.st_mtim.tv_sec, ".",
                      info.st_mtim.tv_nsec);
}

std::string ContextKey(const TlsClientOptions& options) {
  std::string trust;
  if (options.ca_file.empty()) {
    const char* file = std::getenv("SSL_CERT_FILE");
    const char* dir = std::getenv("SSL_CERT_DIR");
    trust = absl::StrCat("system:", file != nullptr ? file : "", ":",
                         dir != nullptr ? dir : "");
  } else {
    trust = absl::StrCat("file:", FileIdentity(options.ca_file));
  }
  return absl::StrCat(trust, "\n", FileIdentity(options.cert_file), "\n",
                      FileIdentity(options.key_file));
}

absl::Status LoadClientCertificate(SSL_CTX* context,
                                   const TlsClientOptions& options) {
  if (options.cert_file.empty() != options.key_file.empty()) {
    return absl::FailedPreconditionError(
        "TLS client certificate: give both the certificate and its key");
  }
  if (options.cert_file.empty()) return absl::OkStatus();
  if (SSL_CTX_use_certificate_chain_file(context, options.cert_file.c_str()) !=
      1) {
    return absl::FailedPreconditionError(
        absl::StrCat("load TLS client certificate ", options.cert_file, ": ",
                     TakeOpenSslError()));
  }
  if (SSL_CTX_use_PrivateKey_file(context, options.key_file.c_str(),
                                  SSL_FILETYPE_PEM) != 1) {
    return absl::FailedPreconditionError(
        absl::StrCat("load TLS client key ", options.key_file, ": ",
                     TakeOpenSslError()));
  }
  if (SSL_CTX_check_private_key(context) != 1) {
    ERR_clear_error();
    return absl::FailedPreconditionError(
        absl::StrCat("TLS client key ", options.key_file,
                     " does not belong to the certificate ",
                     options.cert_file));
  }
  return absl::OkStatus();
}

absl::StatusOr<SSL_CTX*> NewContext(const TlsClientOptions& options) {
  SSL_CTX* context = SSL_CTX_new(TLS_client_method());
  if (context == nullptr) {
    return absl::ResourceExhaustedError(
        absl::StrCat("TLS context: ", TakeOpenSslError()));
  }
  SSL_CTX_set_min_proto_version(context, TLS1_2_VERSION);
  SSL_CTX_set_verify(context, SSL_VERIFY_PEER, nullptr);
  SSL_CTX_set_mode(context, SSL_MODE_AUTO_RETRY);
  const std::string& ca_file = options.ca_file;
  const int loaded =
      ca_file.empty()
          ? SSL_CTX_set_default_verify_paths(context)
          : SSL_CTX_load_verify_locations(context, ca_file.c_str(), nullptr);
  absl::Status status;
  if (loaded != 1) {
    const std::string error = TakeOpenSslError();
    status = absl::FailedPreconditionError(
        ca_file.empty()
            ? absl::StrCat("load the system's trusted certificates: ", error)
            : absl::StrCat("load CA file ", ca_file, ": ", error));
  } else {
    status = LoadClientCertificate(context, options);
  }
  if (!status.ok()) {
    SSL_CTX_free(context);
    return status;
  }
  return context;
}

}  // namespace

absl::StatusOr<SSL_CTX*> TlsClientContext(const TlsClientOptions& options) {
  const std::string key = ContextKey(options);
  absl::MutexLock lock(&contexts_mutex);
  auto found = Contexts().find(key);
  if (found != Contexts().end()) return found->second;
  absl::StatusOr<SSL_CTX*> context = NewContext(options);
  if (context.ok()) Contexts().emplace(key, *context);
  return context;
}

absl::StatusOr<SSL*> NewTlsSession(SSL_CTX* context, absl::string_view host) {
  ERR_clear_error();
  SSL* ssl = SSL_new(context);
  if (ssl == nullptr) {
    return absl::ResourceExhaustedError(
        absl::StrCat("TLS session: ", TakeOpenSslError()));
  }
  const std::string name(host);
  X509_VERIFY_PARAM* param = SSL_get0_param(ssl);
  X509_VERIFY_PARAM_set_hostflags(param, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
  if (IsIpAddress(name)) {
    X509_VERIFY_PARAM_set1_ip_asc(param, name.c_str());
  } else {
    SSL_set_tlsext_host_name(ssl, name.c_str());
    X509_VERIFY_PARAM_set1_host(param, name.c_str(), 0);
  }
  return ssl;
}

std::string TlsVerifyFailure(absl::string_view host, long verify_result,
                             absl::string_view ca_setting) {
  std::string why;
  switch (verify_result) {
    case X509_V_ERR_HOSTNAME_MISMATCH:
    case X509_V_ERR_IP_ADDRESS_MISMATCH:
      why = absl::StrCat("its certificate does not name ", host,
                         IsIpAddress(host)
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
                         X509_verify_cert_error_string(verify_result),
                         "; give the CA with ", ca_setting, ")");
      break;
    default:
      why = X509_verify_cert_error_string(verify_result);
  }
  return absl::StrCat("TLS to ", host, ": ", why);
}

std::string TakeOpenSslError() {
  const unsigned long code = ERR_get_error();
  ERR_clear_error();
  if (code == 0) return "unknown error";
  char text[256];
  ERR_error_string_n(code, text, sizeof(text));
  return text;
}

bool OpenSslErrorIsClientCertificateRefused() {
  const unsigned long code = ERR_peek_last_error();
  if (ERR_GET_LIB(code) != ERR_LIB_SSL) return false;
  switch (ERR_GET_REASON(code)) {
    case SSL_R_TLSV13_ALERT_CERTIFICATE_REQUIRED:
    case SSL_R_SSLV3_ALERT_BAD_CERTIFICATE:
    case SSL_R_SSLV3_ALERT_CERTIFICATE_UNKNOWN:
    case SSL_R_TLSV1_ALERT_UNKNOWN_CA:
    case SSL_R_SSLV3_ALERT_CERTIFICATE_EXPIRED:
      return true;
    default:
      return false;
  }
}

bool IsIpAddress(absl::string_view host) {
  const std::string text(host);
  unsigned char buffer[sizeof(in6_addr)];
  return inet_pton(AF_INET, text.c_str(), buffer) == 1 ||
         inet_pton(AF_INET6, text.c_str(), buffer) == 1;
}

}  // namespace ciagent
