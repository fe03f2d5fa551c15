// The pipeline configuration a repository keeps in its root Cargo.toml:
// `[workspace.metadata.ciagent]`, or `[package.metadata.ciagent]` for a
// single-crate repository (docs/pipeline-config.md has every key).
//
//   [workspace.metadata.ciagent]
//   features = ["tls"]
//   [workspace.metadata.ciagent.clippy]
//   args = ["--", "-D", "warnings"]
//   allow-failure = true
//
// The repository is untrusted input. ParsePipelineConfig is pure (bytes in,
// configuration or error out, no I/O) and refuses, with the key's full path
// and the rule, anything of the wrong type, out of range, or that would take
// over what the agent controls: cargo arguments such as --target-dir or
// --config, variables such as RUSTC_WRAPPER or LD_PRELOAD, a Dockerfile
// outside the checkout. Unknown keys are not errors: each gives one warning
// (with the known key it probably meant), which the pipeline logs.
//
// Who decides what (see EffectiveConfig): the job (its producer) over the
// repository over the agent's flags. The pipeline (pipeline.h) turns the
// result into each step's argv, its allow-failure and its timeout.
//
// Example:
//   CIAGENT_ASSIGN_OR_RETURN(PipelineConfig repository,
//                            ReadPipelineConfig(source_dir, {}));
//   PipelineConfig config = EffectiveConfig(std::move(repository), job);
//
// Errors: kInvalidArgument for a configuration the repository must fix (the
// job ends `error`, not retried); kFailedPrecondition when Cargo.toml cannot
// be read. Thread-safe: no state.
#ifndef CIAGENT_PIPELINE_PIPELINE_CONFIG_H_
#define CIAGENT_PIPELINE_PIPELINE_CONFIG_H_

#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "ciagent/job/job.h"

namespace ciagent {

// The settings of one cargo step (check, build, test, clippy, audit).
struct StepConfig {
  // Appended to the step's cargo command, as argv (never through a shell).
  std::vector<std::string> args;
  // The step may fail without failing the job.
  bool allow_failure = false;
  // nullopt: the agent's step timeout.
  std::optional<absl::Duration> timeout;

  friend bool operator==(const StepConfig&, const StepConfig&) = default;
};

enum class TestRunner {
  kAuto,     // nextest when cargo-nextest is installed, else cargo test
  kNextest,  // cargo nextest; the step fails when it is not installed
  kCargo,    // cargo test
};

// "auto", "nextest", "cargo".
absl::string_view TestRunnerName(TestRunner runner);

// What a flaky test (failed, then passed on a retry) does to the job.
enum class FlakyPolicy {
  kPass,  // it passes, reported as flaky
  kFail,  // it fails the test step, like a failed test
};

// "pass", "fail".
absl::string_view FlakyPolicyName(FlakyPolicy policy);

struct ImageConfig {
  // Relative to the checkout, inside it.
  std::string dockerfile = "Dockerfile";
  // The build context, relative to the checkout, inside it. The Dockerfile
  // must lie inside the context.
  std::string context = ".";
  // Repository part of the pushed reference ("team/app"); empty: the
  // job's, else the repository URL's path.
  std::string name;
  // --build-arg NAME=VALUE, in the file's order. Not secret: they are
  // logged and recorded in the image's history.
  std::vector<std::pair<std::string, std::string>> build_args;

  // Assembly (image/assembly.h): with `base` set the image is written
  // directly as OCI data -- the base's layers plus one layer holding the
  // binaries -- with no Dockerfile, builder, daemon or root. The keys below
  // apply to assembly only.
  //
  // "registry/ns/base:tag" or "...@sha256:<hex>"; without a registry host,
  // the agent's registry (REGISTRY_URL).
  std::string base;
  // Release executables to copy, by name; empty: every one the build made.
  std::vector<std::string> binaries;
  // Absolute directory in the image that receives them.
  std::string path = "/usr/local/bin";
  // Empty: <path>/<the only binary>.
  std::vector<std::string> entrypoint;
  // Arguments after the entrypoint; the base's Cmd is never kept.
  std::vector<std::string> cmd;
  // Set in the image over the base's, in the file's order.
  std::vector<std::pair<std::string, std::string>> env;
  // Empty: the base's, else "/".
  std::string workdir;
  // "uid[:gid]" or a name the base knows; a non-root uid by default.
  std::string user = "65532";
  // "8080/tcp", "53/udp" (a bare number means tcp).
  std::vector<std::string> ports;
  // Image labels over the base's, in the file's order.
  std::vector<std::pair<std::string, std::string>> labels;

  bool assembled() const { return !base.empty(); }

  friend bool operator==(const ImageConfig&, const ImageConfig&) = default;
};

struct PipelineConfig {
  // Where it came from: "workspace.metadata.ciagent",
  // "package.metadata.ciagent", or "" (no table: the defaults).
  std::string source;
  // Steps to run (job.h kKnownSteps), in any order; empty: all.
  std::vector<std::string> steps;
  // --features a,b / --all-features / --no-default-features on check,
  // build, test and clippy.
  std::vector<std::string> features;
  bool all_features = false;
  bool no_default_features = false;
  // -p each; empty: --workspace (with --exclude each of `exclude`).
  std::vector<std::string> packages;
  std::vector<std::string> exclude;
  // Non-secret variables for every step, in the file's order.
  std::vector<std::pair<std::string, std::string>> env;
  // The job's timeout when the job gives none; nullopt: the agent's.
  std::optional<absl::Duration> timeout;
  StepConfig check, build, test, clippy, audit;
  TestRunner test_runner = TestRunner::kAuto;
  // test.retries: how many more times a failed test runs (0..
  // kMaxTestRetries); nullopt: the agent's default (CI_TEST_RETRIES).
  std::optional<int> test_retries;
  // test.flaky.
  FlakyPolicy flaky = FlakyPolicy::kPass;
  // test.quarantine: names of tests that run and are reported but cannot
  // fail the job, as the test harness prints them ("module::test_name").
  std::vector<std::string> quarantine;
  ImageConfig image;
  // What the reader let through but a person should see: unknown keys
  // (with a suggestion), timeouts cut to the agent's maximum. Logged by
  // the pipeline; not part of the configuration's JSON.
  std::vector<std::string> warnings;

  friend bool operator==(const PipelineConfig&, const PipelineConfig&) =
      default;

  // The settings of cargo step `step`; nullptr for "image" and unknown
  // names.
  const StepConfig* Step(absl::string_view step) const;
  StepConfig* Step(absl::string_view step);
};

struct PipelineConfigOptions {
  // Timeouts above it are cut to it (with a warning): the agent's maximum.
  absl::Duration max_timeout = absl::Seconds(kMaxJobTimeoutSeconds);
  // A larger Cargo.toml is refused before parsing.
  size_t max_bytes = 1 << 20;
};

// Reads the configuration from the text of a root Cargo.toml. A manifest
// without a ciagent table gives the defaults. kInvalidArgument when the
// TOML is malformed or a rule is broken; the message names the key's full
// path and the rule:
//   workspace.metadata.ciagent.clippy.allow-failure: expected a boolean,
//   got "yes"
absl::StatusOr<PipelineConfig> ParsePipelineConfig(
    absl::string_view cargo_toml, const PipelineConfigOptions& options = {});

// ParsePipelineConfig on <source_dir>/Cargo.toml, then the checks that need
// the checkout: the Dockerfile and the context, when they exist, must
// resolve (symlinks followed) inside source_dir. Without a Cargo.toml, the
// defaults (the pipeline reports the missing manifest).
// kFailedPrecondition when the file cannot be read.
absl::StatusOr<PipelineConfig> ReadPipelineConfig(
    const std::string& source_dir, const PipelineConfigOptions& options = {});

// The job's settings over the repository's: the job's steps, timeout,
// test retries and image name replace the repository's; its env is applied after the
// repository's (a name in both takes the job's value). What neither sets
// stays unset, for the agent's defaults.
PipelineConfig EffectiveConfig(PipelineConfig repository, const Job& job);

// The configuration as one JSON object (the status hash's and the result
// file's `config`): every key, defaults included; timeouts in seconds, null
// when unset. Warnings are not included.
std::string PipelineConfigJson(const PipelineConfig& config);

// The agent log line printed when the pipeline starts: where the
// configuration came from, then all of it as PipelineConfigJson writes it:
//   config (from workspace.metadata.ciagent): {"steps":[],...}
//   config (defaults: no ciagent table in Cargo.toml): {...}
std::string PipelineConfigLine(const PipelineConfig& config);

}  // namespace ciagent

#endif  // CIAGENT_PIPELINE_PIPELINE_CONFIG_H_
