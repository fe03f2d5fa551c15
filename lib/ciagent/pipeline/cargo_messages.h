// Cargo's JSON messages (`--message-format=json` or
// `json-render-diagnostics`), read from cargo's stdout one line at a time
// and reduced to what the pipeline reports: the workspace's executables,
// warning and error counts, how many units were fresh, and whether the
// build finished successfully. Pure logic: bytes in, values out, no I/O —
// except DescribeArtifact, which hashes a file.
//
// Which format to ask for: with `json-render-diagnostics` cargo renders
// compiler diagnostics itself, to stderr, and puts *none* of them on stdout,
// so warnings() and errors() stay 0 (the executables, units and
// build-finished are there). To count diagnostics (clippy warnings), run
// cargo with `--message-format=json` and show people the `rendered` text
// AddLine hands back.
//
// Example:
//   CargoMessageParser cargo;
//   // for each stdout line of `cargo clippy --message-format=json`:
//   std::string rendered;
//   if (!cargo.AddLine(line, &rendered)) {
//     log(line);              // not a cargo message: show it as it is
//   } else if (!rendered.empty()) {
//     log(rendered);          // a diagnostic, as cargo would print it
//   }
//   int64_t warnings = cargo.warnings();
//   for (const CargoExecutable& exe : cargo.executables()) {
//     CIAGENT_ASSIGN_OR_RETURN(Artifact artifact,
//                              DescribeArtifact(exe.name, exe.path));
//   }
//
// Memory stays bounded: diagnostics are remembered as 64-bit hashes until
// the end of their cargo invocation, executables are capped at
// kMaxCargoExecutables.
//
// Thread-safety: a CargoMessageParser is not thread-safe (one per pipeline
// run); DescribeArtifact is.
#ifndef CIAGENT_PIPELINE_CARGO_MESSAGES_H_
#define CIAGENT_PIPELINE_CARGO_MESSAGES_H_

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <set>
#include <string>
#include <unordered_set>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "ciagent/pipeline/pipeline_result.h"

namespace ciagent {

// At most this many executables are kept; later ones are dropped.
inline constexpr size_t kMaxCargoExecutables = 1000;

// A binary target's executable, built for one of the workspace's (local
// path) packages.
struct CargoExecutable {
  std::string name;  // the target's name, e.g. "app"
  std::string path;  // as cargo reports it: absolute, in the target dir

  friend bool operator==(const CargoExecutable&,
                         const CargoExecutable&) = default;
};

// An executable of a local package that `cargo test` runs (a test harness)
// or that its tests may run (a bin target: CARGO_BIN_EXE_<name>), from
// `cargo test --no-run --message-format=json` (test_retry.h).
struct CargoTestExecutable {
  std::string path;           // as cargo reports it: absolute
  std::string package_id;     // e.g. "path+file:///src/app#0.1.0"
  std::string manifest_path;  // the package's Cargo.toml
  std::string target_name;    // e.g. "app", "api"
  bool harness = false;       // a test harness (profile.test), else a bin

  friend bool operator==(const CargoTestExecutable&,
                         const CargoTestExecutable&) = default;
};

// Incremental reader of cargo's JSON messages; feed it every stdout line of
// one or more cargo invocations (each ends with `build-finished`).
//
// Counted:
//   - executables: `compiler-artifact` messages of `bin` targets of local
//     packages (package_id `path+file://...`, or the older
//     `name version (path+file://...)`) that have an `executable`, except
//     test harnesses (`profile.test`); deduplicated by path, in order.
//     Examples, benches and registry or git dependencies are not counted.
//   - test executables: test harnesses and bin targets of local packages
//     that have an `executable`, deduplicated by path, in order, at most
//     kMaxCargoExecutables.
//   - warnings / errors: `compiler-message` messages of level "warning" /
//     "error" (an internal compiler error counts as an error). Like cargo,
//     a diagnostic whose rendered text was already seen in the same cargo
//     invocation (the same lint in a lib and its test target) counts once,
//     and summaries ("2 warnings emitted", "aborting due to 3 previous
//     errors", "`app` (lib) generated 2 warnings") do not count.
//   - units: every `compiler-artifact`, and those that were `fresh` (not
//     rebuilt); the same for dependency units alone (packages that are not
//     local), whose fresh share is the dependency cache's hit rate.
//   - build-finished: whether it was seen and its `success`.
//
// Lines may arrive with or without their "\n" / "\r\n" and may hold any
// bytes; no input makes the parser fail.
class CargoMessageParser {
 public:
  CargoMessageParser();
  CargoMessageParser(CargoMessageParser&&) noexcept;
  CargoMessageParser& operator=(CargoMessageParser&&) noexcept;
  ~CargoMessageParser();

  // Reads one stdout line. Returns false when the line is not a cargo JSON
  // message (a build script's or a test's stray print): the caller should
  // show it as it is. When `rendered` is not null it is set to the text a
  // person should see for the message: a `compiler-message`'s rendered
  // diagnostic (several lines, without a final newline), otherwise empty.
  bool AddLine(absl::string_view line, std::string* rendered = nullptr);

  const std::vector<CargoExecutable>& executables() const {
    return executables_;
  }
  const std::vector<CargoTestExecutable>& test_executables() const {
    return test_executables_;
  }
  int64_t warnings() const { return warnings_; }
  int64_t errors() const { return errors_; }
  int64_t units() const { return units_; }
  int64_t fresh_units() const { return fresh_units_; }
  int64_t dependency_units() const { return dependency_units_; }
  int64_t fresh_dependency_units() const { return fresh_dependency_units_; }
  // A `build-finished` message was seen; success() is that of the last one.
  bool finished() const { return finished_; }
  bool success() const { return success_; }

 private:
  // Padded input and JSON parser, reused from line to line.
  struct Json;
  struct Message;

  void AddArtifact(const Message& message);
  void AddDiagnostic(const Message& message);

  std::unique_ptr<Json> json_;
  std::vector<CargoExecutable> executables_;
  std::set<std::string, std::less<>> executable_paths_;
  std::vector<CargoTestExecutable> test_executables_;
  std::set<std::string, std::less<>> test_executable_paths_;
  // Hashes of the diagnostics of the current invocation.
  std::unordered_set<uint64_t> seen_diagnostics_;
  int64_t warnings_ = 0;
  int64_t errors_ = 0;
  int64_t units_ = 0;
  int64_t fresh_units_ = 0;
  int64_t dependency_units_ = 0;
  int64_t fresh_dependency_units_ = 0;
  bool finished_ = false;
  bool success_ = false;
};

// True for the package_id of a local (path) package, in cargo's current
// form (`path+file:///src/app#0.1.0`, `path+file:///src/x#app@0.1.0`) or
// the older one (`app 0.1.0 (path+file:///src/app)`).
bool IsLocalPackageId(absl::string_view package_id);

// The release artifact at `path`: `name`, `path`, its size and the
// lowercase hex SHA-256 of its bytes. The file is read in chunks, so any
// size is fine.
//
// kNotFound when `path` does not exist; kFailedPrecondition when it is not
// a regular file; kUnavailable on read errors (an infrastructure failure).
absl::StatusOr<Artifact> DescribeArtifact(absl::string_view name,
                                          absl::string_view path);

}  // namespace ciagent

#endif  // CIAGENT_PIPELINE_CARGO_MESSAGES_H_
