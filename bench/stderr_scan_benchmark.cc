// The per-line cost of reading a step's stderr for dependency failures
// (pipeline/dependency_failure.h), which the process runner's thread pays
// for every line cargo and rustc print, next to what it already paid per
// line before: the "No space left on device" check, and the log's secret
// masking (base/secret_masker.h, two secrets) that every line gets on its
// way to Redis.
//
//   BM_DependencyFailureReader   DependencyFailureReader::AddLine
//   BM_DiskFullCheck             absl::StrContains(line, "No space left...")
//   BM_SecretMasking             SecretMasker::Mask with two secrets
//
// The lines are a cargo build's stderr as it usually looks: Compiling and
// Checking lines, warnings with their rendered snippets; no dependency
// error (the common case, where the reader must stay cheap).
//
//   build/bench/stderr_scan_benchmark --benchmark_repetitions=3
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "benchmark/benchmark.h"
#include "ciagent/base/secret_masker.h"
#include "ciagent/pipeline/dependency_failure.h"

namespace ciagent {
namespace {

std::vector<std::string> CargoStderr() {
  std::vector<std::string> lines;
  for (int i = 0; i < 200; ++i) {
    lines.push_back(absl::StrCat("   Compiling crate-", i, " v1.", i % 7,
                                 ".0 (registry `crates-io`)"));
    if (i % 10 == 0) {
      lines.push_back("warning: unused variable: `value`");
      lines.push_back(absl::StrCat("  --> src/module_", i, ".rs:42:9"));
      lines.push_back("   |");
      lines.push_back("42 |     let value = compute(input);");
      lines.push_back("   |         ^^^^^ help: if this is intentional, "
                      "prefix it with an underscore: `_value`");
      lines.push_back("   |");
      lines.push_back("   = note: `#[warn(unused_variables)]` on by default");
    }
  }
  lines.push_back("    Finished `release` profile [optimized] target(s) in "
                  "41.27s");
  return lines;
}

void BM_DependencyFailureReader(benchmark::State& state) {
  const std::vector<std::string> lines = CargoStderr();
  for (auto _ : state) {
    DependencyFailureReader reader;
    for (const std::string& line : lines) reader.AddLine(line);
    benchmark::DoNotOptimize(reader.failure());
  }
  state.SetItemsProcessed(state.iterations() * lines.size());
}
BENCHMARK(BM_DependencyFailureReader);

void BM_DiskFullCheck(benchmark::State& state) {
  const std::vector<std::string> lines = CargoStderr();
  for (auto _ : state) {
    bool full = false;
    for (const std::string& line : lines) {
      full |= absl::StrContains(line, "No space left on device");
    }
    benchmark::DoNotOptimize(full);
  }
  state.SetItemsProcessed(state.iterations() * lines.size());
}
BENCHMARK(BM_DiskFullCheck);

void BM_SecretMasking(benchmark::State& state) {
  const std::vector<std::string> lines = CargoStderr();
  SecretMasker masker({"gtok-5e4d3c2b1a09", "Bearer rtok-0a1b2c3d4e5f"});
  for (auto _ : state) {
    for (const std::string& line : lines) {
      benchmark::DoNotOptimize(masker.Mask(line));
    }
  }
  state.SetItemsProcessed(state.iterations() * lines.size());
}
BENCHMARK(BM_SecretMasking);

}  // namespace
}  // namespace ciagent
