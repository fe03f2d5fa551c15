// Cache pruning: keeps the shared cache volume under an age and a size limit
// without ever deleting something an agent is using.
//
// The cache root holds "entries" (see docs/caching.md, "Layout and pruning"):
//
//   entry                  what                its lock
//   <cache>/git/<key>.git  a git mirror        <cache>/git/<key>.git.lock
//   <cache>/target/<key>   a cargo target dir  <cache>/target/<key>.lock
//   <cache>/sccache        the sccache dir     <cache>/sccache.lock
//   <cache>/buildah        the image builder's <cache>/buildah.lock (held
//                          storage (base images) shared while a build runs)
//
// Every direct child of git/ and target/ is an entry, whatever its type,
// except lock files (names ending in ".lock") and trash (".trash-*"). An
// entry's lock is `<entry path>.lock` (for `target/<key>.incoming`, a copy
// being made, it is its key's `target/<key>.lock`); its last use is read from
// the stamp `<entry>/ciagent-last-use` (RFC 3339 text; the stamp's mtime when
// the text does not parse; the entry's own mtime when there is no stamp). The
// shared CARGO_HOME (<cache>/cargo-home) is never an entry: it is measured
// and reported, never deleted, and not counted against the size cap.
//
// Pruning is two steps. MakePrunePlan is pure policy: entries in, removals
// out — first every entry older than max_age, then least recently used until
// the total is at most max_size; entries in use are never chosen. PruneCache
// does the I/O: scans the root, plans, and removes each chosen entry under
// its lock (non-blocking) by renaming it to `<cache>/.trash-<random>` (the
// entry disappears atomically) and deleting the trash. Trash left by a
// crashed run is deleted first.
//
// Walks never follow symlinks: directories are opened relative to their
// parent's descriptor with O_NOFOLLOW, so a symlink (even one swapped in
// during the walk) is measured and deleted as a link, never through. Walks
// stay on the root's filesystem. They are iterative with one open directory
// per level of depth, so memory grows with depth, not with the file count.
//
// Example:
//   PruneOptions options;
//   options.cache_dir = "/cache";
//   options.max_age = absl::Hours(36);
//   CIAGENT_ASSIGN_OR_RETURN(PruneReport report, PruneCache(options));
//   std::printf("%s\n", PruneReportJson(report).c_str());
//
// Thread-safety: the functions keep no shared state (PruneCache measures
// entries on a few threads of its own); PruneCache may run
// concurrently with agents (and with another PruneCache) on the same root —
// locks and atomic renames keep them apart.
//
// Errors: PruneCache fails only when the root itself is unusable
// (kFailedPrecondition: missing, not a directory, unreadable — fix the
// volume, don't retry). A failure on one entry does not stop the others; it
// is listed in PruneReport::failed (the tool exits 1: a later run may
// succeed).
#ifndef CIAGENT_CACHE_PRUNE_H_
#define CIAGENT_CACHE_PRUNE_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "ciagent/base/clock.h"

namespace ciagent {

// The name of the last-use stamp inside an entry directory.
inline constexpr absl::string_view kPruneStampName = "ciagent-last-use";

// Marks entry directory `entry_dir` used now: writes its stamp (RFC 3339
// text, so also its mtime), creating the directory if needed. Every user of
// an entry calls it, so that the pruner's age and LRU order see the use.
absl::Status TouchLastUseStamp(absl::string_view entry_dir);

// One prunable entry of the cache root.
struct CacheEntry {
  // Relative to the cache root: "git/<key>.git", "target/<key>", "sccache",
  // "buildah".
  std::string path;
  absl::Time last_use = absl::InfinitePast();
  // Bytes allocated on disk (st_blocks), each multiply-linked inode once.
  int64_t size_bytes = 0;
  // Its lock is held by someone else.
  bool in_use = false;
  // No readable stamp: last_use is the entry's own mtime.
  bool stamp_missing = false;
};

// The policy. Defaults are the documented defaults of ci-cache-prune.
struct PrunePolicy {
  // Entries unused for longer than this are removed.
  absl::Duration max_age = absl::Hours(7 * 24);
  // Then least recently used entries are removed while the entries' total
  // exceeds this (bytes; 50 GiB).
  int64_t max_size_bytes = int64_t{50} << 30;
};

enum class PruneReason { kOlderThanMaxAge, kOverSizeCap };

struct PlannedRemoval {
  size_t entry = 0;  // index into the entries given to MakePrunePlan
  PruneReason reason = PruneReason::kOlderThanMaxAge;
};

struct PrunePlan {
  // In the order to remove them: aged-out entries oldest first, then the
  // size-cap evictions least recently used first.
  std::vector<PlannedRemoval> remove;
  // Entries in use the policy would otherwise have removed.
  std::vector<PlannedRemoval> skipped_in_use;
  int64_t total_before = 0;
  int64_t total_after = 0;
};

// Pure policy; see the overview. Ties in last use are broken by path.
PrunePlan MakePrunePlan(const std::vector<CacheEntry>& entries, absl::Time now,
                        const PrunePolicy& policy);

// "older than 7d" / "over size cap, least recently used".
std::string PruneReasonText(PruneReason reason, const PrunePolicy& policy);

// Parses an age: one or more <integer><unit> with units s, m, h, d, w
// ("36h", "7d", "1d12h"). kInvalidArgument otherwise or when zero.
absl::StatusOr<absl::Duration> ParsePruneAge(absl::string_view text);
// "7d", "36h", "90m", "45s": the largest unit that divides exactly.
std::string FormatPruneAge(absl::Duration age);

// Parses a size: an integer with an optional suffix. K, M, G, T and KiB, MiB,
// GiB, TiB are binary (1024-based); KB, MB, GB, TB are decimal; no suffix or
// B is bytes. Case-insensitive. kInvalidArgument otherwise.
absl::StatusOr<int64_t> ParseByteSize(absl::string_view text);

struct PruneOptions {
  // The cache root; required.
  std::string cache_dir;
  PrunePolicy policy;
  // Scan and plan, remove nothing (not even trash); no lock files created.
  bool dry_run = false;
  // Threads measuring entries in parallel (each walks whole entries, so
  // memory stays bounded per thread); 0: one per CPU, at most 4.
  int walk_threads = 0;
  // Source of "now" for ages; never null.
  Clock* clock = RealClock();
};

struct PruneReport {
  struct Item {
    std::string path;  // relative to the cache root
    std::string reason;
    int64_t bytes = 0;
    absl::Time last_use;
  };
  struct Failure {
    std::string path;
    std::string error;
  };
  bool dry_run = false;
  std::string cache_dir;
  PrunePolicy policy;
  int64_t entries_scanned = 0;
  // Removed (with --dry-run: would be removed).
  std::vector<Item> removed;
  // Chosen by the policy but in use (lock held, or used again during the
  // run); left alone.
  std::vector<Item> skipped_in_use;
  std::vector<Failure> failed;
  int64_t bytes_freed = 0;
  // Sum of all entries' sizes, before and after (cargo-home excluded).
  int64_t total_before = 0;
  int64_t total_after = 0;
  int64_t cargo_home_bytes = 0;
  // Trash directories of earlier, interrupted runs deleted by this one.
  int64_t trash_removed = 0;
  // Files or directories a walk could not read or delete (see the log).
  int64_t walk_errors = 0;
  absl::Duration duration;
};

// Lists the entries of `cache_dir` with their last use, size and whether
// their lock is held (probed without creating lock files), measuring entries
// on `walk_threads` threads (0: one per CPU, at most 4). kFailedPrecondition
// when the root cannot be opened or read.
absl::StatusOr<std::vector<CacheEntry>> ScanCache(absl::string_view cache_dir,
                                                  int64_t* cargo_home_bytes,
                                                  int64_t* walk_errors,
                                                  int walk_threads = 0);

// Scans, plans and (unless dry_run) removes; see the overview.
absl::StatusOr<PruneReport> PruneCache(const PruneOptions& options);

// One JSON document: {"dry_run":..,"removed":[{"path","reason","bytes",
// "last_use"}],"skipped_in_use":[...],"failed":[{"path","error"}],
// "bytes_freed","total_before","total_after",...,"duration_ms"}.
std::string PruneReportJson(const PruneReport& report);

}  // namespace ciagent

#endif  // CIAGENT_CACHE_PRUNE_H_
