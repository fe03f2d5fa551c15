// FileLock: an advisory lock on a file (flock), for state several agents
// share on one volume — git mirrors, cargo target directories (exclusive),
// the image builder's storage (shared: the builder locks finer itself; the
// shared lock only keeps the cache pruner away).
//
// The lock belongs to the open file description, so it excludes other
// processes and other FileLock objects in the same process alike, and the
// kernel drops it when its holder dies: a crashed agent never leaves a
// cache locked.
//
// Example:
//   CIAGENT_ASSIGN_OR_RETURN(FileLock lock,
//                            FileLock::Acquire(mirror + ".lock",
//                            absl::Minutes(10)));
//   ... use the mirror; the destructor unlocks ...
//
// Movable, not copyable; not thread-safe.
#ifndef CIAGENT_BASE_FILE_LOCK_H_
#define CIAGENT_BASE_FILE_LOCK_H_

#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"

namespace ciagent {

class FileLock {
 public:
  // Creates `path` if needed and locks it, polling until `timeout`.
  // kUnavailable when the lock is still held by someone else at the
  // deadline (retry later); kFailedPrecondition when the file cannot be
  // opened or a stop was requested.
  static absl::StatusOr<FileLock> Acquire(absl::string_view path,
                                          absl::Duration timeout);
  // Locks only if free right now; kUnavailable otherwise.
  static absl::StatusOr<FileLock> TryAcquire(absl::string_view path);
  // A shared lock, as Acquire: held by any number of holders at once, and
  // excluding every exclusive one.
  static absl::StatusOr<FileLock> AcquireShared(absl::string_view path,
                                                absl::Duration timeout);

  FileLock(FileLock&& other) noexcept;
  FileLock& operator=(FileLock&& other) noexcept;
  ~FileLock();

  const std::string& path() const { return path_; }

 private:
  FileLock(std::string path, int fd) : path_(std::move(path)), fd_(fd) {}
  // `mode`: LOCK_EX or LOCK_SH.
  static absl::StatusOr<FileLock> Lock(absl::string_view path,
                                       absl::Duration timeout, int mode);
  void Release();

  std::string path_;
  int fd_ = -1;
};

}  // namespace ciagent

#endif  // CIAGENT_BASE_FILE_LOCK_H_
