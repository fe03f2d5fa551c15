// Structured logging: one JSON object per line on stderr.
//
//   {"ts":"2026-11-27T05:40:00.123Z","level":"info","msg":"claimed job",
//    "job_id":"push-1234","stream_id":"1795757890706-0","attempt":1}
//
// `ts`, `level` and `msg` are always present; `job_id` when a job is set
// with SetLogJobId(); then the call's fields in order. Every registered
// secret (RegisterSecret) is replaced by "[MASKED]" in the whole line before
// it is written, as a last line of defence: code must still never log a
// secret on purpose.
//
// Example:
//   LogInfo("claimed job", {{"stream_id", id}, {"attempt", attempt}});
//   LogWarning("redis unavailable, retrying", {{"error", status}});
//
// Thread-safe: lines from concurrent threads never interleave.
#ifndef CIAGENT_BASE_LOG_H_
#define CIAGENT_BASE_LOG_H_

#include <cstdint>
#include <functional>
#include <initializer_list>
#include <string>
#include "absl/strings/string_view.h"

#include "absl/status/status.h"
#include "absl/time/time.h"

namespace ciagent {

enum class LogLevel { kDebug = 0, kInfo = 1, kWarning = 2, kError = 3 };

// One key and its value, already rendered as JSON.
class LogField {
 public:
  LogField(absl::string_view key, absl::string_view value);
  LogField(absl::string_view key, const char* value)
      : LogField(key, absl::string_view(value)) {}
  LogField(absl::string_view key, const std::string& value)
      : LogField(key, absl::string_view(value)) {}
  LogField(absl::string_view key, int64_t value);
  LogField(absl::string_view key, int value)
      : LogField(key, static_cast<int64_t>(value)) {}
  LogField(absl::string_view key, uint64_t value);
  LogField(absl::string_view key, double value);
  LogField(absl::string_view key, bool value);
  // Milliseconds, as a number.
  LogField(absl::string_view key, absl::Duration value);
  // The status as "CODE: message" (OK for OK).
  LogField(absl::string_view key, const absl::Status& status);

  absl::string_view key() const { return key_; }
  absl::string_view json_value() const { return json_value_; }

 private:
  std::string key_;
  std::string json_value_;
};

void Log(LogLevel level, absl::string_view msg,
         std::initializer_list<LogField> fields = {});
inline void LogDebug(absl::string_view msg,
                     std::initializer_list<LogField> fields = {}) {
  Log(LogLevel::kDebug, msg, fields);
}
inline void LogInfo(absl::string_view msg,
                    std::initializer_list<LogField> fields = {}) {
  Log(LogLevel::kInfo, msg, fields);
}
inline void LogWarning(absl::string_view msg,
                       std::initializer_list<LogField> fields = {}) {
  Log(LogLevel::kWarning, msg, fields);
}
inline void LogError(absl::string_view msg,
                     std::initializer_list<LogField> fields = {}) {
  Log(LogLevel::kError, msg, fields);
}

// Lines below `level` are dropped. Default kInfo; CIAGENT_LOG_LEVEL
// (debug|info|warning|error) is read by tools through ParseLogLevel.
void SetMinLogLevel(LogLevel level);
bool ParseLogLevel(absl::string_view name, LogLevel* level);

// The job every following line is about; empty clears it.
void SetLogJobId(absl::string_view job_id);

// Masks `secret` in every later line. Values shorter than 4 bytes are
// ignored (masking them would garble unrelated text).
void RegisterSecret(absl::string_view secret);

// Returns `text` with every registered secret replaced by "[MASKED]".
std::string MaskSecrets(absl::string_view text);

// Redirects lines (without the trailing newline) to `sink`; nullptr
// restores stderr. For tests.
void SetLogSinkForTesting(std::function<void(absl::string_view line)> sink);

}  // namespace ciagent

#endif  // CIAGENT_BASE_LOG_H_
