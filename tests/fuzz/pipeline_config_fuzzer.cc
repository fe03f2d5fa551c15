// libFuzzer target for the repository's pipeline configuration reader
// (pipeline/pipeline_config.h): Cargo.toml bytes from an untrusted
// repository. Beyond "no crash, no sanitizer report", it checks what the
// agent relies on:
//   - every rejection is kInvalidArgument with a short message;
//   - an accepted configuration never carries an argument the agent
//     controls (--target-dir, --config, ...) before a `--`, nor a reserved
//     variable, nor a Dockerfile or context leaving the checkout;
//   - timeouts are positive and within the maximum;
//   - its JSON is produced for any accepted configuration.
// Any violation calls abort() so the fuzzer records the input.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/match.h"
#include "absl/strings/string_view.h"
#include "ciagent/pipeline/pipeline_config.h"

namespace {

void Check(bool condition, const char* what) {
  if (!condition) {
    std::fprintf(stderr, "pipeline_config_fuzzer: violated: %s\n", what);
    std::abort();
  }
}

void CheckTimeout(const std::optional<absl::Duration>& timeout,
                  absl::Duration max) {
  if (!timeout.has_value()) return;
  Check(*timeout > absl::ZeroDuration() && *timeout <= max,
        "timeouts are positive and within the maximum");
}

void CheckAccepted(const ciagent::PipelineConfig& config, absl::Duration max) {
  CheckTimeout(config.timeout, max);
  for (absl::string_view step : {"check", "build", "test", "clippy", "audit"}) {
    const ciagent::StepConfig& settings = *config.Step(step);
    CheckTimeout(settings.timeout, max);
    for (const std::string& arg : settings.args) {
      if (arg == "--") break;
      Check(!absl::StartsWith(arg, "--target-dir") &&
                !absl::StartsWith(arg, "--manifest-path") &&
                !absl::StartsWith(arg, "--config") &&
                !absl::StartsWith(arg, "-Z"),
            "no argument the agent controls before --");
    }
  }
  for (const auto& [name, value] : config.env) {
    Check(name != "PATH" && name != "RUSTC_WRAPPER" && name != "HOME" &&
              !absl::StartsWith(name, "LD_"),
          "no reserved variable");
  }
  for (const std::string* path :
       {&config.image.dockerfile, &config.image.context}) {
    Check(!path->empty() && (*path)[0] != '/' && *path != ".." &&
              !absl::StartsWith(*path, "../") &&
              !absl::StrContains(*path, "/../") &&
              !absl::EndsWith(*path, "/.."),
          "image paths stay inside the checkout");
  }
  Check(!ciagent::PipelineConfigJson(config).empty(), "JSON produced");
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const absl::string_view input(reinterpret_cast<const char*>(data), size);
  const absl::Duration max = absl::Hours(2);
  absl::StatusOr<ciagent::PipelineConfig> config =
      ciagent::ParsePipelineConfig(input, {.max_timeout = max});
  if (config.ok()) {
    CheckAccepted(*config, max);
  } else {
    Check(config.status().code() == absl::StatusCode::kInvalidArgument,
          "rejections are kInvalidArgument");
    Check(config.status().message().size() < 600, "messages are short");
  }
  return 0;
}
