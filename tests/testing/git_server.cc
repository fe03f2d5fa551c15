#include "testing/git_server.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <utility>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "testing/git_repo.h"
#include "testing/redis_server.h"

namespace ciagent::testing {
namespace {

constexpr char kPython[] = "/usr/bin/python3";
constexpr char kScriptName[] = "git_http_server.py";

bool IsFile(const std::filesystem::path& path) {
  std::error_code ec;
  return std::filesystem::is_regular_file(path, ec);
}

// git_http_server.py: from CIAGENT_GIT_HTTP_SERVER, else next to this source
// file (its compile-time path, relative to the build directory meson runs
// tests in), else in tests/testing/ of a source tree holding the test binary.
absl::StatusOr<std::string> FindServerScript() {
  if (auto from_env = PathFromEnv("CIAGENT_GIT_HTTP_SERVER"); from_env.ok()) {
    if (IsFile(*from_env)) return *from_env;
    return absl::FailedPreconditionError(absl::StrCat(
        "CIAGENT_GIT_HTTP_SERVER=", *from_env, ": no such file"));
  }
  std::error_code ec;
  const std::filesystem::path beside =
      std::filesystem::path(__FILE__).parent_path() / kScriptName;
  if (IsFile(beside)) return std::filesystem::absolute(beside, ec).string();
  std::filesystem::path dir =
      std::filesystem::read_symlink("/proc/self/exe", ec).parent_path();
  for (; !ec && !dir.empty() && dir != dir.root_path();
       dir = dir.parent_path()) {
    const auto candidate = dir / "tests" / "testing" / kScriptName;
    if (IsFile(candidate)) return candidate.string();
  }
  return absl::FailedPreconditionError(absl::StrCat(
      kScriptName, " not found; set CIAGENT_GIT_HTTP_SERVER to its path"));
}

// A CA and a server certificate for 127.0.0.1 signed by it, all EC P-256
// (fast to generate, and within what mbedTLS 2.x verifies). The SAN also
// names 127.0.0.1 as a DNS name: mbedTLS 2.x matches the host only against
// DNS names, while OpenSSL and GnuTLS use the IP entry.
absl::Status MakeCertificates(const std::string& dir) {
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
                "[req]\n"
                "distinguished_name = dn\n"
                "prompt = no\n"
                "x509_extensions = server\n"
                "[dn]\n"
                "CN = 127.0.0.1\n"
                "[server]\n"
                "basicConstraints = critical, CA:FALSE\n"
                "keyUsage = critical, digitalSignature\n"
                "extendedKeyUsage = serverAuth\n"
                "subjectAltName = IP:127.0.0.1, DNS:localhost, DNS:127.0.0.1\n"
                "subjectKeyIdentifier = hash\n"
                "authorityKeyIdentifier = keyid:always\n",
                0644);
  if (!s.ok()) return s;
  const std::string log = absl::StrCat(dir, "/openssl.log");
  auto in_dir = [&](const char* name) { return absl::StrCat(dir, "/", name); };
  // One process per certificate (key included): `req -CA` needs OpenSSL 3.
  const std::vector<std::vector<std::string>> steps = {
      {"openssl", "req", "-x509", "-new", "-newkey", "ec", "-pkeyopt",
       "ec_paramgen_curve:P-256", "-noenc", "-keyout", in_dir("ca.key"),
       "-config", ca_conf, "-days", "7", "-sha256", "-out", in_dir("ca.pem")},
      {"openssl", "req", "-x509", "-new", "-newkey", "ec", "-pkeyopt",
       "ec_paramgen_curve:P-256", "-noenc", "-keyout", in_dir("server.key"),
       "-config", server_conf, "-CA", in_dir("ca.pem"), "-CAkey",
       in_dir("ca.key"), "-days", "7", "-sha256", "-out",
       in_dir("server.pem")},
  };
  for (const auto& step : steps) {
    s = RunTool(step, log);
    if (s.code() == absl::StatusCode::kNotFound) {
      return absl::NotFoundError(
          absl::StrCat("openssl not installed (", s.message(), ")"));
    }
    if (!s.ok()) return s;
  }
  return absl::OkStatus();
}

// OK when git and its http-backend are installed; looked up once.
absl::Status CheckHttpBackend() {
  static const absl::Status* const status = [] {
    auto exec_path = RunGit({"--exec-path"});
    if (!exec_path.ok()) {
      return new absl::Status(
          exec_path.status().code() == absl::StatusCode::kNotFound
              ? absl::NotFoundError(absl::StrCat(
                    "git not installed (", exec_path.status().message(), ")"))
              : exec_path.status());
    }
    const std::string backend = absl::StrCat(
        absl::StripTrailingAsciiWhitespace(exec_path->stdout_text),
        "/git-http-backend");
    if (!exec_path->ok() || ::access(backend.c_str(), X_OK) != 0) {
      return new absl::Status(absl::NotFoundError(
          absl::StrCat("git http-backend not installed (", backend, ")")));
    }
    return new absl::Status();
  }();
  return *status;
}

bool ValidRepoName(absl::string_view name) {
  if (name.empty() || name.front() == '/' || name.back() == '/') return false;
  for (absl::string_view part : absl::StrSplit(name, '/')) {
    if (part.empty() || part == "." || part == "..") return false;
  }
  return true;
}

}  // namespace

absl::StatusOr<std::unique_ptr<GitServer>> GitServer::Start(
    GitServerOptions options) {
  if (::access(kPython, X_OK) != 0) {
    return absl::NotFoundError(absl::StrCat(kPython, " not installed"));
  }
  if (absl::Status s = CheckHttpBackend(); !s.ok()) return s;
  if (absl::StrContains(options.username, ':') ||
      absl::StrContains(options.username, '\n') ||
      absl::StrContains(options.password, '\n')) {
    return absl::InvalidArgumentError(
        "git server credentials: no ':' in the user, no newlines");
  }
  auto script = FindServerScript();
  if (!script.ok()) return script.status();

  std::unique_ptr<GitServer> server(new GitServer());
  server->options_ = std::move(options);
  server->script_ = *script;
  auto dir = MakeTempDir("ciagent-git-server-");
  if (!dir.ok()) return dir.status();
  server->dir_ = *dir;
  server->root_ = absl::StrCat(*dir, "/repos");
  std::error_code ec;
  std::filesystem::create_directories(server->root_, ec);
  std::filesystem::create_directories(absl::StrCat(*dir, "/home"), ec);
  if (ec) {
    return absl::InternalError(
        absl::StrCat("create ", server->root_, ": ", ec.message()));
  }
  if (server->options_.https) {
    const std::string tls_dir = absl::StrCat(*dir, "/tls");
    std::filesystem::create_directories(tls_dir, ec);
    if (absl::Status s = MakeCertificates(tls_dir); !s.ok()) return s;
    server->ca_file_ = absl::StrCat(tls_dir, "/ca.pem");
    server->cert_file_ = absl::StrCat(tls_dir, "/server.pem");
    server->key_file_ = absl::StrCat(tls_dir, "/server.key");
  }
  if (!server->options_.username.empty()) {
    server->auth_file_ = absl::StrCat(*dir, "/auth");
    absl::Status s = WriteText(
        server->auth_file_,
        absl::StrCat(server->options_.username, ":", server->options_.password,
                     "\n"),
        0600);
    if (!s.ok()) return s;
  }
  GitServer* raw = server.get();
  absl::StatusOr<int> port = LaunchOnFreePort([raw](int port) {
    raw->port_ = port;
    return raw->Launch();
  });
  if (!port.ok()) return port.status();
  return server;
}

GitServer::~GitServer() {
  if (process_) process_->Kill();
  RemoveTree(dir_);
}

std::string GitServer::RepoUrl(absl::string_view name) const {
  return absl::StrCat(options_.https ? "https" : "http", "://127.0.0.1:",
                      port_, "/", name, ".git");
}

absl::StatusOr<std::string> GitServer::CreateBareRepo(absl::string_view name) {
  if (!ValidRepoName(name)) {
    return absl::InvalidArgumentError(
        absl::StrCat("bad repository name '", name, "'"));
  }
  const std::string path = absl::StrCat(root_, "/", name, ".git");
  auto result = RunGit({"init", "--bare", "-q", path});
  if (!result.ok()) return result.status();
  if (!result->ok()) {
    return absl::InternalError(
        absl::StrCat("git init --bare ", path, ": ",
                     absl::StripAsciiWhitespace(result->stderr_text)));
  }
  return path;
}

std::string GitServer::RequestLog() const {
  return ReadFileOrEmpty(absl::StrCat(dir_, "/requests.log"));
}

absl::Status GitServer::Launch() {
  std::vector<std::string> argv = {kPython, "-I", script_,
                                   "--root", root_,
                                   "--port", absl::StrCat(port_),
                                   "--log", absl::StrCat(dir_, "/requests.log")};
  if (options_.https) {
    argv.insert(argv.end(), {"--cert", cert_file_, "--key", key_file_});
  }
  if (!auth_file_.empty()) {
    argv.insert(argv.end(), {"--auth-file", auth_file_});
  }
  if (!launched_ && options_.fail_first_requests > 0) {
    argv.insert(argv.end(),
                {"--fail-first", absl::StrCat(options_.fail_first_requests)});
  }
  SubprocessOptions subprocess_options;
  // git upload-pack, run by the backend, must not read the user's config.
  subprocess_options.env = {{"HOME", absl::StrCat(dir_, "/home")},
                            {"GIT_CONFIG_NOSYSTEM", "1"}};
  const std::string out = absl::StrCat(dir_, "/server.out");
  const std::string err = absl::StrCat(dir_, "/server.err");
  subprocess_options.stdout_path = out;
  subprocess_options.stderr_path = err;
  auto process = Subprocess::Start(argv, subprocess_options);
  if (!process.ok()) return process.status();
  process_ = std::move(process).value();
  const std::string ready = absl::StrCat("ready ", port_, "\n");
  const absl::Time deadline = absl::Now() + absl::Seconds(10);
  while (absl::Now() < deadline) {
    if (ReadFileOrEmpty(out) == ready) {
      launched_ = true;
      return absl::OkStatus();
    }
    if (!process_->running()) {
      process_.reset();
      return absl::UnavailableError(
          absl::StrCat("git http server on port ", port_, " exited: ",
                       absl::StripAsciiWhitespace(ReadFileOrEmpty(err))));
    }
    absl::SleepFor(absl::Milliseconds(5));
  }
  process_->Kill();
  process_.reset();
  return absl::DeadlineExceededError(
      absl::StrCat("git http server on port ", port_, " not ready after 10s"));
}

absl::Status GitServer::Stop() {
  if (!process_) return absl::OkStatus();
  process_->Signal(SIGTERM);
  auto code = process_->Wait(absl::Seconds(10));
  if (!code.ok()) process_->Kill();
  process_.reset();
  if (!code.ok()) return code.status();
  if (*code != 0) {
    return absl::InternalError(absl::StrCat(
        "git http server on port ", port_, " exited with ", *code, ": ",
        absl::StripAsciiWhitespace(
            ReadFileOrEmpty(absl::StrCat(dir_, "/server.err")))));
  }
  return absl::OkStatus();
}

absl::Status GitServer::StartAgain() {
  if (process_ && process_->running()) {
    return absl::FailedPreconditionError(
        absl::StrCat("git http server on port ", port_, " is running"));
  }
  return Launch();
}

}  // namespace ciagent::testing
