#include "testing/test_certs.h"

#include <filesystem>
#include <system_error>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "testing/subprocess.h"

namespace ciagent::testing {
namespace {

// `openssl req` making a new EC P-256 key and a certificate for it, as
// `config` describes, valid for 7 days; `extra` (e.g. -CA, -CAkey) goes
// before -out.
std::vector<std::string> NewCertificate(const std::string& key,
                                        const std::string& config,
                                        const std::string& out,
                                        std::vector<std::string> extra = {}) {
  std::vector<std::string> argv = {
      "openssl", "req",    "-x509",  "-new",
      "-newkey", "ec",     "-pkeyopt", "ec_paramgen_curve:P-256",
      "-noenc",  "-keyout", key,     "-config",
      config,    "-days",  "7",      "-sha256"};
  argv.insert(argv.end(), extra.begin(), extra.end());
  argv.insert(argv.end(), {"-out", out});
  return argv;
}

// Runs openssl steps (one process per certificate, key included), their
// output to <dir>/openssl.log; a missing openssl is kNotFound.
absl::Status RunOpenssl(const std::vector<std::vector<std::string>>& steps,
                        const std::string& dir) {
  for (const auto& step : steps) {
    absl::Status s = RunTool(step, absl::StrCat(dir, "/openssl.log"));
    if (s.code() == absl::StatusCode::kNotFound) {
      return absl::NotFoundError(
          absl::StrCat("openssl not installed (", s.message(), ")"));
    }
    if (!s.ok()) return s;
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<ServerCertificates> MakeServerCertificates(
    const std::string& dir, const CertificateOptions& options) {
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (ec) {
    return absl::InternalError(absl::StrCat("create ", dir, ": ", ec.message()));
  }
  const std::string ca_conf = absl::StrCat(dir, "/ca.cnf");
  const std::string server_conf = absl::StrCat(dir, "/server.cnf");
  absl::Status s = WriteText(ca_conf,
                             "[req]\n"
                             "distinguished_name = dn\n"
                             "prompt = no\n"
                             "x509_extensions = ca\n"
                             "[dn]\n"
                             "CN = ciagent test CA\n"
                             "[ca]\n"
                             "basicConstraints = critical, CA:TRUE\n"
                             "keyUsage = critical, keyCertSign, cRLSign\n"
                             "subjectKeyIdentifier = hash\n",
                             0644);
  if (!s.ok()) return s;
  s = WriteText(server_conf,
                absl::StrCat("[req]\n"
                             "distinguished_name = dn\n"
                             "prompt = no\n"
                             "x509_extensions = server\n"
                             "req_extensions = request\n"
                             "[dn]\n"
                             "CN = 127.0.0.1\n"
                             "[server]\n"
                             "basicConstraints = critical, CA:FALSE\n"
                             "keyUsage = critical, digitalSignature\n"
                             // clientAuth too: a server that replicates
                             // over TLS presents it as a client.
                             "extendedKeyUsage = serverAuth, clientAuth\n"
                             "subjectAltName = ",
                             options.subject_alt_names,
                             "\n"
                             "subjectKeyIdentifier = hash\n"
                             "authorityKeyIdentifier = keyid:always\n"
                             "[request]\n"
                             "subjectAltName = ",
                             options.subject_alt_names, "\n"),
                0644);
  if (!s.ok()) return s;
  ServerCertificates certs{.ca_file = absl::StrCat(dir, "/ca.pem"),
                           .cert_file = absl::StrCat(dir, "/server.pem"),
                           .key_file = absl::StrCat(dir, "/server.key")};
  const std::string ca_key = absl::StrCat(dir, "/ca.key");
  if (!options.expired) {
    s = RunOpenssl({NewCertificate(ca_key, ca_conf, certs.ca_file),
                    NewCertificate(certs.key_file, server_conf, certs.cert_file,
                                   {"-CA", certs.ca_file, "-CAkey", ca_key})},
                   dir);
    if (!s.ok()) return s;
    return certs;
  }
  // Chosen dates need `openssl ca` and its small database.
  const std::string ca_db_conf = absl::StrCat(dir, "/ca-db.cnf");
  const std::string csr = absl::StrCat(dir, "/server.csr");
  for (const auto& [path, text] :
       std::vector<std::pair<std::string, std::string>>{
           {absl::StrCat(dir, "/index.txt"), ""},
           {absl::StrCat(dir, "/serial"), "01\n"},
           {ca_db_conf,
            absl::StrCat("[ca]\ndefault_ca = test\n[test]\ndatabase = ", dir,
                         "/index.txt\nnew_certs_dir = ", dir, "\nserial = ",
                         dir,
                         "/serial\ndefault_md = sha256\npolicy = any\n"
                         "copy_extensions = copy\nunique_subject = no\n"
                         "[any]\ncommonName = supplied\n")}}) {
    if (absl::Status written = WriteText(path, text, 0644); !written.ok()) {
      return written;
    }
  }
  s = RunOpenssl(
      {NewCertificate(ca_key, ca_conf, certs.ca_file),
       {"openssl", "req", "-new", "-newkey", "ec", "-pkeyopt",
        "ec_paramgen_curve:P-256", "-noenc", "-keyout", certs.key_file,
        "-config", server_conf, "-out", csr},
       {"openssl", "ca", "-batch", "-notext", "-config", ca_db_conf, "-cert",
        certs.ca_file, "-keyfile", ca_key, "-in", csr, "-out", certs.cert_file,
        "-startdate", "20200101000000Z", "-enddate", "20200201000000Z"}},
      dir);
  if (!s.ok()) return s;
  return certs;
}

absl::StatusOr<ClientCertificate> MakeClientCertificate(
    const std::string& dir, const std::string& name) {
  const std::string conf = absl::StrCat(dir, "/", name, ".cnf");
  absl::Status s = WriteText(conf,
                             absl::StrCat("[req]\n"
                                          "distinguished_name = dn\n"
                                          "prompt = no\n"
                                          "x509_extensions = client\n"
                                          "[dn]\n"
                                          "CN = ",
                                          name,
                                          "\n"
                                          "[client]\n"
                                          "basicConstraints = critical, CA:FALSE\n"
                                          "keyUsage = critical, digitalSignature\n"
                                          "extendedKeyUsage = clientAuth\n"
                                          "authorityKeyIdentifier = keyid:always\n"),
                             0644);
  if (!s.ok()) return s;
  ClientCertificate client{.cert_file = absl::StrCat(dir, "/", name, ".pem"),
                           .key_file = absl::StrCat(dir, "/", name, ".key")};
  s = RunOpenssl({NewCertificate(client.key_file, conf, client.cert_file,
                                 {"-CA", absl::StrCat(dir, "/ca.pem"), "-CAkey",
                                  absl::StrCat(dir, "/ca.key")})},
                 dir);
  if (!s.ok()) return s;
  return client;
}

absl::Status MakeSigningCertificate(const std::string& dir) {
  const std::string conf = absl::StrCat(dir, "/signer.cnf");
  absl::Status s = WriteText(conf,
                             "[req]\n"
                             "distinguished_name = dn\n"
                             "prompt = no\n"
                             "x509_extensions = signer\n"
                             "[dn]\n"
                             "CN = ciagent test registry token signer\n"
                             "[signer]\n"
                             "basicConstraints = critical, CA:FALSE\n"
                             "keyUsage = critical, digitalSignature\n"
                             "subjectKeyIdentifier = hash\n",
                             0644);
  if (!s.ok()) return s;
  return RunOpenssl({NewCertificate(absl::StrCat(dir, "/signer.key"), conf,
                                    absl::StrCat(dir, "/signer.pem"))},
                    dir);
}

}  // namespace ciagent::testing
