#include "ciagent/git/checkout.h"

#include <dirent.h>
#include <fcntl.h>
#include <git2.h>
#include <git2/sys/path.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstring>
#include <memory>
#include <string>
#include <string_view>
#include <thread>
#include <unordered_map>
#include <utility>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "ciagent/base/status_macros.h"
#include "ciagent/git/internal/libgit2_ptr.h"

namespace ciagent {
namespace {

// libgit2's modes (repository.h, checkout.c): files are opened with the
// tree entry's permission bits, directories with GIT_DIR_MODE.
constexpr mode_t kFileMode = 0644;
constexpr mode_t kExecutableMode = 0755;
constexpr mode_t kDirectoryMode = 0755;

// A libgit2 failure (on this thread) as a status whose code says what to do.
absl::Status GitFailure(int rc, absl::string_view operation) {
  const int saved_errno = errno;
  const git_error* e = git_error_last();
  const int klass = e != nullptr ? e->klass : GIT_ERROR_NONE;
  const std::string message = absl::StrCat(
      operation, ": ", e != nullptr ? e->message : "unknown libgit2 error");
  if (klass == GIT_ERROR_NOMEMORY) return absl::ResourceExhaustedError(message);
  if (rc == GIT_ELOCKED) return absl::UnavailableError(message);
  switch (klass) {
    case GIT_ERROR_OS:
      if (saved_errno == ENOSPC || saved_errno == EDQUOT) {
        return absl::ResourceExhaustedError(message);
      }
      return absl::UnavailableError(message);
    case GIT_ERROR_CONFIG:
    case GIT_ERROR_FILTER:
    case GIT_ERROR_INVALID:
    case GIT_ERROR_CALLBACK:
      return absl::FailedPreconditionError(message);
    default:
      // Objects, packs, zlib, the tree: the repository cannot give what
      // its own tree names.
      return absl::DataLossError(message);
  }
}

// A failed system call on `path` (relative to the work tree).
absl::Status DiskFailure(int error, absl::string_view operation,
                         absl::string_view path) {
  char buffer[128];
  // The GNU strerror_r: thread-safe, returns the text.
  const std::string message = absl::StrCat(
      operation, " ", path, ": ", strerror_r(error, buffer, sizeof(buffer)));
  if (error == ENOSPC || error == EDQUOT) {
    return absl::ResourceExhaustedError(message);
  }
  // The work tree held nothing but .git and every path is created once:
  // something already there means the tree names it twice.
  if (error == EEXIST) {
    return absl::InvalidArgumentError(
        absl::StrCat(message, " (the tree names this path twice)"));
  }
  return absl::UnavailableError(message);
}

// What may appear in a path, from the repository's configuration.
struct PathRules {
  bool protect_ntfs = true;  // core.protectNTFS (libgit2's default: on)
  bool protect_hfs = false;  // core.protectHFS (off except on macOS)
  bool symlinks = true;      // core.symlinks
};

absl::StatusOr<PathRules> ReadPathRules(git_repository* repo) {
  git_config* raw = nullptr;
  if (int rc = git_repository_config_snapshot(&raw, repo); rc != 0) {
    return GitFailure(rc, "read the repository configuration");
  }
  ConfigPtr config(raw);
  PathRules rules;
  for (auto [name, value] : {std::pair{"core.protectNTFS", &rules.protect_ntfs},
                             std::pair{"core.protectHFS", &rules.protect_hfs},
                             std::pair{"core.symlinks", &rules.symlinks}}) {
    int on = 0;
    const int rc = git_config_get_bool(&on, config.get(), name);
    if (rc == GIT_ENOTFOUND) continue;
    if (rc != 0) return GitFailure(rc, absl::StrCat("read ", name));
    *value = on != 0;
  }
  return rules;
}

// The next character of `*s` as HFS+ compares names: code points it ignores
// skipped, ASCII lowercased. 0 at the end, -1 for invalid UTF-8.
int32_t NextHfsChar(absl::string_view* s) {
  while (!s->empty()) {
    const auto lead = static_cast<unsigned char>((*s)[0]);
    int length = 0;
    uint32_t code = 0;
    if (lead < 0x80) {
      length = 1;
      code = lead;
    } else if ((lead & 0xE0) == 0xC0) {
      length = 2;
      code = lead & 0x1F;
    } else if ((lead & 0xF0) == 0xE0) {
      length = 3;
      code = lead & 0x0F;
    } else if ((lead & 0xF8) == 0xF0) {
      length = 4;
      code = lead & 0x07;
    } else {
      return -1;
    }
    if (static_cast<int>(s->size()) < length) return -1;
    for (int i = 1; i < length; ++i) {
      const auto next = static_cast<unsigned char>((*s)[i]);
      if ((next & 0xC0) != 0x80) return -1;
      code = (code << 6) | (next & 0x3F);
    }
    s->remove_prefix(length);
    const bool ignored = code == 0x200c || code == 0x200d || code == 0x200e ||
                         code == 0x200f || (code >= 0x202a && code <= 0x202e) ||
                         (code >= 0x206a && code <= 0x206f) || code == 0xfeff;
    if (ignored) continue;
    return code < 0x80 ? absl::ascii_tolower(static_cast<char>(code))
                       : static_cast<int32_t>(code);
  }
  return 0;
}

// True when HFS+ would open `name` as ".git".
bool IsHfsDotGit(absl::string_view name) {
  for (const char expected : {'.', 'g', 'i', 't'}) {
    if (NextHfsChar(&name) != expected) return false;
  }
  return NextHfsChar(&name) == 0;
}

// True when NTFS would open `name` as ".git": ".git" or its short name
// "git~1" (any case), followed by nothing but dots and spaces, or by an
// alternate stream (":") or a backslash.
bool IsNtfsDotGit(absl::string_view name) {
  for (absl::string_view reserved : {".git", "git~1"}) {
    if (name.size() < reserved.size() ||
        !absl::EqualsIgnoreCase(name.substr(0, reserved.size()), reserved)) {
      continue;
    }
    absl::string_view rest = name.substr(reserved.size());
    if (!rest.empty() && (rest[0] == '\\' || rest[0] == ':')) return true;
    return rest.find_first_not_of(". ") == absl::string_view::npos;
  }
  return false;
}

// Why libgit2 would refuse `name` as a component of a path of the given
// mode in the work tree; empty when it is fine.
std::string RefusedComponent(absl::string_view name, git_filemode_t mode,
                             const PathRules& rules) {
  if (name.empty()) return "an empty name";
  if (name == "." || name == "..") {
    return absl::StrCat("a \"", name, "\" component");
  }
  if (name.find('/') != absl::string_view::npos) return "a '/' inside a name";
  const bool link = mode == GIT_FILEMODE_LINK;
  auto is_gitmodules = [&](git_path_fs fs) {
    return link && git_path_is_gitfile(name.data(), name.size(),
                                       GIT_PATH_GITFILE_GITMODULES, fs) == 1;
  };
  if (rules.protect_hfs) {
    if (IsHfsDotGit(name)) return "\".git\" as HFS+ reads it";
    if (is_gitmodules(GIT_PATH_FS_HFS)) {
      return "a symbolic link named .gitmodules as HFS+ reads it";
    }
  }
  if (rules.protect_ntfs) {
    if (IsNtfsDotGit(name)) return "\".git\" as NTFS reads it";
    if (is_gitmodules(GIT_PATH_FS_NTFS)) {
      return "a symbolic link named .gitmodules as NTFS reads it";
    }
  }
  // libgit2 runs the plain ".git" checks only when neither of the above
  // (which cover them) is on.
  if (!rules.protect_hfs && !rules.protect_ntfs && name.size() >= 4 &&
      absl::EqualsIgnoreCase(name.substr(0, 4), ".git")) {
    if (name.size() == 4) return "\".git\"";
    // A symbolic link whose name is a prefix of ".gitmodules".
    if (link && name.size() <= 11 &&
        absl::EqualsIgnoreCase(
            name, absl::string_view(".gitmodules").substr(0, name.size()))) {
      return "a symbolic link named like .gitmodules";
    }
  }
  return "";
}

struct FileToWrite {
  std::string path;  // relative to the work tree, '/'-separated
  git_oid id;
  git_filemode_t mode;
  int directory;        // index into CheckoutPlan::directories; -1: root
  struct stat st = {};  // of the file written
};

struct Directory {
  std::string path;
  int parent;  // -1: the work tree's root
};

// Everything to create, in the order it is created.
struct CheckoutPlan {
  // Every tree; one is created when the first thing inside it is, so
  // that, as with libgit2, an empty tree gives no directory.
  std::vector<Directory> directories;
  // Regular .gitattributes files, parents before children: written first
  // so that every other file is filtered by all of them.
  std::vector<FileToWrite> attributes;
  std::vector<FileToWrite> files;     // other regular files
  std::vector<FileToWrite> links;     // after all files, as libgit2 does
  std::vector<FileToWrite> gitlinks;  // submodules: empty directories
};

class TreePlanner {
 public:
  TreePlanner(git_repository* repo, const PathRules& rules)
      : repo_(repo), rules_(rules) {}

  // Adds the tree at `prefix` ("" or "dir/"), which is plan directory
  // `directory`.
  absl::Status Add(const git_tree* tree, const std::string& prefix,
                   int directory) {
    const size_t count = git_tree_entrycount(tree);
    for (size_t i = 0; i < count; ++i) {
      const git_tree_entry* entry = git_tree_entry_byindex(tree, i);
      const absl::string_view name = git_tree_entry_name(entry);
      const git_filemode_t mode = git_tree_entry_filemode(entry);
      std::string path = absl::StrCat(prefix, name);
      if (std::string why = RefusedComponent(name, mode, rules_);
          !why.empty()) {
        return Refused(path, why);
      }
      FileToWrite file{std::move(path), *git_tree_entry_id(entry), mode,
                       directory};
      switch (mode) {
        case GIT_FILEMODE_TREE:
          CIAGENT_RETURN_IF_ERROR(AddSubtree(file));
          break;
        case GIT_FILEMODE_BLOB:
        case GIT_FILEMODE_BLOB_EXECUTABLE:
          if (name == ".gitattributes") {
            plan_.attributes.push_back(std::move(file));
          } else {
            plan_.files.push_back(std::move(file));
          }
          break;
        case GIT_FILEMODE_LINK:
          // libgit2 checks every component of a link's path with the link
          // rules; the parents were checked as directories only.
          CIAGENT_RETURN_IF_ERROR(CheckLinkPath(file.path));
          plan_.links.push_back(std::move(file));
          break;
        case GIT_FILEMODE_COMMIT:
          plan_.gitlinks.push_back(std::move(file));
          break;
        default:
          return Refused(file.path, absl::StrCat("an unknown file mode ",
                                                 absl::Hex(mode)));
      }
    }
    return absl::OkStatus();
  }

  CheckoutPlan Finish() && { return std::move(plan_); }

 private:
  absl::Status AddSubtree(const FileToWrite& dir) {
    git_tree* raw = nullptr;
    if (int rc = git_tree_lookup(&raw, repo_, &dir.id); rc != 0) {
      return GitFailure(rc, absl::StrCat("read tree ", dir.path));
    }
    TreePtr subtree(raw);
    const int index = static_cast<int>(plan_.directories.size());
    plan_.directories.push_back({dir.path, dir.directory});
    return Add(subtree.get(), absl::StrCat(dir.path, "/"), index);
  }

  absl::Status CheckLinkPath(absl::string_view path) {
    for (absl::string_view component : absl::StrSplit(path, '/')) {
      if (std::string why =
              RefusedComponent(component, GIT_FILEMODE_LINK, rules_);
          !why.empty()) {
        return Refused(path, why);
      }
    }
    return absl::OkStatus();
  }

  static absl::Status Refused(absl::string_view path, absl::string_view why) {
    return absl::InvalidArgumentError(
        absl::StrCat("refusing to check out \"", absl::CHexEscape(path),
                     "\": the tree has ", why, " there"));
  }

  git_repository* repo_;
  const PathRules& rules_;
  CheckoutPlan plan_;
};

// The work tree must hold nothing but .git: every file is created with
// O_EXCL, and nothing already there can redirect a write.
absl::Status CheckEmptyWorkTree(const std::string& workdir) {
  DIR* dir = opendir(workdir.c_str());
  if (dir == nullptr) {
    return absl::FailedPreconditionError(
        absl::StrCat("open work tree ", workdir, ": ", std::strerror(errno)));
  }
  std::string other;
  while (const dirent* entry = readdir(dir)) {
    const absl::string_view name = entry->d_name;
    if (name != "." && name != ".." && name != ".git") {
      other = std::string(name);
      break;
    }
  }
  closedir(dir);
  if (!other.empty()) {
    return absl::FailedPreconditionError(
        absl::StrCat("work tree ", workdir, " is not empty: it holds \"",
                     absl::CHexEscape(other), "\""));
  }
  return absl::OkStatus();
}

// Creates the directories of the plan when a first file needs them, on
// any thread. Until the links are made (last) nothing in the work tree is a
// link, so a directory that already exists is one made here.
class DirectoryMaker {
 public:
  DirectoryMaker(const std::string& workdir,
                 const std::vector<Directory>& directories)
      : workdir_(workdir),
        directories_(directories),
        made_(new std::atomic<bool>[directories.size()]) {
    for (size_t i = 0; i < directories.size(); ++i) made_[i] = false;
  }

  // Makes directory `index` and its parents, unless made already.
  absl::Status Make(int index) {
    if (index < 0 || made_[index].load(std::memory_order_acquire)) {
      return absl::OkStatus();
    }
    const Directory& dir = directories_[index];
    CIAGENT_RETURN_IF_ERROR(Make(dir.parent));
    const std::string full = workdir_ + dir.path;
    if (mkdir(full.c_str(), kDirectoryMode) != 0) {
      // Another thread may have made it a moment ago; anything else there
      // (a file, a link) means the tree names the path twice.
      const int error = errno;
      struct stat st;
      if (error != EEXIST || lstat(full.c_str(), &st) != 0 ||
          !S_ISDIR(st.st_mode)) {
        return DiskFailure(error, "create directory", dir.path);
      }
    }
    made_[index].store(true, std::memory_order_release);
    return absl::OkStatus();
  }

 private:
  const std::string& workdir_;
  const std::vector<Directory>& directories_;
  std::unique_ptr<std::atomic<bool>[]> made_;
};

// Creates `file` (never through a link, never over anything) with `data`
// and records its stat data.
absl::Status CreateFile(const std::string& workdir, FileToWrite& file,
                        mode_t mode, const char* data, size_t size) {
  const std::string full = workdir + file.path;
  const int fd = open(
      full.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, mode);
  if (fd < 0) return DiskFailure(errno, "create", file.path);
  while (size > 0) {
    const ssize_t written = write(fd, data, size);
    if (written < 0) {
      if (errno == EINTR) continue;
      const int error = errno;
      close(fd);
      return DiskFailure(error, "write", file.path);
    }
    data += written;
    size -= static_cast<size_t>(written);
  }
  // fstat rather than stat after close (libgit2's way) spares a path
  // lookup; on a local file system the two give the same data.
  if (fstat(fd, &file.st) != 0) {
    const int error = errno;
    close(fd);
    return DiskFailure(error, "stat", file.path);
  }
  // Delayed write errors (NFS) surface at close.
  if (close(fd) != 0) return DiskFailure(errno, "write", file.path);
  return absl::OkStatus();
}

absl::StatusOr<BlobPtr> LookupBlob(git_repository* repo,
                                   const FileToWrite& file) {
  git_blob* raw = nullptr;
  if (int rc = git_blob_lookup(&raw, repo, &file.id); rc != 0) {
    char hex[GIT_OID_HEXSZ + 1];
    git_oid_tostr(hex, sizeof(hex), &file.id);
    return GitFailure(rc, absl::StrCat("read blob ", hex, " of ", file.path));
  }
  return BlobPtr(raw);
}

// Writes a regular file as libgit2's blob_content_to_file does: the blob
// through the filters its path has in `repo`.
absl::Status WriteRegularFile(git_repository* repo, const std::string& workdir,
                              DirectoryMaker& directories, FileToWrite& file) {
  CIAGENT_RETURN_IF_ERROR(directories.Make(file.directory));
  CIAGENT_ASSIGN_OR_RETURN(BlobPtr blob, LookupBlob(repo, file));
  git_filter_list* raw_filters = nullptr;
  if (int rc = git_filter_list_load(&raw_filters, repo, blob.get(),
                                    file.path.c_str(), GIT_FILTER_TO_WORKTREE,
                                    GIT_FILTER_DEFAULT);
      rc != 0) {
    return GitFailure(rc, absl::StrCat("load the filters of ", file.path));
  }
  FilterListPtr filters(raw_filters);
  const mode_t mode =
      file.mode == GIT_FILEMODE_BLOB_EXECUTABLE ? kExecutableMode : kFileMode;
  if (filters == nullptr) {
    return CreateFile(workdir, file, mode,
                      static_cast<const char*>(git_blob_rawcontent(blob.get())),
                      static_cast<size_t>(git_blob_rawsize(blob.get())));
  }
  git_buf filtered = GIT_BUF_INIT;
  if (int rc =
          git_filter_list_apply_to_blob(&filtered, filters.get(), blob.get());
      rc != 0) {
    git_buf_dispose(&filtered);
    return GitFailure(rc, absl::StrCat("filter ", file.path));
  }
  absl::Status status =
      CreateFile(workdir, file, mode, filtered.ptr, filtered.size);
  git_buf_dispose(&filtered);
  return status;
}

// The repository again, for one more thread: its own object and attribute
// caches, nothing shared with `repo` but the files on disk. libgit2's
// git_odb is thread-safe, and the threads could share `repo`'s (each with a
// repository around it for the filters, git_repository_set_odb), but its
// pack caches are then behind one lock: on the 2-core test machine, 5,611
// files / 123 MB on 2 threads took a median 1.84 s with a shared odb and
// 1.73 s with one per thread (9 alternating rounds; libgit2's checkout
// 2.72 s), and 0.94 s against 0.69 s in the quietest round.
absl::StatusOr<RepoPtr> OpenForThread(const std::string& workdir) {
  // Opened by its work tree (which holds .git), so libgit2 sets the work
  // directory itself: git_repository_set_workdir records and clears a
  // lookup error on the new thread, and libgit2 1.5 does not free a
  // thread's error buffer when the thread ends.
  git_repository* raw = nullptr;
  if (int rc = git_repository_open_ext(&raw, workdir.c_str(),
                                       GIT_REPOSITORY_OPEN_NO_SEARCH, nullptr);
      rc != 0) {
    return GitFailure(rc, "open the repository for a checkout thread");
  }
  RepoPtr opened(raw);
  return opened;
}

// Files of one directory to write together: a range of WriteOrder.files.
struct Batch {
  size_t begin;
  size_t end;
};

// The order in which threads take the files. Creating a file takes its
// directory's lock, so two threads creating files in one directory
// mostly wait for each other: files are taken in batches of one
// directory, and the batches of every directory spread evenly over the
// whole run, so that consecutive batches are in different directories.
struct WriteOrder {
  std::vector<size_t> files;  // indices into the plan's files
  std::vector<Batch> batches;
};

constexpr size_t kBatchSize = 8;

WriteOrder OrderForThreads(const std::vector<FileToWrite>& files) {
  std::vector<std::vector<size_t>> by_directory;
  std::unordered_map<std::string_view, size_t> directory_index;
  for (size_t i = 0; i < files.size(); ++i) {
    const std::string_view path = files[i].path;
    const size_t slash = path.rfind('/');
    const std::string_view dir =
        slash == std::string_view::npos ? "" : path.substr(0, slash);
    auto [it, added] = directory_index.try_emplace(dir, by_directory.size());
    if (added) by_directory.emplace_back();
    by_directory[it->second].push_back(i);
  }
  struct Placed {
    double position;  // in [0, 1): where in the run the batch goes
    Batch batch;
  };
  WriteOrder order;
  order.files.reserve(files.size());
  std::vector<Placed> placed;
  for (const std::vector<size_t>& dir_files : by_directory) {
    const size_t first = order.files.size();
    order.files.insert(order.files.end(), dir_files.begin(), dir_files.end());
    const size_t count = (dir_files.size() + kBatchSize - 1) / kBatchSize;
    for (size_t k = 0; k < count; ++k) {
      const size_t begin = first + k * kBatchSize;
      placed.push_back(
          {(static_cast<double>(k) + 0.5) / static_cast<double>(count),
           {begin, std::min(begin + kBatchSize, order.files.size())}});
    }
  }
  std::stable_sort(
      placed.begin(), placed.end(),
      [](const Placed& a, const Placed& b) { return a.position < b.position; });
  order.batches.reserve(placed.size());
  for (const Placed& p : placed) order.batches.push_back(p.batch);
  return order;
}

// Writes `files` on `threads` threads, the calling one (with `repo`)
// included. The first failure stops the others.
absl::Status WriteInParallel(git_repository* repo, const std::string& workdir,
                             DirectoryMaker& directories,
                             std::vector<FileToWrite>& files, int threads) {
  const WriteOrder order = OrderForThreads(files);
  std::atomic<size_t> next{0};
  std::atomic<bool> failed{false};
  absl::Mutex mu;
  absl::Status first_failure;
  auto fail = [&](absl::Status status) {
    absl::MutexLock lock(&mu);
    if (first_failure.ok()) first_failure = std::move(status);
    failed.store(true, std::memory_order_relaxed);
  };
  auto work = [&](git_repository* own_repo) {
    while (!failed.load(std::memory_order_relaxed)) {
      const size_t b = next.fetch_add(1, std::memory_order_relaxed);
      if (b >= order.batches.size()) return;
      for (size_t i = order.batches[b].begin; i < order.batches[b].end; ++i) {
        absl::Status status = WriteRegularFile(own_repo, workdir, directories,
                                               files[order.files[i]]);
        if (!status.ok()) {
          fail(std::move(status));
          return;
        }
      }
    }
  };
  const int helpers =
      static_cast<int>(std::min<size_t>(threads, order.batches.size())) - 1;
  // Threads for this call only. (libgit2 1.5.1 keeps a small error buffer
  // per thread that it does not free when the thread ends: some 50 bytes
  // per helper and call, not worth a long-lived pool.)
  std::vector<std::thread> pool;
  pool.reserve(std::max(helpers, 0));
  for (int t = 0; t < helpers; ++t) {
    pool.emplace_back([&] {
      absl::StatusOr<RepoPtr> own = OpenForThread(workdir);
      if (!own.ok()) {
        fail(own.status());
        return;
      }
      work(own->get());
    });
  }
  work(repo);
  for (std::thread& thread : pool) thread.join();
  return first_failure;
}

absl::Status CreateLink(git_repository* repo, const std::string& workdir,
                        DirectoryMaker& directories, const PathRules& rules,
                        FileToWrite& link) {
  CIAGENT_RETURN_IF_ERROR(directories.Make(link.directory));
  CIAGENT_ASSIGN_OR_RETURN(BlobPtr blob, LookupBlob(repo, link));
  // As libgit2: the target ends at the first NUL.
  const std::string content(
      static_cast<const char*>(git_blob_rawcontent(blob.get())),
      static_cast<size_t>(git_blob_rawsize(blob.get())));
  const std::string target(content.c_str());
  if (!rules.symlinks) {
    CIAGENT_RETURN_IF_ERROR(
        CreateFile(workdir, link, kFileMode, target.data(), target.size()));
    return absl::OkStatus();
  }
  const std::string full = workdir + link.path;
  if (symlink(target.c_str(), full.c_str()) != 0) {
    return DiskFailure(errno, "create symbolic link", link.path);
  }
  if (lstat(full.c_str(), &link.st) != 0) {
    return DiskFailure(errno, "stat", link.path);
  }
  return absl::OkStatus();
}

absl::Status CreateGitlink(const std::string& workdir,
                           DirectoryMaker& directories, FileToWrite& gitlink) {
  CIAGENT_RETURN_IF_ERROR(directories.Make(gitlink.directory));
  const std::string full = workdir + gitlink.path;
  if (mkdir(full.c_str(), kDirectoryMode) != 0) {
    return DiskFailure(errno, "create submodule directory", gitlink.path);
  }
  if (stat(full.c_str(), &gitlink.st) != 0) {
    return DiskFailure(errno, "stat", gitlink.path);
  }
  return absl::OkStatus();
}

// The index entry libgit2's checkout_update_index makes from a file it
// wrote (git_index_entry__init_from_stat with the tree's mode).
git_index_entry IndexEntryFor(const FileToWrite& file) {
  static const bool nanoseconds =
      (git_libgit2_features() & GIT_FEATURE_NSEC) != 0;
  git_index_entry entry = {};
  entry.ctime.seconds = static_cast<int32_t>(file.st.st_ctim.tv_sec);
  entry.mtime.seconds = static_cast<int32_t>(file.st.st_mtim.tv_sec);
  if (nanoseconds) {
    entry.ctime.nanoseconds = static_cast<uint32_t>(file.st.st_ctim.tv_nsec);
    entry.mtime.nanoseconds = static_cast<uint32_t>(file.st.st_mtim.tv_nsec);
  }
  // libgit2 stores st_rdev here, and compares what it stores; git ignores
  // the field unless built with USE_STDEV.
  entry.dev = static_cast<uint32_t>(file.st.st_rdev);
  entry.ino = static_cast<uint32_t>(file.st.st_ino);
  entry.mode = file.mode;
  entry.uid = file.st.st_uid;
  entry.gid = file.st.st_gid;
  entry.file_size = static_cast<uint32_t>(file.st.st_size);
  entry.id = file.id;
  entry.path = file.path.c_str();
  return entry;
}

absl::Status WriteIndex(git_repository* repo, const CheckoutPlan& plan) {
  std::vector<const FileToWrite*> entries;
  entries.reserve(plan.attributes.size() + plan.files.size() +
                  plan.links.size() + plan.gitlinks.size());
  for (const auto* group :
       {&plan.attributes, &plan.files, &plan.links, &plan.gitlinks}) {
    for (const FileToWrite& file : *group) entries.push_back(&file);
  }
  // In index order, each git_index_add appends.
  std::sort(entries.begin(), entries.end(),
            [](const FileToWrite* a, const FileToWrite* b) {
              return a->path < b->path;
            });
  git_index* raw = nullptr;
  if (int rc = git_repository_index(&raw, repo); rc != 0) {
    return GitFailure(rc, "open the index");
  }
  IndexPtr index(raw);
  if (int rc = git_index_clear(index.get()); rc != 0) {
    return GitFailure(rc, "clear the index");
  }
  for (const FileToWrite* file : entries) {
    // git_index_add marks the entry up to date: the racy-clean check at
    // write time trusts its stat data, as after libgit2's checkout.
    const git_index_entry entry = IndexEntryFor(*file);
    if (int rc = git_index_add(index.get(), &entry); rc != 0) {
      return GitFailure(rc, absl::StrCat("add ", file->path, " to the index"));
    }
  }
  if (int rc = git_index_write(index.get()); rc != 0) {
    return GitFailure(rc, "write the index");
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status CheckoutFreshTree(git_repository* repo, const git_oid& commit,
                               int threads) {
  if (threads < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("checkout on ", threads, " threads"));
  }
  if (git_repository_is_bare(repo)) {
    return absl::FailedPreconditionError(absl::StrCat(
        "check out into bare repository ", git_repository_path(repo)));
  }
  const std::string workdir = git_repository_workdir(repo);  // ends in '/'
  CIAGENT_RETURN_IF_ERROR(CheckEmptyWorkTree(workdir));
  char hex[GIT_OID_HEXSZ + 1];
  git_oid_tostr(hex, sizeof(hex), &commit);

  git_commit* raw_commit = nullptr;
  if (int rc = git_commit_lookup(&raw_commit, repo, &commit); rc != 0) {
    absl::Status status = GitFailure(rc, absl::StrCat("look up commit ", hex));
    if (rc == GIT_ENOTFOUND) return absl::NotFoundError(status.message());
    return status;
  }
  CommitPtr commit_object(raw_commit);
  git_tree* raw_tree = nullptr;
  if (int rc = git_commit_tree(&raw_tree, commit_object.get()); rc != 0) {
    return GitFailure(rc, absl::StrCat("read the tree of commit ", hex));
  }
  TreePtr tree(raw_tree);

  CIAGENT_ASSIGN_OR_RETURN(const PathRules rules, ReadPathRules(repo));
  TreePlanner planner(repo, rules);
  CIAGENT_RETURN_IF_ERROR(planner.Add(tree.get(), "", /*directory=*/-1));
  CheckoutPlan plan = std::move(planner).Finish();

  DirectoryMaker directories(workdir, plan.directories);
  // One by one, each filtered by those of its parents already on disk, as
  // libgit2 filters a .gitattributes it writes.
  for (FileToWrite& attributes : plan.attributes) {
    CIAGENT_RETURN_IF_ERROR(
        WriteRegularFile(repo, workdir, directories, attributes));
  }
  CIAGENT_RETURN_IF_ERROR(
      WriteInParallel(repo, workdir, directories, plan.files, threads));
  for (FileToWrite& link : plan.links) {
    CIAGENT_RETURN_IF_ERROR(
        CreateLink(repo, workdir, directories, rules, link));
  }
  for (FileToWrite& gitlink : plan.gitlinks) {
    CIAGENT_RETURN_IF_ERROR(CreateGitlink(workdir, directories, gitlink));
  }
  return WriteIndex(repo, plan);
}

}  // namespace ciagent
