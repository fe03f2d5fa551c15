// PackIndexer: turns a git pack (version 2, as a server sends it to a
// clone) into the pack and .idx (version 2) files git and libgit2 read,
// resolving deltas on several threads.
//
// Why not libgit2's indexer: libgit2 1.5 resolves each delta on its own
// through a 16 MiB base cache, so the bases of long delta chains are
// inflated again and again, on one thread. This indexer works as git's
// index-pack does:
//   1. While the pack arrives (Append), it is written to a temporary file in
//      the pack directory and parsed on a background thread as far as it has
//      arrived: each entry's extent, CRC-32 and kind; whole objects are
//      inflated and hashed (their ids are known now); deltas are inflated
//      only to find their end.
//   2. Commit() builds the delta trees (offset deltas by base offset,
//      reference deltas by base id) and walks each tree once from its base
//      object, on `threads` threads: every base is inflated once, each delta
//      applied to its base in memory and hashed. A chain's last child takes
//      over its parent's place, so a linear chain holds one object at a
//      time.
//   3. The .idx is written and both files renamed to pack-<sha>.{pack,idx},
//      the pack first: a pack is only visible to readers through its .idx.
//
// Every byte is checked: the pack's trailing SHA-1, each entry's zlib stream
// and declared size, each delta's base size and result size. A pack that
// fails a check is rejected with kDataLoss and leaves nothing behind.
// Object ids are plain SHA-1 (OpenSSL), without git's collision detection.
//
// Thin packs (deltas against objects not in the pack) are not supported: a
// reference delta whose base is not in the pack is kDataLoss. A server sends
// them only to a repository that already has objects, so this indexer is for
// clones into an empty object database.
//
// Example:
//   CIAGENT_ASSIGN_OR_RETURN(auto indexer, PackIndexer::Create(pack_dir));
//   while (more) CIAGENT_RETURN_IF_ERROR(indexer->Append(chunk));
//   CIAGENT_ASSIGN_OR_RETURN(std::string name, indexer->Commit());
//   // pack_dir/pack-<name>.pack and .idx
//
// Errors: kDataLoss for a malformed pack; kUnavailable / kResourceExhausted
// (ENOSPC) for file system failures; kResourceExhausted also for an object
// whose stated size does not fit in memory; kCancelled when should_cancel
// said so.
//
// Thread-safety: Append and Commit are called from one thread (any one);
// progress() may be called from any thread. The destructor removes the
// temporary files of a pack that was not committed.
#ifndef CIAGENT_GIT_INTERNAL_PACK_INDEXER_H_
#define CIAGENT_GIT_INTERNAL_PACK_INDEXER_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace ciagent {

struct PackIndexerOptions {
  // Threads resolving deltas in Commit(); 0: one per usable CPU
  // (base/cpus.h: the affinity mask capped by the cgroup's CPU quota).
  int threads = 0;
  // Polled while Commit() resolves deltas; true stops it with kCancelled.
  std::function<bool()> should_cancel;
};

struct PackIndexerProgress {
  int64_t total_objects = 0;     // from the pack header, once it arrived
  int64_t received_objects = 0;  // entries parsed so far
  int64_t indexed_objects = 0;   // entries whose id is known
  int64_t total_deltas = 0;      // known once every entry was parsed
  int64_t indexed_deltas = 0;
  int64_t received_bytes = 0;
};

class PackIndexer {
 public:
  // `pack_dir` must exist (objects/pack of a repository).
  static absl::StatusOr<std::unique_ptr<PackIndexer>> Create(
      std::string pack_dir, PackIndexerOptions options = {});

  virtual ~PackIndexer() = default;

  // Takes the next bytes of the pack. Fails once the pack is known to be
  // malformed (the error is the parser's).
  virtual absl::Status Append(absl::string_view bytes) = 0;

  // Completes the pack: waits for the parser, resolves deltas, writes the
  // .idx and renames both files into place. Returns the pack's name, the
  // hex SHA-1 in pack-<name>.pack. Call at most once.
  virtual absl::StatusOr<std::string> Commit() = 0;

  virtual PackIndexerProgress progress() const = 0;
};

}  // namespace ciagent

#endif  // CIAGENT_GIT_INTERNAL_PACK_INDEXER_H_
