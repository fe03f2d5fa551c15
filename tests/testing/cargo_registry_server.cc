#include "testing/cargo_registry_server.h"

#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "testing/redis_server.h"

namespace ciagent::testing {

absl::StatusOr<std::unique_ptr<CargoRegistryServer>> CargoRegistryServer::Start(
    CargoRegistryOptions options) {
  if (absl::Status s = CheckTestPython(); !s.ok()) return s;
  absl::StatusOr<std::string> script = FindTestScript(
      "cargo_registry_server.py", "CIAGENT_CARGO_REGISTRY_SERVER");
  if (!script.ok()) return script.status();
  std::unique_ptr<CargoRegistryServer> server(new CargoRegistryServer());
  server->options_ = std::move(options);
  server->script_ = *script;
  absl::StatusOr<std::string> dir = MakeTempDir("ciagent-cargo-registry-");
  if (!dir.ok()) return dir.status();
  server->dir_ = *dir;
  server->token_file_ = server->dir_ + "/token";
  absl::Status written =
      WriteText(server->token_file_, server->options_.token + "\n", 0600);
  if (!written.ok()) return written;
  absl::Status launched =
      LaunchOnFreePort(server->port_, [&] { return server->Launch(); });
  if (!launched.ok()) return launched;
  return server;
}

CargoRegistryServer::~CargoRegistryServer() {
  if (process_) process_->Kill();
  RemoveTree(dir_);
}

std::string CargoRegistryServer::index_url() const {
  return absl::StrCat("sparse+http://127.0.0.1:", port_, "/index/");
}

std::string CargoRegistryServer::RequestLog() const {
  return ReadFileOrEmpty(dir_ + "/requests.log");
}

absl::Status CargoRegistryServer::Launch() {
  std::vector<std::string> argv = {
      kTestPython,  "-I",         script_,
      "--crates",   options_.crates_dir,
      "--token-file", token_file_,
      "--port",     absl::StrCat(port_),
      "--log",      dir_ + "/requests.log"};
  if (options_.fail_first_requests > 0) {
    argv.insert(argv.end(),
                {"--fail-first", absl::StrCat(options_.fail_first_requests)});
  }
  SubprocessOptions subprocess_options;
  const std::string out = dir_ + "/server.out";
  const std::string err = dir_ + "/server.err";
  subprocess_options.stdout_path = out;
  subprocess_options.stderr_path = err;
  absl::StatusOr<std::unique_ptr<Subprocess>> process =
      Subprocess::Start(argv, subprocess_options);
  if (!process.ok()) return process.status();
  process_ = *std::move(process);
  return AwaitReadyLine(process_, out, err, "cargo registry", port_,
                        absl::Seconds(10));
}

}  // namespace ciagent::testing
