#include "testing/cargo_registry_server.h"

#include <filesystem>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "ciagent/base/process_runner.h"
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

absl::StatusOr<std::string> PackageCrate(const std::string& crate_dir,
                                         const std::string& path,
                                         const std::string& out_dir) {
  ProcessOptions process;
  process.argv = {"cargo", "package", "--offline", "--no-verify",
                  "--allow-dirty", "--target-dir", out_dir + "/target"};
  process.working_dir = crate_dir;
  process.env = {{"PATH", path},
                 {"HOME", getenv("HOME") != nullptr ? getenv("HOME") : "/"},
                 {"CARGO_HOME", out_dir + "/cargo-home"}};
  if (const char* rustup = getenv("RUSTUP_HOME"); rustup != nullptr) {
    process.env.emplace_back("RUSTUP_HOME", rustup);
  }
  std::string output;
  absl::StatusOr<ProcessResult> run =
      RunProcess(process, [&](StreamKind, absl::string_view line) {
        absl::StrAppend(&output, line, "\n");
      });
  if (!run.ok()) return run.status();
  if (run->exit_code != 0) {
    return absl::InternalError(
        absl::StrCat("cargo package in ", crate_dir, ": ", output));
  }
  for (const auto& entry :
       std::filesystem::directory_iterator(out_dir + "/target/package")) {
    if (entry.path().extension() == ".crate") {
      const std::string dest = out_dir + "/" + entry.path().filename().string();
      std::filesystem::rename(entry.path(), dest);
      return dest;
    }
  }
  return absl::InternalError(
      absl::StrCat("cargo package in ", crate_dir, " wrote no .crate"));
}

}  // namespace ciagent::testing
