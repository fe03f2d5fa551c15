// Plugs PackIndexer into libgit2: packs that libgit2 receives for a
// repository (git_remote_fetch) are indexed on several threads instead of
// by libgit2's own one-thread indexer.
//
// libgit2 hands a received pack to the first object-database backend that
// offers `writepack`; UseParallelPackWriter adds one, ahead of the default
// backends, that offers nothing else. Its packs land in objects/pack, where
// the default pack backend finds them.
//
// Only for an object database with no objects yet (a clone): PackIndexer
// does not complete thin packs, which a server sends to repositories that
// already have objects.
//
// The fetch's transfer-progress callback keeps working: it sees the
// counts of PackIndexer, and returning non-zero from it stops the indexing
// too (libgit2 then fails the fetch with GIT_EUSER). Failures reach libgit2
// as errors of class GIT_ERROR_INDEXER (a malformed pack) or GIT_ERROR_OS
// (file system).
#ifndef CIAGENT_GIT_INTERNAL_PARALLEL_PACK_WRITER_H_
#define CIAGENT_GIT_INTERNAL_PARALLEL_PACK_WRITER_H_

#include <git2.h>

#include <string>

#include "absl/status/status.h"

namespace ciagent {

// Makes `odb` (of the repository whose pack directory is `pack_dir`) index
// received packs with PackIndexer on `threads` threads (0: one per CPU).
// The backend belongs to `odb` from then on.
absl::Status UseParallelPackWriter(git_odb* odb, const std::string& pack_dir,
                                   int threads);

}  // namespace ciagent

#endif  // CIAGENT_GIT_INTERNAL_PARALLEL_PACK_WRITER_H_
