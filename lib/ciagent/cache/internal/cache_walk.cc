#include "ciagent/cache/internal/cache_walk.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/file.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <string>
#include <thread>
#include <unordered_set>
#include <utility>
#include <vector>

#include "absl/cleanup/cleanup.h"
#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "absl/time/clock.h"
#include "ciagent/base/file_lock.h"
#include "ciagent/base/log.h"
#include "ciagent/base/status_macros.h"

namespace ciagent {
namespace {

constexpr char kTrashPrefix[] = ".trash-";
constexpr char kLockSuffix[] = ".lock";
constexpr char kCargoHome[] = "cargo-home";
constexpr const char* kEntryDirs[] = {"git", "target"};
// Single-directory entries directly under the root.
constexpr const char* kRootEntries[] = {"sccache", "buildah"};

constexpr int kDirFlags = O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC;

// The lock guarding entry `name`: `<name>.lock`, except that a target dir
// being filled (`<key>.incoming`, see build_cache.h) is guarded by its
// key's lock.
std::string LockNameFor(absl::string_view name) {
  absl::ConsumeSuffix(&name, ".incoming");
  return absl::StrCat(name, kLockSuffix);
}

bool IsDots(const char* name) {
  return name[0] == '.' &&
         (name[1] == '\0' || (name[1] == '.' && name[2] == '\0'));
}

std::string ErrnoText(int err) { return std::strerror(err); }

// Disk bytes of one inode; an inode with several links counts once per walk.
int64_t AllocatedBytes(const struct stat& st,
                       std::unordered_set<ino_t>* linked) {
  if (!S_ISDIR(st.st_mode) && st.st_nlink > 1 &&
      !linked->insert(st.st_ino).second) {
    return 0;
  }
  return static_cast<int64_t>(st.st_blocks) * 512;
}

// Opens directory `name` under `parent_fd` as a stream, never through a
// symlink. Null with errno set on failure.
DIR* OpenDirAt(int parent_fd, const char* name) {
  const int fd = ::openat(parent_fd, name, kDirFlags);
  if (fd < 0) return nullptr;
  DIR* dir = ::fdopendir(fd);
  if (dir == nullptr) {
    const int err = errno;
    ::close(fd);
    errno = err;
  }
  return dir;
}

void NoteWalkError(const char* what, absl::string_view name, int err,
                   int64_t* errors) {
  ++*errors;
  LogWarning("cache walk",
             {{"op", what}, {"name", name}, {"error", ErrnoText(err)}});
}

// Bytes allocated by `name` under `parent_fd` and everything below it,
// staying on device `dev` and never following a symlink.
int64_t MeasureTree(int parent_fd, const char* name, dev_t dev,
                    int64_t* errors) {
  std::unordered_set<ino_t> linked;
  struct stat st;
  if (::fstatat(parent_fd, name, &st, AT_SYMLINK_NOFOLLOW) != 0) {
    if (errno != ENOENT) NoteWalkError("stat", name, errno, errors);
    return 0;
  }
  int64_t total = AllocatedBytes(st, &linked);
  if (!S_ISDIR(st.st_mode) || st.st_dev != dev) return total;
  DIR* root = OpenDirAt(parent_fd, name);
  if (root == nullptr) {
    if (errno != ENOENT) NoteWalkError("open", name, errno, errors);
    return total;
  }
  std::vector<DIR*> stack = {root};
  while (!stack.empty()) {
    DIR* top = stack.back();
    errno = 0;
    const struct dirent* e = ::readdir(top);
    if (e == nullptr) {
      if (errno != 0) NoteWalkError("readdir", name, errno, errors);
      ::closedir(top);
      stack.pop_back();
      continue;
    }
    if (IsDots(e->d_name)) continue;
    const int fd = ::dirfd(top);
    if (::fstatat(fd, e->d_name, &st, AT_SYMLINK_NOFOLLOW) != 0) {
      if (errno != ENOENT) NoteWalkError("stat", e->d_name, errno, errors);
      continue;
    }
    total += AllocatedBytes(st, &linked);
    if (!S_ISDIR(st.st_mode) || st.st_dev != dev) continue;
    DIR* child = OpenDirAt(fd, e->d_name);
    if (child == nullptr) {
      // ELOOP/ENOTDIR: replaced by a symlink or file since the stat.
      if (errno != ENOENT && errno != ELOOP && errno != ENOTDIR) {
        NoteWalkError("open", e->d_name, errno, errors);
      }
      continue;
    }
    stack.push_back(child);
  }
  return total;
}

// Deletes `name` under `parent_fd` and everything below it. Symlinks are
// unlinked, never followed; other filesystems are not entered (their mount
// point then fails to go). Vanished files count as deleted.
absl::Status RemoveTree(int parent_fd, const std::string& name,
                        int64_t* errors) {
  struct stat st;
  if (::fstatat(parent_fd, name.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) {
    if (errno == ENOENT) return absl::OkStatus();
    return absl::UnavailableError(
        absl::StrCat("stat ", name, ": ", ErrnoText(errno)));
  }
  if (!S_ISDIR(st.st_mode)) {
    if (::unlinkat(parent_fd, name.c_str(), 0) != 0 && errno != ENOENT) {
      return absl::UnavailableError(
          absl::StrCat("unlink ", name, ": ", ErrnoText(errno)));
    }
    return absl::OkStatus();
  }
  const dev_t dev = st.st_dev;
  struct Frame {
    DIR* dir;
    std::string name;
    bool removed_any = false;
    int passes = 0;
  };
  std::vector<Frame> stack;
  DIR* root = OpenDirAt(parent_fd, name.c_str());
  if (root == nullptr) {
    return absl::UnavailableError(
        absl::StrCat("open ", name, ": ", ErrnoText(errno)));
  }
  stack.push_back({root, name});
  const int64_t errors_before = *errors;
  while (!stack.empty()) {
    Frame& top = stack.back();
    errno = 0;
    const struct dirent* e = ::readdir(top.dir);
    if (e == nullptr) {
      // Deleting while reading may hide names on some filesystems: read the
      // directory again until a pass deletes nothing.
      if (errno == 0 && top.removed_any && ++top.passes < 8) {
        top.removed_any = false;
        ::rewinddir(top.dir);
        continue;
      }
      ::closedir(top.dir);
      const std::string done = std::move(top.name);
      stack.pop_back();
      const int pfd = stack.empty() ? parent_fd : ::dirfd(stack.back().dir);
      if (::unlinkat(pfd, done.c_str(), AT_REMOVEDIR) != 0 && errno != ENOENT) {
        NoteWalkError("rmdir", done, errno, errors);
      } else if (!stack.empty()) {
        stack.back().removed_any = true;
      }
      continue;
    }
    if (IsDots(e->d_name)) continue;
    const int fd = ::dirfd(top.dir);
    bool is_dir = e->d_type == DT_DIR;
    if (e->d_type == DT_UNKNOWN) {
      if (::fstatat(fd, e->d_name, &st, AT_SYMLINK_NOFOLLOW) != 0) continue;
      is_dir = S_ISDIR(st.st_mode);
    }
    if (!is_dir) {
      if (::unlinkat(fd, e->d_name, 0) == 0) {
        top.removed_any = true;
      } else if (errno == EISDIR) {
        is_dir = true;  // became a directory since the listing
      } else if (errno != ENOENT) {
        NoteWalkError("unlink", e->d_name, errno, errors);
      }
      if (!is_dir) continue;
    }
    if (::fstatat(fd, e->d_name, &st, AT_SYMLINK_NOFOLLOW) == 0 &&
        st.st_dev != dev) {
      NoteWalkError("enter (other filesystem)", e->d_name, EXDEV, errors);
      continue;
    }
    DIR* child = OpenDirAt(fd, e->d_name);
    if (child == nullptr) {
      if (errno == ELOOP || errno == ENOTDIR) {
        // Swapped for a symlink or file: delete it, not what it points to.
        if (::unlinkat(fd, e->d_name, 0) == 0) top.removed_any = true;
      } else if (errno != ENOENT) {
        NoteWalkError("open", e->d_name, errno, errors);
      }
      continue;
    }
    stack.push_back({child, e->d_name});
  }
  if (*errors != errors_before) {
    return absl::UnavailableError(
        absl::StrCat("delete ", name, ": ", *errors - errors_before,
                     " files or directories could not be deleted"));
  }
  return absl::OkStatus();
}

// The last use of entry `name` under `parent_fd`; see kPruneStampName.
absl::Time ReadLastUse(int parent_fd, const char* name, bool* stamp_missing) {
  *stamp_missing = false;
  Fd entry(::openat(parent_fd, name, kDirFlags));
  if (entry.ok()) {
    Fd stamp(::openat(entry.get(), std::string(kPruneStampName).c_str(),
                      O_RDONLY | O_NOFOLLOW | O_CLOEXEC));
    if (stamp.ok()) {
      char buf[80];
      const ssize_t n = ::read(stamp.get(), buf, sizeof(buf) - 1);
      absl::Time t;
      std::string err;
      if (n > 0 && absl::ParseTime(absl::RFC3339_full,
                                   absl::StripAsciiWhitespace(absl::string_view(
                                       buf, static_cast<size_t>(n))),
                                   &t, &err)) {
        return t;
      }
      struct stat st;
      if (::fstat(stamp.get(), &st) == 0)
        return absl::TimeFromTimespec(st.st_mtim);
    }
  }
  *stamp_missing = true;
  struct stat st;
  if (::fstatat(parent_fd, name, &st, AT_SYMLINK_NOFOLLOW) == 0) {
    return absl::TimeFromTimespec(st.st_mtim);
  }
  return absl::InfinitePast();
}

// Whether someone holds the lock of entry `name` exclusively, probed without
// creating the lock file. A shared holder is not seen here, but makes the
// exclusive TryAcquire before deleting fail, so it is skipped all the same.
bool LockHeld(int parent_fd, const std::string& name) {
  Fd fd(::openat(parent_fd, LockNameFor(name).c_str(),
                 O_RDONLY | O_NOFOLLOW | O_CLOEXEC));
  if (!fd.ok()) return false;
  if (::flock(fd.get(), LOCK_SH | LOCK_NB) != 0) return errno == EWOULDBLOCK;
  ::flock(fd.get(), LOCK_UN);
  return false;
}

bool IsTrash(const char* name) { return absl::StartsWith(name, kTrashPrefix); }

std::string TrashName() {
  uint64_t r = 0;
  if (::getrandom(&r, sizeof(r), 0) != sizeof(r)) {
    r = static_cast<uint64_t>(::getpid()) * 0x9E3779B97F4A7C15ull ^
        static_cast<uint64_t>(absl::ToUnixNanos(absl::Now()));
  }
  char hex[17];
  std::snprintf(hex, sizeof(hex), "%016llx",
                static_cast<unsigned long long>(r));
  return absl::StrCat(kTrashPrefix, hex);
}

}  // namespace

absl::StatusOr<CacheRoot> OpenCacheRoot(absl::string_view cache_dir) {
  if (cache_dir.empty()) {
    return absl::FailedPreconditionError("no cache root given");
  }
  const std::string path(cache_dir);
  Fd root(::open(path.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  struct stat st;
  if (!root.ok() || ::fstat(root.get(), &st) != 0) {
    return absl::FailedPreconditionError(
        absl::StrCat("open cache root ", path, ": ", ErrnoText(errno)));
  }
  // A root we cannot list would look empty: refuse it instead.
  DIR* dir = OpenDirAt(root.get(), ".");
  if (dir == nullptr) {
    return absl::FailedPreconditionError(
        absl::StrCat("read cache root ", path, ": ", ErrnoText(errno)));
  }
  errno = 0;
  const bool readable = ::readdir(dir) != nullptr || errno == 0;
  const int err = errno;
  ::closedir(dir);
  if (!readable) {
    return absl::FailedPreconditionError(
        absl::StrCat("read cache root ", path, ": ", ErrnoText(err)));
  }
  return CacheRoot{.fd = std::move(root), .dev = st.st_dev, .path = path};
}

absl::StatusOr<std::vector<CacheEntry>> ScanCacheRoot(const CacheRoot& root,
                                                      int walk_threads,
                                                      int64_t* cargo_home_bytes,
                                                      int64_t* errors) {
  const int root_fd = root.fd.get();
  const dev_t dev = root.dev;
  // First the names (cheap), then the trees, measured in parallel: entries
  // are independent, and a walk mostly waits on metadata reads.
  struct Item {
    int parent_fd;
    std::string name;
  };
  std::vector<Item> items;
  std::vector<CacheEntry> entries;
  std::vector<DIR*> parents;  // open until every entry is measured
  absl::Cleanup close_parents = [&parents] {
    for (DIR* dir : parents) ::closedir(dir);
  };
  for (const char* sub : kEntryDirs) {
    DIR* dir = OpenDirAt(root_fd, sub);
    if (dir == nullptr) {
      if (errno != ENOENT) NoteWalkError("open", sub, errno, errors);
      continue;
    }
    parents.push_back(dir);
    for (;;) {
      errno = 0;
      const struct dirent* e = ::readdir(dir);
      if (e == nullptr) {
        if (errno != 0) NoteWalkError("readdir", sub, errno, errors);
        break;
      }
      if (IsDots(e->d_name) || IsTrash(e->d_name) ||
          absl::EndsWith(e->d_name, kLockSuffix)) {
        continue;
      }
      items.push_back({::dirfd(dir), e->d_name});
      entries.emplace_back().path = absl::StrCat(sub, "/", e->d_name);
    }
  }
  for (const char* name : kRootEntries) {
    struct stat st;
    if (::fstatat(root_fd, name, &st, AT_SYMLINK_NOFOLLOW) == 0) {
      items.push_back({root_fd, name});
      entries.emplace_back().path = name;
    }
  }
  for (size_t i = 0; i < entries.size(); ++i) {
    CacheEntry& entry = entries[i];
    entry.last_use = ReadLastUse(items[i].parent_fd, items[i].name.c_str(),
                                 &entry.stamp_missing);
    entry.in_use = LockHeld(items[i].parent_fd, items[i].name);
  }
  items.push_back({root_fd, kCargoHome});  // measured, never an entry

  std::vector<int64_t> sizes(items.size(), 0);
  std::atomic<size_t> next{0};
  std::atomic<int64_t> shared_errors{0};
  const auto measure = [&] {
    int64_t local_errors = 0;
    for (size_t i = next++; i < items.size(); i = next++) {
      sizes[i] = MeasureTree(items[i].parent_fd, items[i].name.c_str(), dev,
                             &local_errors);
    }
    shared_errors += local_errors;
  };
  if (walk_threads <= 0) {
    walk_threads = static_cast<int>(
        std::clamp(std::thread::hardware_concurrency(), 1u, 4u));
  }
  std::vector<std::thread> threads;
  for (int t = 1; t < walk_threads && static_cast<size_t>(t) < items.size();
       ++t) {
    threads.emplace_back(measure);
  }
  measure();
  for (std::thread& thread : threads) thread.join();
  *errors += shared_errors;
  for (size_t i = 0; i < entries.size(); ++i) {
    entries[i].size_bytes = sizes[i];
  }
  *cargo_home_bytes = sizes.back();
  return entries;
}

int64_t CleanCacheTrash(const CacheRoot& root, int64_t* errors) {
  const int root_fd = root.fd.get();
  int64_t removed = 0;
  for (const char* sub : {".", "git", "target"}) {
    DIR* dir = OpenDirAt(root_fd, sub);
    if (dir == nullptr) continue;
    std::vector<std::string> trash;  // not deleted while listing
    while (const struct dirent* e = ::readdir(dir)) {
      if (IsTrash(e->d_name)) trash.emplace_back(e->d_name);
    }
    for (const std::string& name : trash) {
      absl::Status status = RemoveTree(::dirfd(dir), name, errors);
      if (status.ok()) {
        ++removed;
      } else {
        LogWarning("cannot delete old cache trash", {{"error", status}});
      }
    }
    ::closedir(dir);
  }
  return removed;
}

// Lock, check it was not used since the scan, rename to trash, unlock,
// delete the trash.
absl::StatusOr<RemoveOutcome> RemoveCacheEntry(const CacheRoot& root,
                                               const CacheEntry& entry,
                                               int64_t* errors) {
  const int root_fd = root.fd.get();
  const std::string& cache_dir = root.path;
  const size_t slash = entry.path.rfind('/');
  const std::string name =
      slash == std::string::npos ? entry.path : entry.path.substr(slash + 1);
  Fd parent(
      slash == std::string::npos
          ? ::dup(root_fd)
          : ::openat(root_fd, entry.path.substr(0, slash).c_str(), kDirFlags));
  if (!parent.ok()) {
    return absl::UnavailableError(
        absl::StrCat("open parent of ", entry.path, ": ", ErrnoText(errno)));
  }
  std::string trash = TrashName();
  int trash_parent = root_fd;
  {
    const std::string lock_path =
        slash == std::string::npos
            ? absl::StrCat(cache_dir, "/", LockNameFor(name))
            : absl::StrCat(cache_dir, "/", entry.path.substr(0, slash + 1),
                           LockNameFor(name));
    absl::StatusOr<FileLock> lock = FileLock::TryAcquire(lock_path);
    if (lock.status().code() == absl::StatusCode::kUnavailable) {
      return RemoveOutcome::kInUse;
    }
    if (!lock.ok()) return lock.status();
    bool stamp_missing;
    if (ReadLastUse(parent.get(), name.c_str(), &stamp_missing) >
        entry.last_use) {
      return RemoveOutcome::kInUse;  // used between the scan and now
    }
    if (::renameat(parent.get(), name.c_str(), root_fd, trash.c_str()) != 0) {
      if (errno == ENOENT) return RemoveOutcome::kRemoved;
      if (errno != EXDEV) {
        return absl::UnavailableError(absl::StrCat(
            "rename ", entry.path, " to ", trash, ": ", ErrnoText(errno)));
      }
      // git/ or target/ on its own filesystem: trash stays beside it.
      trash_parent = parent.get();
      if (::renameat(parent.get(), name.c_str(), trash_parent, trash.c_str()) !=
          0) {
        return absl::UnavailableError(absl::StrCat(
            "rename ", entry.path, " to ", trash, ": ", ErrnoText(errno)));
      }
    }
    // Unlocked now: the entry is gone, so an agent waiting for the lock
    // starts a fresh one at once instead of waiting for the delete.
  }
  CIAGENT_RETURN_IF_ERROR(RemoveTree(trash_parent, trash, errors));
  return RemoveOutcome::kRemoved;
}

}  // namespace ciagent
