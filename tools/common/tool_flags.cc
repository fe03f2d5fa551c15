#include "tool_flags.h"

#include <unistd.h>

#include <algorithm>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <optional>

#include "absl/flags/reflection.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "ciagent/base/log.h"
#include "ciagent/base/status_macros.h"
#include "ciagent/base/stop_signal.h"

namespace ciagent {
namespace {

// Flags of the tools only, not the ones libraries register.
bool IsToolFlag(const absl::CommandLineFlag& flag) {
  return absl::StrContains(flag.Filename(), "tools/");
}

void PrintHelp(absl::string_view usage) {
  std::string text = absl::StrCat(usage, "\n\nFlags:\n");
  std::vector<const absl::CommandLineFlag*> flags;
  for (const auto& [name, flag] : absl::GetAllFlags()) {
    if (IsToolFlag(*flag)) flags.push_back(flag);
  }
  std::sort(flags.begin(), flags.end(),
            [](const auto* a, const auto* b) { return a->Name() < b->Name(); });
  for (const absl::CommandLineFlag* flag : flags) {
    const std::string default_value = flag->DefaultValue();
    absl::StrAppend(&text, "  --",
                    absl::StrReplaceAll(flag->Name(), {{"_", "-"}}), "\n      ",
                    flag->Help());
    if (!default_value.empty()) {
      absl::StrAppend(&text, " (default: ", default_value, ")");
    }
    text.push_back('\n');
  }
  std::fputs(text.c_str(), stdout);
}

}  // namespace

absl::StatusOr<ToolStart> StartTool(int argc, char** argv,
                                    absl::string_view usage,
                                    ToolSyntax syntax) {
  // First: a SIGTERM that arrives while flags are parsed must be seen as a
  // stop request (a claimed job is then requeued), not kill the tool.
  CIAGENT_RETURN_IF_ERROR(InstallStopHandlers());
  // A write to a Redis that just closed its socket must be an error the
  // client retries, not a signal that kills the agent mid-job. (Steps get
  // the default disposition back: see process_runner.h.)
  std::signal(SIGPIPE, SIG_IGN);
  if (LogLevel level;
      ParseLogLevel(EnvOr("CIAGENT_LOG_LEVEL", "info"), &level)) {
    SetMinLogLevel(level);
  }
  ToolStart start;
  bool flags_ended = false;
  for (int i = 1; i < argc; ++i) {
    absl::string_view arg = argv[i];
    if (syntax.positional_args && arg == "--" && !flags_ended) {
      flags_ended = true;
      continue;
    }
    if (flags_ended || !absl::StartsWith(arg, "-") || arg == "-" ||
        arg == "--") {
      if (!syntax.positional_args) {
        return absl::InvalidArgumentError(
            absl::StrCat("unexpected argument \"", arg, "\" (see --help)"));
      }
      start.args.emplace_back(arg);
      continue;
    }
    arg.remove_prefix(absl::StartsWith(arg, "--") ? 2 : 1);
    if (arg == "help" || arg == "h") {
      PrintHelp(usage);
      start.help_shown = true;
      return start;
    }
    const size_t eq = arg.find('=');
    std::string name = absl::StrReplaceAll(arg.substr(0, eq), {{"-", "_"}});
    std::optional<std::string> value;
    if (eq != absl::string_view::npos) value = std::string(arg.substr(eq + 1));

    absl::CommandLineFlag* flag = absl::FindCommandLineFlag(name);
    if ((flag == nullptr || !IsToolFlag(*flag)) &&
        absl::StartsWith(name, "no") && !value.has_value()) {
      // --noflag, --no-flag and --no_flag all negate a bool.
      const size_t skip = absl::StartsWith(name, "no_") ? 3 : 2;
      absl::CommandLineFlag* negated =
          absl::FindCommandLineFlag(name.substr(skip));
      if (negated != nullptr && IsToolFlag(*negated) &&
          negated->IsOfType<bool>()) {
        flag = negated;
        value = "false";
      }
    }
    if (flag == nullptr || !IsToolFlag(*flag)) {
      return absl::InvalidArgumentError(
          absl::StrCat("unknown flag --", arg.substr(0, eq), " (see --help)"));
    }
    if (!value.has_value()) {
      if (flag->IsOfType<bool>()) {
        value = "true";
      } else if (i + 1 < argc) {
        value = argv[++i];
      } else {
        return absl::InvalidArgumentError(
            absl::StrCat("flag --", arg, " needs a value"));
      }
    }
    std::string error;
    if (!flag->ParseFrom(*value, &error)) {
      return absl::InvalidArgumentError(
          absl::StrCat("flag --", arg.substr(0, eq), ": ", error));
    }
    start.flags_given.emplace_back(flag->Name());
  }
  return start;
}

std::string EnvOr(const char* name, absl::string_view fallback) {
  const char* value = std::getenv(name);
  return value != nullptr && *value != '\0' ? std::string(value)
                                            : std::string(fallback);
}

std::string FlagOrEnv(const std::string& flag, const char* env,
                      absl::string_view fallback) {
  return flag.empty() ? EnvOr(env, fallback) : flag;
}

std::string DefaultConsumerName() {
  char host[256] = {};
  ::gethostname(host, sizeof(host) - 1);
  return EnvOr("POD_NAME", host);
}

}  // namespace ciagent
