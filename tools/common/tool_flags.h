// Command-line handling shared by the tools (ci-consume, ci-build, ...),
// built on absl flags but with the behaviour the tools document:
//
// - flags may be spelled --kebab-case (--create-group) or as declared
//   (--create_group); "--flag value" and "--flag=value" both work; a bool
//   flag alone means true and --no-flag (or --noflag) false;
// - an unknown flag or a bad value is a kInvalidArgument status (the tool
//   exits 2), not absl's exit(1);
// - --help / -h prints the usage message and the tool's own flags with
//   their defaults, then ParseToolFlags reports `help_shown` (exit 0);
// - arguments that are not flags are refused, unless the tool takes them
//   (ToolSyntax::positional_args: a command and its operands, as ci-queue).
#ifndef CIAGENT_TOOLS_COMMON_TOOL_FLAGS_H_
#define CIAGENT_TOOLS_COMMON_TOOL_FLAGS_H_

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace ciagent {

struct ToolStart {
  // --help was printed: the tool should exit 0 at once.
  bool help_shown = false;
  // The arguments that are not flags, in order (ToolSyntax::positional_args).
  std::vector<std::string> args;
  // The flags given, by declared name ("create_group"), so that a tool with
  // commands can refuse a flag its command does not take.
  std::vector<std::string> flags_given;
};

struct ToolSyntax {
  // Accept arguments that are not flags (anything after "--" too).
  bool positional_args = false;
};

// Everything a tool does before its own work: first the SIGTERM/SIGINT
// handlers (a signal during start-up is a stop request, not death) and
// SIGPIPE ignored (a dead Redis connection is an error, not a crash); then
// the log level from CIAGENT_LOG_LEVEL and argv into the absl flags defined
// under tools/ (positional arguments are refused unless `syntax` allows
// them). `usage` opens --help. kInvalidArgument for a bad command line.
absl::StatusOr<ToolStart> StartTool(int argc, char** argv,
                                    absl::string_view usage,
                                    ToolSyntax syntax = {});

// The value of environment variable `name`, or `fallback` when unset/empty.
std::string EnvOr(const char* name, absl::string_view fallback);

// `flag` when set; else EnvOr(env, fallback). Flags whose default comes from
// the environment keep an empty declared default, so --help never prints an
// environment value (REDIS_URL may hold a password).
std::string FlagOrEnv(const std::string& flag, const char* env,
                      absl::string_view fallback);

// This agent's name among consumers: POD_NAME, else the hostname.
std::string DefaultConsumerName();

}  // namespace ciagent

#endif  // CIAGENT_TOOLS_COMMON_TOOL_FLAGS_H_
