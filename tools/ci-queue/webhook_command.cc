// `ci-queue webhook`: serves push deliveries until SIGTERM (see --help).
#include <cstdio>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/strings/str_cat.h"
#include "ciagent/base/comma_list.h"
#include "ciagent/base/exit_code.h"
#include "ciagent/base/log.h"
#include "ciagent/base/secret.h"
#include "ciagent/base/stop_signal.h"
#include "commands.h"
#include "webhook_server.h"

ABSL_FLAG(std::string, listen, "127.0.0.1:8080",
          "webhook: address:port to serve on ([v6]:port; port 0 picks one)");
ABSL_FLAG(std::string, path, "/webhook", "webhook: the path deliveries POST to");
ABSL_FLAG(std::string, allowed_hosts, "",
          "webhook: comma-separated hosts (host or host:port of clone URLs) "
          "whose pushes become jobs; required");
ABSL_FLAG(std::string, branches, "",
          "webhook: comma-separated branches or patterns (release/*) to "
          "build; default: every branch");
ABSL_FLAG(int64_t, max_body_bytes, int64_t{4} << 20,
          "webhook: larger deliveries are refused (413)");

namespace ciagent {

absl::StatusOr<int> RunWebhook(QueueAdmin& admin, const CommandLine& line) {
  PushReceiverOptions receiver_options;
  absl::StatusOr<std::optional<std::string>> secret =
      ReadSecretFromEnv("CI_WEBHOOK_SECRET");
  if (!secret.ok()) return secret.status();
  if (!secret->has_value() || (*secret)->empty()) {
    return absl::InvalidArgumentError(
        "webhook: the shared secret is required: CI_WEBHOOK_SECRET_FILE (or "
        "CI_WEBHOOK_SECRET)");
  }
  receiver_options.secret = **std::move(secret);
  PushEventOptions& events = receiver_options.events;
  events.allowed_hosts = SplitCommaList(absl::GetFlag(FLAGS_allowed_hosts));
  if (events.allowed_hosts.empty()) {
    return absl::InvalidArgumentError(
        "webhook: --allowed-hosts is required (the forge's host)");
  }
  events.branches = SplitCommaList(absl::GetFlag(FLAGS_branches));
  events.steps = SplitCommaList(line.steps);
  if (line.timeout_s < 0) {
    return absl::InvalidArgumentError("--timeout must be >= 0");
  }
  if (line.timeout_s > 0) events.timeout = absl::Seconds(line.timeout_s);
  WebhookServerOptions server_options;
  server_options.listen = absl::GetFlag(FLAGS_listen);
  server_options.path = absl::GetFlag(FLAGS_path);
  if (absl::GetFlag(FLAGS_max_body_bytes) <= 0) {
    return absl::InvalidArgumentError("--max-body-bytes must be positive");
  }
  server_options.max_body_bytes =
      static_cast<size_t>(absl::GetFlag(FLAGS_max_body_bytes));

  PushReceiver receiver(line.redis, admin.options(), std::move(receiver_options));
  absl::StatusOr<std::unique_ptr<WebhookServer>> server =
      WebhookServer::Start(server_options, &receiver);
  if (!server.ok()) return server.status();
  std::printf("listening on %s (port %d), POST %s\n",
              server_options.listen.c_str(), (*server)->port(),
              server_options.path.c_str());
  std::fflush(stdout);
  LogInfo("webhook listening", {{"listen", server_options.listen},
                                {"port", (*server)->port()},
                                {"path", server_options.path}});
  while (!StopRequested()) SleepUnlessStopped(absl::Seconds(1));
  LogInfo("webhook stopping", {{"signal", StopSignalNumber()}});
  return kExitOk;
}

}  // namespace ciagent
