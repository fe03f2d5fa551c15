#include "ciagent/pipeline/cargo_messages.h"

#include <fcntl.h>
#include <simdjson.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <string_view>
#include <utility>

#include "absl/cleanup/cleanup.h"
#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "ciagent/base/sha256.h"

namespace ciagent {
namespace {

namespace dom = simdjson::dom;

// A line longer than this is still parsed, but the buffers it grew are
// released afterwards, so one huge diagnostic does not pin memory.
constexpr size_t kRetainedBytes = 1 << 20;
// Files are hashed in chunks of this size.
constexpr size_t kHashChunkBytes = 1 << 20;

absl::string_view AbslView(std::string_view s) {
  return absl::string_view(s.data(), s.size());
}

// Take simdjson_result, not element: converting a missing field to an
// element would throw.
std::string_view StringOr(simdjson::simdjson_result<dom::element> value,
                          std::string_view fallback) {
  std::string_view text;
  return value.get_string().get(text) == simdjson::SUCCESS ? text : fallback;
}

bool BoolOr(simdjson::simdjson_result<dom::element> value, bool fallback) {
  bool b;
  return value.get_bool().get(b) == simdjson::SUCCESS ? b : fallback;
}

// rustc's and cargo's own summaries of a unit's diagnostics. Cargo drops
// rustc's from its JSON output and prints its own on stderr only, but an
// older cargo, or rustc run directly, may still send them.
bool IsSummary(absl::string_view text) {
  return absl::StartsWith(text, "aborting due to") ||
         absl::EndsWith(text, "warning emitted") ||
         absl::EndsWith(text, "warnings emitted") ||
         (absl::StrContains(text, ") generated ") &&
          absl::StrContains(text, " warning"));
}

}  // namespace

struct CargoMessageParser::Json {
  // The root element stays valid until the next Parse.
  simdjson::simdjson_result<dom::element> Parse(absl::string_view text) {
    if (text.size() <= kRetainedBytes &&
        capacity > kRetainedBytes + simdjson::SIMDJSON_PADDING) {
      parser = dom::parser();
      buffer.reset();
      capacity = 0;
    }
    const size_t needed = text.size() + simdjson::SIMDJSON_PADDING;
    if (capacity < needed) {
      buffer = std::make_unique_for_overwrite<char[]>(needed);
      capacity = needed;
    }
    if (!text.empty()) std::memcpy(buffer.get(), text.data(), text.size());
    std::memset(buffer.get() + text.size(), 0, simdjson::SIMDJSON_PADDING);
    return parser.parse(buffer.get(), text.size(),
                        /*realloc_if_needed=*/false);
  }

  dom::parser parser;
  std::unique_ptr<char[]> buffer;
  size_t capacity = 0;
};

// The fields of one message that matter here; views into the parsed
// document, valid until the next line.
struct CargoMessageParser::Message {
  std::string_view package_id;
  // compiler-artifact
  std::string_view manifest_path;
  std::string_view target_name;
  bool bin_target = false;
  std::string_view executable;  // empty when null
  bool test_profile = false;
  bool fresh = false;
  // compiler-message
  std::string_view level;
  std::string_view text;
  std::string_view rendered;
  bool has_rendered = false;
  bool has_spans = false;
  bool has_code = false;
};

CargoMessageParser::CargoMessageParser() : json_(std::make_unique<Json>()) {}
CargoMessageParser::CargoMessageParser(CargoMessageParser&&) noexcept = default;
CargoMessageParser& CargoMessageParser::operator=(
    CargoMessageParser&&) noexcept = default;
CargoMessageParser::~CargoMessageParser() = default;

bool CargoMessageParser::AddLine(absl::string_view line,
                                 std::string* rendered) {
  if (rendered != nullptr) rendered->clear();
  line = absl::StripAsciiWhitespace(line);
  if (line.empty() || line.front() != '{') return false;
  // A moved-from parser gets fresh buffers rather than crashing.
  if (json_ == nullptr) json_ = std::make_unique<Json>();
  dom::object object;
  if (json_->Parse(line).get_object().get(object) != simdjson::SUCCESS) {
    return false;
  }
  std::string_view reason;
  if (object["reason"].get_string().get(reason) != simdjson::SUCCESS) {
    return false;  // JSON, but not cargo's
  }
  Message message;
  message.package_id = StringOr(object["package_id"], "");
  if (reason == "compiler-artifact") {
    dom::object target;
    if (object["target"].get_object().get(target) == simdjson::SUCCESS) {
      message.target_name = StringOr(target["name"], "");
      dom::array kinds;
      if (target["kind"].get_array().get(kinds) == simdjson::SUCCESS) {
        for (dom::element kind : kinds) {
          std::string_view text;
          if (kind.get_string().get(text) == simdjson::SUCCESS &&
              text == "bin") {
            message.bin_target = true;
          }
        }
      }
    }
    message.executable = StringOr(object["executable"], "");
    message.manifest_path = StringOr(object["manifest_path"], "");
    message.test_profile = BoolOr(object["profile"]["test"], false);
    message.fresh = BoolOr(object["fresh"], false);
    AddArtifact(message);
  } else if (reason == "compiler-message") {
    dom::object diagnostic;
    if (object["message"].get_object().get(diagnostic) == simdjson::SUCCESS) {
      message.level = StringOr(diagnostic["level"], "");
      message.text = StringOr(diagnostic["message"], "");
      message.has_rendered = diagnostic["rendered"].get_string().get(
                                 message.rendered) == simdjson::SUCCESS;
      dom::array spans;
      message.has_spans =
          diagnostic["spans"].get_array().get(spans) == simdjson::SUCCESS &&
          spans.size() > 0;
      dom::element code;
      message.has_code =
          diagnostic["code"].get(code) == simdjson::SUCCESS && !code.is_null();
      AddDiagnostic(message);
      if (rendered != nullptr && message.has_rendered) {
        absl::string_view text = AbslView(message.rendered);
        while (absl::ConsumeSuffix(&text, "\n")) {
        }
        rendered->assign(text.data(), text.size());
      }
    }
  } else if (reason == "build-finished") {
    finished_ = true;
    success_ = BoolOr(object["success"], false);
    // Cargo's deduplication of diagnostics is per invocation.
    seen_diagnostics_.clear();
  }
  return true;
}

void CargoMessageParser::AddArtifact(const Message& message) {
  const bool local = IsLocalPackageId(AbslView(message.package_id));
  ++units_;
  if (message.fresh) ++fresh_units_;
  if (!local) {
    ++dependency_units_;
    if (message.fresh) ++fresh_dependency_units_;
    return;
  }
  if ((message.test_profile || message.bin_target) &&
      !message.executable.empty() && !message.manifest_path.empty() &&
      test_executables_.size() < kMaxCargoExecutables &&
      test_executable_paths_.emplace(message.executable).second) {
    test_executables_.push_back(CargoTestExecutable{
        .path = std::string(message.executable),
        .package_id = std::string(message.package_id),
        .manifest_path = std::string(message.manifest_path),
        .target_name = std::string(message.target_name),
        .harness = message.test_profile});
  }
  if (!message.bin_target || message.test_profile ||
      message.executable.empty() ||
      executables_.size() >= kMaxCargoExecutables) {
    return;
  }
  std::string_view name = message.target_name;
  if (name.empty()) {
    const size_t slash = message.executable.find_last_of('/');
    name = slash == std::string_view::npos
               ? message.executable
               : message.executable.substr(slash + 1);
  }
  // A path ending in '/' names no file: not an executable cargo wrote.
  if (name.empty()) return;
  if (!executable_paths_.emplace(message.executable).second) return;
  executables_.push_back(CargoExecutable{
      .name = std::string(name), .path = std::string(message.executable)});
}

void CargoMessageParser::AddDiagnostic(const Message& message) {
  const bool warning = message.level == "warning";
  const bool error = message.level == "error" ||
                     absl::StartsWith(AbslView(message.level), "error:");
  if (!warning && !error) return;  // notes, help, failure-notes
  if (!message.has_spans && !message.has_code &&
      IsSummary(AbslView(message.text))) {
    return;
  }
  if (message.has_rendered &&
      !seen_diagnostics_.insert(std::hash<std::string_view>()(message.rendered))
           .second) {
    return;
  }
  if (warning) {
    ++warnings_;
  } else {
    ++errors_;
  }
}

bool IsLocalPackageId(absl::string_view package_id) {
  return absl::StartsWith(package_id, "path+file://") ||
         (absl::EndsWith(package_id, ")") &&
          absl::StrContains(package_id, " (path+file://"));
}

absl::StatusOr<Artifact> DescribeArtifact(absl::string_view name,
                                          absl::string_view path) {
  Artifact artifact;
  artifact.name = std::string(name);
  artifact.path = std::string(path);
  const auto error = [&](absl::string_view what) {
    return absl::StrCat("artifact ", name, ": ", path, ": ", what);
  };
  const int fd = ::open(artifact.path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    const int e = errno;
    if (e == ENOENT || e == ENOTDIR) {
      return absl::NotFoundError(error(std::strerror(e)));
    }
    return absl::UnavailableError(error(std::strerror(e)));
  }
  absl::Cleanup close_fd = [fd] { ::close(fd); };
  struct stat st;
  if (::fstat(fd, &st) != 0) {
    return absl::UnavailableError(error(std::strerror(errno)));
  }
  if (!S_ISREG(st.st_mode)) {
    return absl::FailedPreconditionError(error("not a regular file"));
  }

  Sha256 hash;
  auto chunk = std::make_unique_for_overwrite<char[]>(kHashChunkBytes);
  while (true) {
    const ssize_t n = ::read(fd, chunk.get(), kHashChunkBytes);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return absl::UnavailableError(error(std::strerror(errno)));
    if (n == 0) break;
    hash.Update(absl::string_view(chunk.get(), static_cast<size_t>(n)));
    artifact.size_bytes += n;
  }
  artifact.sha256 = hash.HexDigest();
  return artifact;
}

}  // namespace ciagent
