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
#include "testing/test_certs.h"

namespace ciagent::testing {
namespace {

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
  if (absl::Status s = CheckTestPython(); !s.ok()) return s;
  if (absl::Status s = CheckHttpBackend(); !s.ok()) return s;
  if (absl::StrContains(options.username, ':') ||
      absl::StrContains(options.username, '\n') ||
      absl::StrContains(options.password, '\n')) {
    return absl::InvalidArgumentError(
        "git server credentials: no ':' in the user, no newlines");
  }
  auto script =
      FindTestScript("git_http_server.py", "CIAGENT_GIT_HTTP_SERVER");
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
    auto certs = MakeServerCertificates(absl::StrCat(*dir, "/tls"),
                                        server->options_.certificate);
    if (!certs.ok()) return certs.status();
    server->ca_file_ = certs->ca_file;
    server->cert_file_ = certs->cert_file;
    server->key_file_ = certs->key_file;
  }
  if (!server->options_.username.empty()) {
    server->auth_file_ = absl::StrCat(*dir, "/auth");
    absl::Status s =
        WriteCredentialFile(server->auth_file_, server->options_.username,
                            server->options_.password);
    if (!s.ok()) return s;
  }
  absl::Status launched =
      LaunchOnFreePort(server->port_, [&] { return server->Launch(); });
  if (!launched.ok()) return launched;
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
  std::vector<std::string> argv = {kTestPython, "-I", script_,
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
  absl::Status ready = AwaitReadyLine(process_, out, err, "git http server",
                                      port_, absl::Seconds(10));
  if (ready.ok()) launched_ = true;
  return ready;
}

absl::Status GitServer::Stop() {
  return StopProcess(process_, absl::StrCat("git http server on port ", port_),
                     absl::StrCat(dir_, "/server.err"));
}

absl::Status GitServer::StartAgain() {
  if (process_ && process_->running()) {
    return absl::FailedPreconditionError(
        absl::StrCat("git http server on port ", port_, " is running"));
  }
  return Launch();
}

}  // namespace ciagent::testing
