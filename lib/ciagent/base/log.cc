#include "ciagent/base/log.h"

#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "ciagent/base/clock.h"
#include "ciagent/base/json_writer.h"
#include "ciagent/base/secret_masker.h"

namespace ciagent {
namespace {

struct LoggerState {
  absl::Mutex mu;
  std::string job_id ABSL_GUARDED_BY(mu);
  std::vector<std::string> secrets ABSL_GUARDED_BY(mu);
  // Rebuilt from `secrets` on each registration (rare); used on every line.
  SecretMasker masker ABSL_GUARDED_BY(mu);
  std::function<void(absl::string_view)> sink ABSL_GUARDED_BY(mu);
};

LoggerState& State() {
  static LoggerState* const state = new LoggerState();
  return *state;
}

std::atomic<int> min_level{static_cast<int>(LogLevel::kInfo)};

absl::string_view LevelName(LogLevel level) {
  switch (level) {
    case LogLevel::kDebug: return "debug";
    case LogLevel::kInfo: return "info";
    case LogLevel::kWarning: return "warning";
    case LogLevel::kError: return "error";
  }
  return "info";
}

void WriteAll(int fd, absl::string_view data) {
  while (!data.empty()) {
    ssize_t n = ::write(fd, data.data(), data.size());
    if (n <= 0) {
      if (n < 0 && errno == EINTR) continue;
      return;  // stderr is gone; nothing sensible to do
    }
    data.remove_prefix(static_cast<size_t>(n));
  }
}

}  // namespace

LogField::LogField(absl::string_view key, absl::string_view value)
    : key_(key), json_value_(JsonQuote(value)) {}
LogField::LogField(absl::string_view key, int64_t value)
    : key_(key), json_value_(absl::StrCat(value)) {}
LogField::LogField(absl::string_view key, uint64_t value)
    : key_(key), json_value_(absl::StrCat(value)) {}
LogField::LogField(absl::string_view key, double value)
    : key_(key),
      json_value_(std::isfinite(value) ? absl::StrCat(value) : "null") {}
LogField::LogField(absl::string_view key, bool value)
    : key_(key), json_value_(value ? "true" : "false") {}
LogField::LogField(absl::string_view key, absl::Duration value)
    : key_(key), json_value_(absl::StrCat(absl::ToInt64Milliseconds(value))) {}
LogField::LogField(absl::string_view key, const absl::Status& status)
    : key_(key), json_value_(JsonQuote(status.ToString())) {}

void Log(LogLevel level, absl::string_view msg,
         std::initializer_list<LogField> fields) {
  if (static_cast<int>(level) < min_level.load(std::memory_order_relaxed)) {
    return;
  }
  LoggerState& state = State();
  absl::MutexLock lock(&state.mu);
  std::string line = "{\"ts\":";
  AppendJsonString(&line, FormatTimestamp(RealClock()->Now()));
  absl::StrAppend(&line, ",\"level\":\"", LevelName(level), "\",\"msg\":");
  AppendJsonString(&line, msg);
  if (!state.job_id.empty()) {
    line.append(",\"job_id\":");
    AppendJsonString(&line, state.job_id);
  }
  for (const LogField& field : fields) {
    line.push_back(',');
    AppendJsonString(&line, field.key());
    line.push_back(':');
    absl::StrAppend(&line, field.json_value());
  }
  line.push_back('}');
  line = state.masker.Mask(line);
  if (state.sink) {
    state.sink(line);
    return;
  }
  line.push_back('\n');
  WriteAll(STDERR_FILENO, line);
}

void SetMinLogLevel(LogLevel level) {
  min_level.store(static_cast<int>(level), std::memory_order_relaxed);
}

bool ParseLogLevel(absl::string_view name, LogLevel* level) {
  for (LogLevel candidate : {LogLevel::kDebug, LogLevel::kInfo,
                             LogLevel::kWarning, LogLevel::kError}) {
    if (name == LevelName(candidate)) {
      *level = candidate;
      return true;
    }
  }
  return false;
}

void SetLogJobId(absl::string_view job_id) {
  LoggerState& state = State();
  absl::MutexLock lock(&state.mu);
  state.job_id = std::string(job_id);
}

void RegisterSecret(absl::string_view secret) {
  if (secret.size() < SecretMasker::kMinSecretLength) return;
  LoggerState& state = State();
  absl::MutexLock lock(&state.mu);
  if (std::find(state.secrets.begin(), state.secrets.end(), secret) !=
      state.secrets.end()) {
    return;
  }
  state.secrets.emplace_back(secret);
  // JSON-escaped forms of a secret must be masked too.
  std::string quoted = JsonQuote(secret);
  std::string escaped = quoted.substr(1, quoted.size() - 2);
  if (escaped != secret) state.secrets.push_back(std::move(escaped));
  state.masker = SecretMasker(state.secrets);
}

std::string MaskSecrets(absl::string_view text) {
  LoggerState& state = State();
  absl::MutexLock lock(&state.mu);
  return state.masker.Mask(text);
}

void SetLogSinkForTesting(std::function<void(absl::string_view line)> sink) {
  LoggerState& state = State();
  absl::MutexLock lock(&state.mu);
  state.sink = std::move(sink);
}

}  // namespace ciagent
