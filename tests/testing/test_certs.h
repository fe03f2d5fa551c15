// Certificates for the TLS test servers, made by the openssl command line
// tool (3.x: `req -CA`; `ca` for chosen dates), all EC P-256: fast to
// generate. Valid for 7 days unless expired; each server makes its own in its
// temporary directory, so no test trusts another test's CA.
//
//   ASSERT_OK_AND_ASSIGN(ServerCertificates certs,
//                        MakeServerCertificates(dir + "/tls"));
//   // serve with certs.cert_file / certs.key_file; clients trust
//   // certs.ca_file.
//
// Errors: kNotFound when openssl is not installed (fixtures skip the test
// then, unless CI=true); kInternal naming the openssl step that failed.
#ifndef CIAGENT_TESTS_TESTING_TEST_CERTS_H_
#define CIAGENT_TESTS_TESTING_TEST_CERTS_H_

#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace ciagent::testing {

// PEM files in one directory.
struct ServerCertificates {
  std::string ca_file;    // <dir>/ca.pem, the CA clients trust
  std::string cert_file;  // <dir>/server.pem, signed by the CA
  std::string key_file;   // <dir>/server.key
};

struct CertificateOptions {
  // The server certificate's subjectAltName, as operators write it for a
  // server reached by address and by name.
  std::string subject_alt_names = "IP:127.0.0.1, DNS:localhost";
  // Valid in January 2020 only: expired.
  bool expired = false;
};

// A CA and a server certificate signed by it (CN 127.0.0.1, the names of
// `options`), in `dir` (created when missing).
absl::StatusOr<ServerCertificates> MakeServerCertificates(
    const std::string& dir, const CertificateOptions& options = {});

// A client certificate (CN `name`, extendedKeyUsage clientAuth) and its
// key, <dir>/<name>.pem and <dir>/<name>.key, signed by the CA that
// MakeServerCertificates(dir) made: for servers that demand mutual TLS.
struct ClientCertificate {
  std::string cert_file;
  std::string key_file;
};
absl::StatusOr<ClientCertificate> MakeClientCertificate(
    const std::string& dir, const std::string& name = "client");

// A self-signed signing certificate and its key, <dir>/signer.pem and
// <dir>/signer.key: a registry token service puts the certificate into each
// JWT's `x5c` header; distribution, given the same certificate as
// `rootcertbundle`, verifies that chain and then the ES256 signature.
absl::Status MakeSigningCertificate(const std::string& dir);

}  // namespace ciagent::testing

#endif  // CIAGENT_TESTS_TESTING_TEST_CERTS_H_
