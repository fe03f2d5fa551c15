// SccacheServer: a private sccache server for one pipeline run, so rustc
// output is shared through <cache>/sccache across checkouts and agents, and
// the run's own hits and misses can be counted.
//
// The server runs in the foreground as a child of this process (not as a
// daemon: a daemon would leave the step's process group and the process
// runner would kill it as an escapee), on a free 127.0.0.1 port, with
// SCCACHE_DIR = `dir`. Steps get Env(): RUSTC_WRAPPER=sccache,
// SCCACHE_DIR and SCCACHE_SERVER_PORT, so their sccache clients talk to it.
// Its statistics are zeroed at start; Stats() reads them (sccache's JSON).
// The destructor stops the server and reaps it.
//
// Example:
//   CIAGENT_ASSIGN_OR_RETURN(std::unique_ptr<SccacheServer> sccache,
//                            SccacheServer::Start({cache + "/sccache", path}));
//   env.insert(env.end(), sccache->Env().begin(), sccache->Env().end());
//   ... run the build ...
//   CIAGENT_ASSIGN_OR_RETURN(SccacheStats stats, sccache->Stats());
//
// Errors: kFailedPrecondition when sccache is not in `path` or the server
// does not come up within `start_timeout` (the caller builds without it);
// kUnavailable for resource errors. Thread-safety: one thread.
#ifndef CIAGENT_CACHE_SCCACHE_H_
#define CIAGENT_CACHE_SCCACHE_H_

#include <sys/types.h>

#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"

namespace ciagent {

struct SccacheOptions {
  // SCCACHE_DIR: the shared cache directory. Required.
  std::string dir;
  // Where `sccache` is looked up. Required.
  std::string path;
  absl::Duration start_timeout = absl::Seconds(10);
};

struct SccacheStats {
  int64_t compile_requests = 0;
  int64_t hits = 0;    // all languages
  int64_t misses = 0;  // all languages
};

// Parses `sccache --show-stats --stats-format=json` (sccache 0.4+).
// kInvalidArgument when it is not that document.
absl::StatusOr<SccacheStats> ParseSccacheStats(absl::string_view json);

class SccacheServer {
 public:
  static absl::StatusOr<std::unique_ptr<SccacheServer>> Start(
      const SccacheOptions& options);
  ~SccacheServer();
  SccacheServer(const SccacheServer&) = delete;
  SccacheServer& operator=(const SccacheServer&) = delete;

  // Variables for the steps.
  const std::vector<std::pair<std::string, std::string>>& Env() const {
    return env_;
  }
  // Hits and misses since Start().
  absl::StatusOr<SccacheStats> Stats() const;

 private:
  SccacheServer(SccacheOptions options, pid_t pid,
                std::vector<std::pair<std::string, std::string>> env)
      : options_(std::move(options)), pid_(pid), env_(std::move(env)) {}

  SccacheOptions options_;
  pid_t pid_;
  std::vector<std::pair<std::string, std::string>> env_;
};

}  // namespace ciagent

#endif  // CIAGENT_CACHE_SCCACHE_H_
