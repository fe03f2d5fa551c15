// CargoRegistryServer: a private cargo registry for integration tests, as
// Gitea's is: a sparse index whose config.json says `auth-required`, and
// crate downloads, every request needing the registry token.
//
// cargo_registry_server.py (next to this file) on a free 127.0.0.1 port
// serves the .crate files of a directory (as `cargo package` writes them;
// crates without dependencies), writing their index entries itself.
//
//   // <tmp>/<name>-<version>.crate from PackageCrate (vendored_crate.h)
//   CIAGENT_START_CARGO_REGISTRY(registry, {.crates_dir = tmp,
//                                           .token = "Bearer s3cret"});
//   // [registries.gitea] index = registry->index_url()
//
// When python3 is missing the macro skips the test, except under CI=true.
// The token goes to a mode-0600 file read by the server, never to argv; the
// request log holds method, path and status only.
#ifndef CIAGENT_TESTS_TESTING_CARGO_REGISTRY_SERVER_H_
#define CIAGENT_TESTS_TESTING_CARGO_REGISTRY_SERVER_H_

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "testing/subprocess.h"

namespace ciagent::testing {

struct CargoRegistryOptions {
  // Directory of <name>-<version>.crate files.
  std::string crates_dir;
  // What every request must carry as its Authorization header.
  std::string token;
  // The first N requests get 503, as a registry that is briefly down.
  int fail_first_requests = 0;
};

class CargoRegistryServer {
 public:
  static absl::StatusOr<std::unique_ptr<CargoRegistryServer>> Start(
      CargoRegistryOptions options);
  ~CargoRegistryServer();

  CargoRegistryServer(const CargoRegistryServer&) = delete;
  CargoRegistryServer& operator=(const CargoRegistryServer&) = delete;

  int port() const { return port_; }
  // sparse+http://127.0.0.1:<port>/index/
  std::string index_url() const;
  // One line per request, `<method> <path> <status>`.
  std::string RequestLog() const;

 private:
  CargoRegistryServer() = default;
  absl::Status Launch();

  CargoRegistryOptions options_;
  std::string script_;
  std::string dir_;
  std::string token_file_;
  int port_ = 0;
  std::unique_ptr<Subprocess> process_;
};

}  // namespace ciagent::testing

#define CIAGENT_START_CARGO_REGISTRY(var, ...) \
  CIAGENT_TESTING_START_SERVICE_(CargoRegistryServer, var, __VA_ARGS__)

#endif  // CIAGENT_TESTS_TESTING_CARGO_REGISTRY_SERVER_H_
