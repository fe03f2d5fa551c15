#include "testing/agent_pod.h"

#include <utility>
#include <vector>

namespace ciagent::testing {

SubprocessOptions AgentPodProcessOptions(const AgentPodOptions& pod) {
  SubprocessOptions options;
  options.env = {
      {"PATH", pod.path},
      {"REDIS_URL", pod.redis_url},
      {"POD_NAME", pod.name},
      {"CI_WORKDIR", pod.dir + "/" + pod.name},
      {"CI_CACHE_DIR", pod.cache_dir.empty() ? pod.dir + "/cache" : pod.cache_dir},
      {"CI_WAIT", "20"},
      {"CI_EXIT_CODE", pod.exit_code},
      {"CI_CONSUME_BIN", PathFromEnv("CIAGENT_CI_CONSUME").value_or("")},
      {"CI_BUILD_BIN", PathFromEnv("CIAGENT_CI_BUILD").value_or("")},
  };
  for (const auto& [name, value] : pod.env) options.env[name] = value;
  options.unset_env = {"REDIS_PASSWORD", "CI_SECRET_ENV", "CI_TARGET_DIR",
                       "CI_CARGO_HOME",  "GITEA_URL",     "REGISTRY_URL",
                       "GIT_TOKEN",      "CIAGENT_LOG_LEVEL"};
  std::erase_if(options.unset_env, [&pod](const std::string& name) {
    return pod.env.contains(name);
  });
  options.stdout_path = pod.dir + "/" + pod.name + ".out";
  options.stderr_path = pod.dir + "/" + pod.name + ".log";
  return options;
}

absl::StatusOr<std::unique_ptr<Subprocess>> StartAgentPod(
    const AgentPodOptions& pod) {
  absl::StatusOr<std::string> entrypoint = PathFromEnv("CIAGENT_ENTRYPOINT");
  if (!entrypoint.ok()) return entrypoint.status();
  return Subprocess::Start({*entrypoint}, AgentPodProcessOptions(pod));
}

}  // namespace ciagent::testing
