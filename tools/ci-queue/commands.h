// The commands of ci-queue: each takes the parsed command line, calls
// QueueAdmin once (or in a loop, for --watch and --follow) and prints the
// result through format.h.
#ifndef CIAGENT_TOOLS_CI_QUEUE_COMMANDS_H_
#define CIAGENT_TOOLS_CI_QUEUE_COMMANDS_H_

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "ciagent/queue/queue_admin.h"
#include "format.h"

namespace ciagent {

// The flags and operands of one ci-queue run (main.cc fills it).
struct CommandLine {
  std::vector<std::string> operands;  // after the command's name
  Style style;
  bool terminal = false;  // stdout is a terminal
  bool json = false;
  bool watch = false;
  absl::Duration interval = absl::Seconds(2);
  std::string status;
  int limit = 20;
  bool follow = false;
  std::string step;
  std::string reason;
  std::string job_id, repo, branch, commit, steps;
  int timeout_s = 0;
  bool all = false;
  bool dry_run = false;
  std::string older_than;
  // The connection the command talks through (webhook: its own queue).
  RedisOptions redis;
};

using CommandFunction = absl::StatusOr<int> (*)(QueueAdmin& admin,
                                                const CommandLine& line);

// The command the first of `args` name ("list", "dead redrive", ...), with
// the rest of them as its `operands`. kInvalidArgument for an unknown
// command, a wrong number of operands, or a flag of `flags_given` (by
// declared name) that the command does not take.
//
// What the commands return: the exit code of a command that ran (logs
// --follow: 0 success, 1 any other outcome; dead redrive: 1 when a dead
// letter was refused or missing), kInvalidArgument for a bad flag value.
// `ci-queue webhook` (webhook_command.cc): serves push deliveries until a
// stop signal; exit 0 then.
absl::StatusOr<int> RunWebhook(QueueAdmin& admin, const CommandLine& line);

absl::StatusOr<CommandFunction> ChooseCommand(
    const std::vector<std::string>& args,
    const std::vector<std::string>& flags_given,
    std::vector<std::string>* operands);

}  // namespace ciagent

#endif  // CIAGENT_TOOLS_CI_QUEUE_COMMANDS_H_
