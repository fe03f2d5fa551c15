// libFuzzer target for cargo's JSON messages, which a build controls (a
// build script can print anything on stdout). Beyond "no crash, no
// sanitizer report", it checks the properties the pipeline relies on:
//   - counts are never negative; fresh units never exceed units, fresh
//     dependency units never exceed dependency units, nor those units;
//   - executables are capped, unique by path, named and absolute-pathed as
//     cargo reported them (never empty);
//   - a rendered diagnostic is handed back only for a line AddLine took as
//     a cargo message.
// Any violation calls abort() so the fuzzer records the input.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <set>
#include <string>

#include "absl/strings/str_split.h"
#include "absl/strings/string_view.h"
#include "ciagent/pipeline/cargo_messages.h"

namespace {

void Check(bool condition, const char* what) {
  if (!condition) {
    std::fprintf(stderr, "cargo_messages_fuzzer: violated: %s\n", what);
    std::abort();
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const absl::string_view input(reinterpret_cast<const char*>(data), size);
  ciagent::CargoMessageParser parser;
  for (absl::string_view line : absl::StrSplit(input, '\n')) {
    std::string rendered;
    const bool taken = parser.AddLine(line, &rendered);
    Check(taken || rendered.empty(), "only cargo messages render");
  }
  Check(parser.warnings() >= 0 && parser.errors() >= 0,
        "diagnostic counts are never negative");
  Check(parser.fresh_units() >= 0 && parser.fresh_units() <= parser.units(),
        "fresh units are among the units");
  Check(parser.dependency_units() <= parser.units() &&
            parser.fresh_dependency_units() <= parser.dependency_units() &&
            parser.fresh_dependency_units() <= parser.fresh_units(),
        "dependency units are among the units");
  Check(parser.executables().size() <= ciagent::kMaxCargoExecutables,
        "executables are capped");
  std::set<std::string> paths;
  for (const ciagent::CargoExecutable& executable : parser.executables()) {
    Check(!executable.name.empty() && !executable.path.empty(),
          "executables have a name and a path");
    Check(paths.insert(executable.path).second, "executables are unique");
  }
  return 0;
}
