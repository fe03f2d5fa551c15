// One agent pod for end-to-end tests: the container entrypoint
// (packaging/entrypoint.sh: ci-consume, then ci-build) with the settings a
// pod gets, its own work dir and log files, the binaries of this build.
//
//   ASSERT_OK_AND_ASSIGN(auto agent, StartAgentPod({.name = "agent-a",
//       .dir = dir, .redis_url = redis->url(), .path = path,
//       .env = {{"GIT_TOKEN", token}}}));
//   EXPECT_THAT(agent->Wait(absl::Minutes(5)), IsOkAndHolds(0));
//   // its stderr (JSON logs): <dir>/agent-a.log, stdout <dir>/agent-a.out
#ifndef CIAGENT_TESTS_TESTING_AGENT_POD_H_
#define CIAGENT_TESTS_TESTING_AGENT_POD_H_

#include <map>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "testing/subprocess.h"

namespace ciagent::testing {

struct AgentPodOptions {
  std::string name;       // POD_NAME
  std::string dir;        // <dir>/<name> is its work dir; logs beside it
  std::string redis_url;  // REDIS_URL
  std::string path;       // PATH, with cargo
  // CI_CACHE_DIR; empty: <dir>/cache, shared by the pods of one test.
  std::string cache_dir;
  // CI_EXIT_CODE: "agent" (0 once the job reached a final status) or "job".
  std::string exit_code = "agent";
  // On top: tokens, the registry, the image builder, CI_WAIT, ...
  std::map<std::string, std::string> env;
};

// The entrypoint's process settings for `pod` (for a test that wraps it).
SubprocessOptions AgentPodProcessOptions(const AgentPodOptions& pod);

// Starts the entrypoint (CIAGENT_ENTRYPOINT) as `pod`.
absl::StatusOr<std::unique_ptr<Subprocess>> StartAgentPod(
    const AgentPodOptions& pod);

}  // namespace ciagent::testing

#endif  // CIAGENT_TESTS_TESTING_AGENT_POD_H_
