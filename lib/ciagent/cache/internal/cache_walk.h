// The walk of the cache volume for pruning (see prune.h for the layout):
// listing the entries with their last use, size and lock state, deleting
// the trash of interrupted runs, and removing one entry safely. No policy:
// what to remove is MakePrunePlan's choice, made in prune.cc.
//
// Walks never follow symlinks (directories are opened relative to their
// parent's descriptor with O_NOFOLLOW), stay on the root's filesystem, and
// are iterative, one open directory per level of depth.
//
// Example:
//   CIAGENT_ASSIGN_OR_RETURN(CacheRoot root, OpenCacheRoot("/cache"));
//   CIAGENT_ASSIGN_OR_RETURN(std::vector<CacheEntry> entries,
//                            ScanCacheRoot(root, 0, &cargo_home, &errors));
//   absl::StatusOr<RemoveOutcome> outcome =
//       RemoveCacheEntry(root, entries[0], &errors);
//
// Thread-safety: the functions share no state; each may run concurrently
// with agents and other pruners on the same volume (locks and atomic
// renames keep them apart). Problems with single files are logged and
// counted in `*errors`, never fatal.
#ifndef CIAGENT_CACHE_INTERNAL_CACHE_WALK_H_
#define CIAGENT_CACHE_INTERNAL_CACHE_WALK_H_

#include <sys/types.h>
#include <unistd.h>

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "ciagent/cache/prune.h"

namespace ciagent {

// Owns a file descriptor.
class Fd {
 public:
  explicit Fd(int fd = -1) : fd_(fd) {}
  Fd(Fd&& other) noexcept : fd_(std::exchange(other.fd_, -1)) {}
  Fd& operator=(Fd&& other) noexcept {
    std::swap(fd_, other.fd_);
    return *this;
  }
  ~Fd() {
    if (fd_ >= 0) ::close(fd_);
  }
  int get() const { return fd_; }
  bool ok() const { return fd_ >= 0; }

 private:
  int fd_;
};

// The cache root, open: every walk starts from its descriptor, so the root
// cannot be swapped for another directory during a run.
struct CacheRoot {
  Fd fd;
  dev_t dev = 0;     // the root's filesystem; walks do not leave it
  std::string path;  // as given, for lock paths and messages
};

// Opens `cache_dir` and checks it can be listed (a root that cannot would
// look empty). kFailedPrecondition when it is missing, not a directory or
// unreadable.
absl::StatusOr<CacheRoot> OpenCacheRoot(absl::string_view cache_dir);

// The entries of `root` with last use, lock state (probed without creating
// lock files) and size, measured on `walk_threads` threads (0: one per
// CPU, at most 4). CARGO_HOME is measured into `*cargo_home_bytes`, never
// listed.
absl::StatusOr<std::vector<CacheEntry>> ScanCacheRoot(const CacheRoot& root,
                                                      int walk_threads,
                                                      int64_t* cargo_home_bytes,
                                                      int64_t* errors);

// Deletes the trash of interrupted runs under the root, git/ and target/;
// returns how many trash directories went.
int64_t CleanCacheTrash(const CacheRoot& root, int64_t* errors);

enum class RemoveOutcome { kRemoved, kInUse };

// Removes `entry` (as scanned) under its lock, taken without waiting: by
// renaming it to trash, so it disappears atomically, then deleting the
// trash. kInUse when the lock is held or the entry was used since the scan.
// kUnavailable when it cannot be renamed or fully deleted (a later run may
// succeed); other errors are the lock's.
absl::StatusOr<RemoveOutcome> RemoveCacheEntry(const CacheRoot& root,
                                               const CacheEntry& entry,
                                               int64_t* errors);

}  // namespace ciagent

#endif  // CIAGENT_CACHE_INTERNAL_CACHE_WALK_H_
