// ci-cache-prune: keeps the shared cache volume under an age and a size
// limit, skipping entries in use. See --help and docs/caching.md.
#include <cstdio>
#include <string>

#include "absl/flags/flag.h"
#include "absl/strings/str_cat.h"
#include "ciagent/base/exit_code.h"
#include "ciagent/base/log.h"
#include "ciagent/base/status_macros.h"
#include "ciagent/cache/prune.h"
#include "tool_flags.h"

ABSL_FLAG(std::string, cache_dir, "",
          "cache volume root; default: env CI_CACHE_DIR (one is required)");
ABSL_FLAG(std::string, max_age, "7d",
          "remove entries unused for longer than this: <n><unit>..., units "
          "s m h d w (36h, 7d, 1d12h)");
ABSL_FLAG(std::string, max_size, "50G",
          "then remove least recently used entries until their total is at "
          "most this: bytes, or K M G T / KiB..TiB (1024-based), KB..TB "
          "(1000-based)");
ABSL_FLAG(bool, dry_run, false, "report what would be removed; remove nothing");
ABSL_FLAG(bool, json, false, "print one JSON report on stdout");
ABSL_FLAG(int, walk_threads, 0,
          "entries measured in parallel (fewer: gentler on a busy volume); "
          "0: one per CPU, at most 4");

namespace {

constexpr char kUsage[] =
    R"(Prunes the CI cache volume: git mirrors (git/<key>.git), target
directories (target/<key>), the sccache directory and the image builder's
storage (buildah).

First every entry unused for longer than --max-age goes, then the least
recently used ones until the entries total at most --max-size. Last use comes
from each entry's ciagent-last-use stamp. An entry whose lock (<entry>.lock)
is held is in use and never removed. cargo-home/ is never removed. Symlinks
are never followed. Removal renames the entry to .trash-<random> under its
lock, then deletes it; trash of an interrupted run is deleted on the next.

Exit codes:
  0  done (also when nothing needed removing)
  1  some entries could not be removed (see the report); retry later
  2  bad flags, or the cache root is missing or unreadable

Without --json, one summary line on stdout. Logs: JSON lines on stderr.)";

absl::StatusOr<ciagent::PruneOptions> OptionsFromFlags() {
  using namespace ciagent;
  PruneOptions o;
  o.cache_dir = FlagOrEnv(absl::GetFlag(FLAGS_cache_dir), "CI_CACHE_DIR", "");
  if (o.cache_dir.empty()) {
    return absl::InvalidArgumentError(
        "no cache root: pass --cache-dir or set CI_CACHE_DIR");
  }
  CIAGENT_ASSIGN_OR_RETURN(o.policy.max_age,
                           ParsePruneAge(absl::GetFlag(FLAGS_max_age)));
  CIAGENT_ASSIGN_OR_RETURN(o.policy.max_size_bytes,
                           ParseByteSize(absl::GetFlag(FLAGS_max_size)));
  o.dry_run = absl::GetFlag(FLAGS_dry_run);
  o.walk_threads = absl::GetFlag(FLAGS_walk_threads);
  if (o.walk_threads < 0 || o.walk_threads > 64) {
    return absl::InvalidArgumentError("--walk-threads must be 0..64");
  }
  return o;
}

}  // namespace

int main(int argc, char** argv) {
  using namespace ciagent;
  const auto fail = [](int code, const absl::Status& status) {
    LogError("ci-cache-prune failed", {{"error", status}, {"exit_code", code}});
    std::fprintf(stderr, "ci-cache-prune: %s\n",
                 std::string(status.message()).c_str());
    return code;
  };
  absl::StatusOr<ToolStart> start = StartTool(argc, argv, kUsage);
  if (!start.ok()) return fail(kExitUsage, start.status());
  if (start->help_shown) return kExitOk;
  absl::StatusOr<PruneOptions> options = OptionsFromFlags();
  if (!options.ok()) return fail(kExitUsage, options.status());

  absl::StatusOr<PruneReport> report = PruneCache(*options);
  if (!report.ok()) return fail(kExitUsage, report.status());
  if (absl::GetFlag(FLAGS_json)) {
    std::printf("%s\n", PruneReportJson(*report).c_str());
  } else {
    std::printf(
        "%s%zu removed (%lld bytes), %zu in use skipped, %zu failed; "
        "%lld -> %lld bytes in %lld ms\n",
        report->dry_run ? "dry run: " : "", report->removed.size(),
        static_cast<long long>(report->bytes_freed),
        report->skipped_in_use.size(), report->failed.size(),
        static_cast<long long>(report->total_before),
        static_cast<long long>(report->total_after),
        static_cast<long long>(absl::ToInt64Milliseconds(report->duration)));
  }
  LogInfo("cache pruned",
          {{"removed", static_cast<int64_t>(report->removed.size())},
           {"bytes_freed", report->bytes_freed},
           {"failed", static_cast<int64_t>(report->failed.size())},
           {"dry_run", report->dry_run}});
  return report->failed.empty() ? kExitOk : kExitFailure;
}
