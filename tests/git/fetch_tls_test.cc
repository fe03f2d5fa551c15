// Fetch over HTTPS verifies as git does (tls_stream.h): each case is a real
// git server with a certificate made the way operators make them, fetched
// by FetchCommit and, side by side, by `git ls-remote` with the same trust;
// both must agree, and our refusals must name the host and the reason.
#include <cstdlib>
#include <map>
#include <memory>
#include <string>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "ciagent/git/fetch.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "testing/git_repo.h"
#include "testing/git_server.h"
#include "testing/redis_server.h"
#include "testing/status_matchers.h"
#include "testing/subprocess.h"
#include "testing/test_certs.h"

namespace ciagent {
namespace {

using ::ciagent::testing::CertificateOptions;
using ::ciagent::testing::GitServer;
using ::ciagent::testing::StatusIs;
using ::testing::HasSubstr;

class FetchTlsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_OK_AND_ASSIGN(dir_, testing::MakeTempDir("ciagent-fetch-tls-"));
  }
  void TearDown() override { testing::RemoveTree(dir_); }

  // An HTTPS git server whose certificate is `certificate`, holding "app".
  void StartServer(CertificateOptions certificate) {
    CIAGENT_START_GIT_SERVER(started,
                             {.https = true, .certificate = certificate});
    server_ = std::move(started);
    ASSERT_OK_AND_ASSIGN(std::string bare, server_->CreateBareRepo("app"));
    ASSERT_OK_AND_ASSIGN(commit_, testing::CommitFiles(
                                      bare, "main", {{"README", "tls\n"}},
                                      "first"));
  }

  // "app" on the server, reached as `host`.
  std::string Url(const std::string& host) const {
    return absl::StrReplaceAll(server_->RepoUrl("app"), {{"127.0.0.1", host}});
  }

  absl::Status Fetch(const std::string& url, const std::string& ca_file) {
    FetchOptions options;
    options.ca_file = ca_file;
    options.max_attempts = 1;
    return FetchCommit(url, "main", commit_, absl::StrCat(dir_, "/src", ++n_),
                       options)
        .status();
  }

  // What git itself says: true when `git ls-remote` trusts the server.
  bool GitAccepts(const std::string& url, const std::string& ca_file) {
    std::map<std::string, std::string> env;
    if (!ca_file.empty()) env["GIT_SSL_CAINFO"] = ca_file;
    absl::StatusOr<testing::GitResult> result =
        testing::RunGit({"ls-remote", url}, env);
    return result.ok() && result->ok();
  }

  std::string dir_;
  std::string commit_;
  std::unique_ptr<GitServer> server_;
  int n_ = 0;
};

TEST_F(FetchTlsTest, AServerReachedByAddressIsVerifiedAgainstItsIpEntry) {
  // The certificate an operator makes for an IP-addressed Gitea.
  StartServer({.subject_alt_names = "IP:127.0.0.1"});
  if (HasFatalFailure() || IsSkipped()) return;
  EXPECT_OK(Fetch(Url("127.0.0.1"), server_->ca_file()));
  EXPECT_TRUE(GitAccepts(Url("127.0.0.1"), server_->ca_file()));
}

TEST_F(FetchTlsTest, AServerReachedByNameIsVerifiedAgainstItsDnsNames) {
  StartServer({.subject_alt_names = "DNS:localhost"});
  if (HasFatalFailure() || IsSkipped()) return;
  EXPECT_OK(Fetch(Url("localhost"), server_->ca_file()));
  EXPECT_TRUE(GitAccepts(Url("localhost"), server_->ca_file()));
  // The same server by address: its certificate does not name it.
  EXPECT_THAT(Fetch(Url("127.0.0.1"), server_->ca_file()),
              StatusIs(absl::StatusCode::kFailedPrecondition,
                       HasSubstr("TLS to 127.0.0.1: its certificate does not "
                                 "name 127.0.0.1")));
  EXPECT_FALSE(GitAccepts(Url("127.0.0.1"), server_->ca_file()));
}

TEST_F(FetchTlsTest, ANameTheCertificateDoesNotHoldIsRefused) {
  StartServer({.subject_alt_names = "DNS:git.internal, IP:10.9.8.7"});
  if (HasFatalFailure() || IsSkipped()) return;
  EXPECT_THAT(Fetch(Url("localhost"), server_->ca_file()),
              StatusIs(absl::StatusCode::kFailedPrecondition,
                       HasSubstr("TLS to localhost: its certificate does not "
                                 "name localhost")));
  EXPECT_FALSE(GitAccepts(Url("localhost"), server_->ca_file()));
}

TEST_F(FetchTlsTest, AnExpiredCertificateIsRefusedSayingSo) {
  StartServer({.expired = true});
  if (HasFatalFailure() || IsSkipped()) return;
  EXPECT_THAT(Fetch(Url("127.0.0.1"), server_->ca_file()),
              StatusIs(absl::StatusCode::kFailedPrecondition,
                       HasSubstr("TLS to 127.0.0.1: its certificate has "
                                 "expired")));
  EXPECT_FALSE(GitAccepts(Url("127.0.0.1"), server_->ca_file()));
}

TEST_F(FetchTlsTest, AnUnknownIssuerIsRefusedSayingWhichCaToGive) {
  StartServer({});
  if (HasFatalFailure() || IsSkipped()) return;
  // The system store does not know the test CA.
  EXPECT_THAT(Fetch(Url("127.0.0.1"), ""),
              StatusIs(absl::StatusCode::kFailedPrecondition,
                       HasSubstr("TLS to 127.0.0.1: unknown issuer")));
  EXPECT_FALSE(GitAccepts(Url("127.0.0.1"), ""));
}

// As for OpenSSL's own tools and curl (Debian's git, on GnuTLS, reads only
// its own settings).
TEST_F(FetchTlsTest, SslCertFileNamesTheSystemStore) {
  StartServer({});
  if (HasFatalFailure() || IsSkipped()) return;
  const char* previous = std::getenv("SSL_CERT_FILE");
  const std::string saved = previous != nullptr ? previous : "";
  setenv("SSL_CERT_FILE", server_->ca_file().c_str(), 1);
  absl::Status fetched = Fetch(Url("127.0.0.1"), "");
  if (previous != nullptr) {
    setenv("SSL_CERT_FILE", saved.c_str(), 1);
  } else {
    unsetenv("SSL_CERT_FILE");
  }
  EXPECT_OK(fetched);
}

TEST_F(FetchTlsTest, ACaFileReplacesTheSystemStore) {
  StartServer({});
  if (HasFatalFailure() || IsSkipped()) return;
  // Another CA's file: the server's is not in it, and the system store is
  // not consulted besides.
  ASSERT_OK_AND_ASSIGN(testing::ServerCertificates other,
                       testing::MakeServerCertificates(dir_ + "/other"));
  EXPECT_THAT(Fetch(Url("127.0.0.1"), other.ca_file),
              StatusIs(absl::StatusCode::kFailedPrecondition,
                       HasSubstr("unknown issuer")));
  EXPECT_OK(Fetch(Url("127.0.0.1"), server_->ca_file()));
}

// The proxy's environment for one test, restored after it.
class ScopedProxyEnv {
 public:
  ScopedProxyEnv(const std::string& https_proxy, const std::string& no_proxy) {
    for (const char* name : kNames) {
      if (const char* value = std::getenv(name)) saved_[name] = value;
      unsetenv(name);
    }
    setenv("HTTPS_PROXY", https_proxy.c_str(), 1);
    if (!no_proxy.empty()) setenv("NO_PROXY", no_proxy.c_str(), 1);
  }
  ~ScopedProxyEnv() {
    for (const char* name : kNames) unsetenv(name);
    for (const auto& [name, value] : saved_) setenv(name.c_str(), value.c_str(), 1);
  }

 private:
  static constexpr const char* kNames[] = {"HTTPS_PROXY", "https_proxy",
                                           "NO_PROXY", "no_proxy"};
  std::map<std::string, std::string> saved_;
};

TEST_F(FetchTlsTest, HttpsProxyCarriesTheFetchThroughACONNECTTunnel) {
  StartServer({});
  if (HasFatalFailure() || IsSkipped()) return;
  ASSERT_OK_AND_ASSIGN(std::string script,
                       testing::FindTestScript("connect_proxy.py",
                                               "CIAGENT_CONNECT_PROXY"));
  const std::string log = dir_ + "/proxy.log";
  std::unique_ptr<testing::Subprocess> proxy;
  int port = 0;
  ASSERT_OK(testing::LaunchOnFreePort(port, [&] {
    testing::SubprocessOptions options;
    options.stdout_path = dir_ + "/proxy.out";
    options.stderr_path = dir_ + "/proxy.err";
    absl::StatusOr<std::unique_ptr<testing::Subprocess>> started =
        testing::Subprocess::Start({testing::kTestPython, "-I", script,
                                    "--port", absl::StrCat(port), "--log", log},
                                   options);
    if (!started.ok()) return started.status();
    proxy = *std::move(started);
    return testing::AwaitReadyLine(proxy, options.stdout_path,
                                   options.stderr_path, "CONNECT proxy", port,
                                   absl::Seconds(10));
  }));
  const std::string target = absl::StrCat("127.0.0.1:", server_->port());
  {
    ScopedProxyEnv env(absl::StrCat("http://127.0.0.1:", port), "");
    EXPECT_OK(Fetch(Url("127.0.0.1"), server_->ca_file()));
  }
  EXPECT_THAT(testing::ReadFileOrEmpty(log),
              HasSubstr(absl::StrCat("CONNECT ", target, " 200")));
  // NO_PROXY names the server: straight there, the proxy sees nothing new.
  const std::string seen = testing::ReadFileOrEmpty(log);
  {
    ScopedProxyEnv env(absl::StrCat("http://127.0.0.1:", port), "127.0.0.1");
    EXPECT_OK(Fetch(Url("127.0.0.1"), server_->ca_file()));
  }
  EXPECT_EQ(testing::ReadFileOrEmpty(log), seen);
}

}  // namespace
}  // namespace ciagent
