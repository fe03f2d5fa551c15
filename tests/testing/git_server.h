// GitServer: a real git smart-HTTP(S) server for integration tests.
//
// `git http-backend` behind a small CGI bridge (git_http_server.py, next to
// this file), on a free 127.0.0.1 port with its own temporary directory,
// stopped and removed when the object dies. Optionally HTTPS, with a fresh
// CA and a certificate for 127.0.0.1 / localhost, and HTTP Basic auth.
//
//   GitServerOptions options;
//   options.https = true;
//   options.username = "ci";
//   options.password = "s3cret";
//   CIAGENT_START_GIT_SERVER(server, options);  // in a TEST body or SetUp()
//   ASSERT_OK_AND_ASSIGN(std::string repo, server->CreateBareRepo("app"));
//   ASSERT_OK_AND_ASSIGN(std::string commit,
//       CommitFiles(repo, "main", {{"README", "hi\n"}}, "first"));
//   // fetch server->RepoUrl("app") trusting server->ca_file() ...
//
// When python3, git, git-http-backend or (for HTTPS) openssl is missing the
// macro skips the test, except under CI=true, where that is a failure.
//
// Secrets: the password goes to a mode-0600 file read by the server, never
// to argv; the request log holds method, path and status only.
//
// Thread-safety: none; use from the test's thread. Clients may make
// concurrent requests (one thread per connection on the server side).
#ifndef CIAGENT_TESTS_TESTING_GIT_SERVER_H_
#define CIAGENT_TESTS_TESTING_GIT_SERVER_H_

#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "testing/subprocess.h"
#include "testing/test_certs.h"

namespace ciagent::testing {

struct GitServerOptions {
  // Serve HTTPS with a certificate (SAN IP:127.0.0.1, DNS:localhost) signed
  // by a CA made for this server alone; clients trust ca_file().
  bool https = false;
  // HTTP Basic credentials every request must carry; an empty username
  // means no authentication. Requests without them get 401 with
  // `WWW-Authenticate: Basic realm="git"`. The user may not contain ':'.
  std::string username;
  std::string password;
  // The first N requests after Start() get 503 (not repeated by
  // StartAgain()), to exercise client retries.
  int fail_first_requests = 0;
  // With https: the server certificate's names and validity.
  CertificateOptions certificate;
};

class GitServer {
 public:
  // kNotFound when python3, git, git-http-backend or (https) openssl is
  // not installed; kFailedPrecondition when git_http_server.py cannot be
  // found (set CIAGENT_GIT_HTTP_SERVER to its path).
  static absl::StatusOr<std::unique_ptr<GitServer>> Start(
      GitServerOptions options = {});
  ~GitServer();

  GitServer(const GitServer&) = delete;
  GitServer& operator=(const GitServer&) = delete;

  int port() const { return port_; }
  // Directory holding the bare repositories (<root>/<name>.git).
  std::string root() const { return root_; }
  // http(s)://127.0.0.1:<port>/<name>.git — without credentials.
  std::string RepoUrl(absl::string_view name) const;
  // PEM certificate of the CA that signed the server's certificate; empty
  // without https.
  const std::string& ca_file() const { return ca_file_; }

  // Creates the empty bare repository <root>/<name>.git and returns its
  // path. `name` may contain '/' (nested directories) but no '..'.
  absl::StatusOr<std::string> CreateBareRepo(absl::string_view name);

  // Graceful stop (SIGTERM); clients then get "connection refused".
  absl::Status Stop();
  // Serves again on the same port, root, certificate and credentials.
  // kUnavailable if the port was taken meanwhile.
  absl::Status StartAgain();

  // One line per request, `<method> <path> <status>`, across restarts.
  std::string RequestLog() const;

 private:
  GitServer() = default;
  absl::Status Launch();

  GitServerOptions options_;
  std::string script_;
  std::string dir_;
  std::string root_;
  std::string ca_file_;
  std::string cert_file_;
  std::string key_file_;
  std::string auth_file_;
  int port_ = 0;
  bool launched_ = false;
  std::unique_ptr<Subprocess> process_;
};

}  // namespace ciagent::testing

// `...` is the GitServerOptions: a variable, a braced initializer such as
// {.https = true, .username = "ci"} (commas and all), or nothing.
#define CIAGENT_START_GIT_SERVER(var, ...) \
  CIAGENT_TESTING_START_SERVICE_(GitServer, var, __VA_ARGS__)

#endif  // CIAGENT_TESTS_TESTING_GIT_SERVER_H_
