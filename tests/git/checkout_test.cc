// CheckoutFreshTree against libgit2's own checkout and the git CLI: the
// same files, modes, links, submodule directories and filtered contents as
// git_checkout_tree(GIT_CHECKOUT_FORCE); an index git trusts; hostile trees
// refused before anything is written.
#include "ciagent/git/checkout.h"

#include <git2.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <set>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/strip.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "testing/git_repo.h"
#include "testing/redis_server.h"
#include "testing/status_matchers.h"

namespace ciagent {
namespace {

namespace fs = std::filesystem;
using ::ciagent::testing::RunGit;
using ::ciagent::testing::StatusIs;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::UnorderedElementsAre;

template <typename T, void (*Free)(T*)>
struct GitDeleter {
  void operator()(T* p) const { Free(p); }
};
using RepoPtr =
    std::unique_ptr<git_repository,
                    GitDeleter<git_repository, git_repository_free>>;
using IndexPtr =
    std::unique_ptr<git_index, GitDeleter<git_index, git_index_free>>;
using ObjectPtr =
    std::unique_ptr<git_object, GitDeleter<git_object, git_object_free>>;

std::string GitMessage() {
  const git_error* e = git_error_last();
  return e != nullptr ? e->message : "?";
}

std::string ReadFile(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

void WriteFile(const fs::path& path, const std::string& text,
               mode_t mode = 0644) {
  fs::create_directories(path.parent_path());
  std::ofstream(path, std::ios::binary | std::ios::trunc) << text;
  ::chmod(path.c_str(), mode);
}

// Every path under `root` but .git, as "<path>: <kind> <mode> <content>":
// a line per file, directory and link, so that two trees compare at once.
std::map<std::string, std::string> Snapshot(const std::string& root) {
  std::map<std::string, std::string> snapshot;
  for (auto it = fs::recursive_directory_iterator(root);
       it != fs::recursive_directory_iterator(); ++it) {
    const std::string path = it->path().lexically_relative(root).string();
    if (path == ".git") {
      it.disable_recursion_pending();
      continue;
    }
    struct stat st;
    if (::lstat(it->path().c_str(), &st) != 0) {
      snapshot[path] = "unreadable";
      continue;
    }
    char mode[8];
    std::snprintf(mode, sizeof(mode), "%04o", st.st_mode & 07777);
    if (S_ISLNK(st.st_mode)) {
      snapshot[path] =
          absl::StrCat("link -> ", fs::read_symlink(it->path()).string());
    } else if (S_ISDIR(st.st_mode)) {
      snapshot[path] = absl::StrCat("dir ", mode);
    } else {
      snapshot[path] = absl::StrCat("file ", mode, " ", ReadFile(it->path()));
    }
  }
  return snapshot;
}

struct IndexLine {
  std::string path;
  uint32_t mode;
  std::string id;
  bool operator==(const IndexLine&) const = default;
  friend std::ostream& operator<<(std::ostream& os, const IndexLine& line) {
    return os << line.path << " " << std::oct << line.mode << std::dec << " "
              << line.id;
  }
};

std::string Hex(const git_oid& id) {
  char hex[GIT_OID_HEXSZ + 1];
  git_oid_tostr(hex, sizeof(hex), &id);
  return hex;
}

class CheckoutTest : public ::testing::TestWithParam<int> {
 protected:
  static void SetUpTestSuite() {
    git_libgit2_init();
    // The modes the tests spell out ("file 0644 ...") are those of this
    // umask.
    ::umask(022);
    // libgit2 must not read the configuration of whoever runs the tests
    // (a global core.autocrlf would change both sides).
    config_home_ = new std::string(
        ::ciagent::testing::MakeTempDir("ciagent-checkout-home-")
            .value_or("/nonexistent"));
    for (int level : {GIT_CONFIG_LEVEL_SYSTEM, GIT_CONFIG_LEVEL_XDG,
                      GIT_CONFIG_LEVEL_GLOBAL, GIT_CONFIG_LEVEL_PROGRAMDATA}) {
      git_libgit2_opts(GIT_OPT_SET_SEARCH_PATH, level, config_home_->c_str());
    }
    // One kitchen sink for every test: the tests only read its objects.
    kitchen_ = new std::string(
        ::ciagent::testing::MakeTempDir("ciagent-checkout-kitchen-")
            .value_or("/nonexistent"));
    Git({"init", "-q", "-b", "main", *kitchen_});
    kitchen_commit_ = new std::string(CommitKitchenSink(*kitchen_));
    second_commit_ = new std::string(CommitChangesToKitchenSink(*kitchen_));
  }
  static void TearDownTestSuite() {
    ::ciagent::testing::RemoveTree(*config_home_);
    ::ciagent::testing::RemoveTree(*kitchen_);
    delete config_home_;
    delete kitchen_;
    delete kitchen_commit_;
    delete second_commit_;
  }

  void SetUp() override {
    ASSERT_OK_AND_ASSIGN(dir_,
                         ::ciagent::testing::MakeTempDir("ciagent-checkout-"));
    origin_ = dir_ + "/origin";
    Git({"init", "-q", "-b", "main", origin_});
  }
  void TearDown() override { ::ciagent::testing::RemoveTree(dir_); }

  int threads() const { return GetParam(); }

  // Runs git (isolated from the user's configuration) in `dir`.
  static std::string Git(std::vector<std::string> args,
                         const std::string& dir = "") {
    if (!dir.empty()) args.insert(args.begin(), {"-C", dir});
    auto result = RunGit(args);
    EXPECT_OK(result.status());
    if (!result.ok()) return "";
    EXPECT_TRUE(result->ok())
        << absl::StrJoin(args, " ") << ": " << result->stderr_text;
    return result->stdout_text;
  }

  // Commits everything in the work tree of `repo` (the gitlink, which has
  // no directory there, stays as it is); returns the commit.
  static std::string CommitAll(const std::string& repo,
                               const std::string& message) {
    Git({"add", "-A", "--", ".", ":(exclude)vendor/lib"}, repo);
    Git({"commit", "-q", "--allow-empty", "-m", message}, repo);
    return std::string(
        absl::StripAsciiWhitespace(Git({"rev-parse", "HEAD"}, repo)));
  }

  // Files of every kind CheckoutFreshTree writes, in nested directories,
  // with .gitattributes filters, and enough of them for several threads.
  static std::string CommitKitchenSink(const std::string& repo) {
    const fs::path o = repo;
    WriteFile(o / "README.md", "hello\n");
    WriteFile(o / "empty", "");
    WriteFile(o / "bin/run.sh", "#!/bin/sh\necho run\n", 0755);
    WriteFile(o / "src/a/b/c/deep.txt", "deep\n");
    WriteFile(o / "data.bin", std::string("\0\1\2\n\r\n\0", 7));
    fs::create_symlink("README.md", o / "link-to-readme");
    fs::create_symlink("a/b", o / "src/dir-link");
    fs::create_symlink("../../nowhere", o / "src/dangling");
    WriteFile(o / ".gitattributes",
              "*.crlf text eol=crlf\n*.ident ident\n*.bin binary\n");
    WriteFile(o / "windows.crlf", "line one\nline two\n");
    WriteFile(o / "version.ident", "version $Id$ here\n");
    WriteFile(o / "sub/.gitattributes", "*.txt text eol=crlf\n");
    WriteFile(o / "sub/notes.txt", "a\nb\n");
    WriteFile(o / "sub/deeper/more.txt", "c\nd\n");
    for (int d = 0; d < 8; ++d) {
      for (int f = 0; f < 16; ++f) {
        WriteFile(o / absl::StrCat("gen/d", d, "/f", f, ".c"),
                  absl::StrCat("int f", d, "_", f, "() { return ", d * f,
                               "; }\n", std::string(f * 97, 'x'), "\n"));
      }
    }
    Git({"add", "-A"}, repo);
    // A submodule without .gitmodules: git and libgit2 write an empty
    // directory.
    Git({"update-index", "--add", "--cacheinfo",
         "160000,0123456789abcdef0123456789abcdef01234567,vendor/lib"},
        repo);
    return CommitAll(repo, "kitchen sink");
  }

  // The kitchen sink with files changed, deleted, added, made executable,
  // a link retargeted and a directory replaced by a file.
  static std::string CommitChangesToKitchenSink(const std::string& repo) {
    const fs::path o = repo;
    WriteFile(o / "README.md", "hello again\n");
    fs::remove(o / "windows.crlf");
    WriteFile(o / "new/file.txt", "new\n");
    ::chmod((o / "src/a/b/c/deep.txt").c_str(), 0755);
    fs::remove(o / "link-to-readme");
    fs::create_symlink("bin/run.sh", o / "link-to-readme");
    fs::remove_all(o / "gen/d7");
    WriteFile(o / "gen/d7", "a file where a directory was\n");
    return CommitAll(repo, "second");
  }

  // A new repository at dir_/<name> whose work tree is empty and which
  // borrows the objects of the kitchen sink and of this test's origin.
  RepoPtr NewWorkTree(const std::string& name) {
    const std::string path = dir_ + "/" + name;
    git_repository* raw = nullptr;
    EXPECT_EQ(git_repository_init(&raw, path.c_str(), 0), 0) << GitMessage();
    git_repository_free(raw);
    WriteFile(
        fs::path(path) / ".git/objects/info/alternates",
        absl::StrCat(*kitchen_, "/.git/objects\n", origin_, "/.git/objects\n"));
    raw = nullptr;
    EXPECT_EQ(git_repository_open(&raw, path.c_str()), 0) << GitMessage();
    return RepoPtr(raw);
  }

  static git_oid Oid(const std::string& hex) {
    git_oid oid;
    EXPECT_EQ(git_oid_fromstr(&oid, hex.c_str()), 0);
    return oid;
  }

  // What libgit2 itself writes: git_checkout_tree with GIT_CHECKOUT_FORCE.
  void Libgit2Checkout(git_repository* repo, const std::string& commit,
                       std::vector<std::string>* updated = nullptr) {
    const git_oid oid = Oid(commit);
    git_object* raw = nullptr;
    ASSERT_EQ(git_object_lookup(&raw, repo, &oid, GIT_OBJECT_COMMIT), 0)
        << GitMessage();
    ObjectPtr object(raw);
    git_checkout_options options = GIT_CHECKOUT_OPTIONS_INIT;
    options.checkout_strategy = GIT_CHECKOUT_FORCE;
    if (updated != nullptr) {
      options.notify_flags = GIT_CHECKOUT_NOTIFY_UPDATED;
      options.notify_cb = [](git_checkout_notify_t, const char* path,
                             const git_diff_file*, const git_diff_file*,
                             const git_diff_file*, void* payload) {
        static_cast<std::vector<std::string>*>(payload)->push_back(path);
        return 0;
      };
      options.notify_payload = updated;
    }
    ASSERT_EQ(git_checkout_tree(repo, object.get(), &options), 0)
        << GitMessage();
    ASSERT_EQ(git_repository_set_head_detached(repo, &oid), 0);
  }

  std::string WorkTree(const std::string& name) const {
    return dir_ + "/" + name;
  }

  std::vector<IndexLine> IndexLines(git_repository* repo) {
    git_index* raw = nullptr;
    EXPECT_EQ(git_repository_index(&raw, repo), 0);
    IndexPtr index(raw);
    EXPECT_EQ(git_index_read(index.get(), /*force=*/true), 0);
    std::vector<IndexLine> lines;
    for (size_t i = 0; i < git_index_entrycount(index.get()); ++i) {
      const git_index_entry* e = git_index_get_byindex(index.get(), i);
      lines.push_back({e->path, e->mode, Hex(e->id)});
    }
    return lines;
  }

  static void SetConfig(git_repository* repo, const char* name, bool value) {
    git_config* config = nullptr;
    ASSERT_EQ(git_repository_config(&config, repo), 0);
    EXPECT_EQ(git_config_set_bool(config, name, value), 0);
    git_config_free(config);
  }

  static std::string* config_home_;
  static std::string* kitchen_;  // a work tree with the kitchen sink
  static std::string* kitchen_commit_;
  static std::string* second_commit_;  // its child
  std::string dir_;
  std::string origin_;
};

std::string* CheckoutTest::config_home_ = nullptr;
std::string* CheckoutTest::kitchen_ = nullptr;
std::string* CheckoutTest::kitchen_commit_ = nullptr;
std::string* CheckoutTest::second_commit_ = nullptr;

TEST_P(CheckoutTest, WritesWhatLibgit2CheckoutWrites) {
  const std::string commit = *kitchen_commit_;
  RepoPtr ours = NewWorkTree("ours");
  RepoPtr theirs = NewWorkTree("theirs");

  ASSERT_OK(CheckoutFreshTree(ours.get(), Oid(commit), threads()));
  Libgit2Checkout(theirs.get(), commit);

  EXPECT_EQ(Snapshot(WorkTree("ours")), Snapshot(WorkTree("theirs")));
  EXPECT_EQ(IndexLines(ours.get()), IndexLines(theirs.get()));
}

TEST_P(CheckoutTest, WritesModesLinksSubmodulesAndFilteredContents) {
  const std::string commit = *kitchen_commit_;
  RepoPtr repo = NewWorkTree("wt");

  ASSERT_OK(CheckoutFreshTree(repo.get(), Oid(commit), threads()));

  const mode_t umask_now = ::umask(0);
  ::umask(umask_now);
  const auto paths = Snapshot(WorkTree("wt"));
  auto snapshot = [&paths](const std::string& path) {
    auto it = paths.find(path);
    return it == paths.end() ? std::string("missing") : it->second;
  };
  auto mode = [&](mode_t bits) {
    char text[8];
    std::snprintf(text, sizeof(text), "%04o", bits & ~umask_now);
    return std::string(text);
  };
  EXPECT_EQ(snapshot("README.md"),
            absl::StrCat("file ", mode(0644), " hello\n"));
  EXPECT_EQ(snapshot("bin/run.sh"),
            absl::StrCat("file ", mode(0755), " #!/bin/sh\necho run\n"));
  EXPECT_EQ(snapshot("src/a/b"), absl::StrCat("dir ", mode(0755)));
  EXPECT_EQ(snapshot("link-to-readme"), "link -> README.md");
  EXPECT_EQ(snapshot("src/dangling"), "link -> ../../nowhere");
  EXPECT_EQ(snapshot("vendor/lib"), absl::StrCat("dir ", mode(0755)));
  EXPECT_EQ(snapshot("vendor/lib/.git"), "missing");
  EXPECT_EQ(snapshot("windows.crlf"),
            absl::StrCat("file ", mode(0644), " line one\r\nline two\r\n"));
  EXPECT_EQ(snapshot("sub/notes.txt"),
            absl::StrCat("file ", mode(0644), " a\r\nb\r\n"));
  EXPECT_EQ(snapshot("sub/deeper/more.txt"),
            absl::StrCat("file ", mode(0644), " c\r\nd\r\n"));
  const std::string ident_blob = std::string(absl::StripAsciiWhitespace(
      Git({"rev-parse", absl::StrCat(commit, ":version.ident")}, *kitchen_)));
  EXPECT_EQ(snapshot("version.ident"),
            absl::StrCat("file ", mode(0644), " version $Id: ", ident_blob,
                         " $ here\n"));
  EXPECT_EQ(
      snapshot("data.bin"),
      absl::StrCat("file ", mode(0644), " ", std::string("\0\1\2\n\r\n\0", 7)));
}

TEST_P(CheckoutTest, GitStatusIsCleanAfterwards) {
  const std::string commit = *kitchen_commit_;
  RepoPtr repo = NewWorkTree("wt");
  const git_oid oid = Oid(commit);
  ASSERT_OK(CheckoutFreshTree(repo.get(), oid, threads()));
  ASSERT_EQ(git_repository_set_head_detached(repo.get(), &oid), 0);

  EXPECT_THAT(Git({"status", "--porcelain", "--ignored"}, WorkTree("wt")),
              IsEmpty());
  // And libgit2's status, which trusts the index's stat data the same way.
  git_status_options options = GIT_STATUS_OPTIONS_INIT;
  options.flags = GIT_STATUS_OPT_INCLUDE_UNTRACKED |
                  GIT_STATUS_OPT_INCLUDE_IGNORED |
                  GIT_STATUS_OPT_RECURSE_UNTRACKED_DIRS;
  git_status_list* list = nullptr;
  ASSERT_EQ(git_status_list_new(&list, repo.get(), &options), 0);
  EXPECT_EQ(git_status_list_entrycount(list), 0u);
  git_status_list_free(list);
}

TEST_P(CheckoutTest, IndexHoldsTheStatDataOfTheFilesWritten) {
  const std::string commit = *kitchen_commit_;
  RepoPtr repo = NewWorkTree("wt");
  ASSERT_OK(CheckoutFreshTree(repo.get(), Oid(commit), threads()));

  git_index* raw = nullptr;
  ASSERT_EQ(git_repository_index(&raw, repo.get()), 0);
  IndexPtr index(raw);
  ASSERT_EQ(git_index_read(index.get(), /*force=*/true), 0);
  ASSERT_GT(git_index_entrycount(index.get()), 140u);
  for (size_t i = 0; i < git_index_entrycount(index.get()); ++i) {
    const git_index_entry* e = git_index_get_byindex(index.get(), i);
    SCOPED_TRACE(e->path);
    struct stat st;
    ASSERT_EQ(::lstat((WorkTree("wt") + "/" + e->path).c_str(), &st), 0);
    EXPECT_EQ(e->mtime.seconds, static_cast<int32_t>(st.st_mtim.tv_sec));
    EXPECT_EQ(e->ino, static_cast<uint32_t>(st.st_ino));
    EXPECT_EQ(e->uid, st.st_uid);
    if (e->mode != GIT_FILEMODE_COMMIT) {
      EXPECT_EQ(e->file_size, static_cast<uint32_t>(st.st_size));
    }
  }
}

TEST_P(CheckoutTest, LaterLibgit2CheckoutUpdatesOnlyWhatDiffers) {
  const std::string first = *kitchen_commit_;
  const std::string second = *second_commit_;

  RepoPtr repo = NewWorkTree("wt");
  const git_oid first_oid = Oid(first);
  ASSERT_OK(CheckoutFreshTree(repo.get(), first_oid, threads()));
  ASSERT_EQ(git_repository_set_head_detached(repo.get(), &first_oid), 0);
  std::vector<std::string> updated;
  Libgit2Checkout(repo.get(), second, &updated);
  RepoPtr reference = NewWorkTree("reference");
  Libgit2Checkout(reference.get(), second);

  EXPECT_EQ(Snapshot(WorkTree("wt")), Snapshot(WorkTree("reference")));
  // Written again: what changed, and no file that did not (deletions are
  // not reported as updates).
  EXPECT_THAT(updated, UnorderedElementsAre("README.md", "new/file.txt",
                                            "src/a/b/c/deep.txt",
                                            "link-to-readme", "gen/d7"));
  EXPECT_THAT(Git({"status", "--porcelain", "--ignored"}, WorkTree("wt")),
              IsEmpty());
}

TEST_P(CheckoutTest, ConvertsLineEndingsForCoreAutocrlfAsLibgit2Does) {
  const std::string commit = *kitchen_commit_;
  RepoPtr ours = NewWorkTree("ours");
  RepoPtr theirs = NewWorkTree("theirs");
  for (git_repository* repo : {ours.get(), theirs.get()}) {
    SetConfig(repo, "core.autocrlf", true);
  }

  ASSERT_OK(CheckoutFreshTree(ours.get(), Oid(commit), threads()));
  Libgit2Checkout(theirs.get(), commit);

  const auto snapshot = Snapshot(WorkTree("ours"));
  EXPECT_EQ(snapshot.find("README.md")->second, "file 0644 hello\r\n");
  EXPECT_EQ(snapshot, Snapshot(WorkTree("theirs")));
  EXPECT_EQ(IndexLines(ours.get()), IndexLines(theirs.get()));
}

TEST_P(CheckoutTest, WritesLinksAsPlainFilesWithoutCoreSymlinks) {
  const std::string commit = *kitchen_commit_;
  RepoPtr ours = NewWorkTree("ours");
  RepoPtr theirs = NewWorkTree("theirs");
  for (git_repository* repo : {ours.get(), theirs.get()}) {
    SetConfig(repo, "core.symlinks", false);
  }

  ASSERT_OK(CheckoutFreshTree(ours.get(), Oid(commit), threads()));
  Libgit2Checkout(theirs.get(), commit);

  const auto snapshot = Snapshot(WorkTree("ours"));
  EXPECT_EQ(snapshot.find("link-to-readme")->second, "file 0644 README.md");
  EXPECT_EQ(snapshot, Snapshot(WorkTree("theirs")));
  EXPECT_EQ(IndexLines(ours.get()), IndexLines(theirs.get()));
}

// libgit2 1.5.1 filters each file by the .gitattributes files it has
// written so far (in path order); git, and CheckoutFreshTree, by all of them.
// The .gitattributes files themselves are filtered as libgit2 filters them.
TEST_P(CheckoutTest, FiltersByEveryGitattributesOfTheTreeAsGitDoes) {
  const fs::path o = origin_;
  WriteFile(o / ".editorconfig", "a\nb\n");  // sorts before .gitattributes
  WriteFile(o / ".gitattributes", "* text eol=crlf\n");
  WriteFile(o / "z.txt", "a\nb\n");
  WriteFile(o / "sub/-early", "a\nb\n");  // sorts before sub/.gitattributes
  WriteFile(o / "sub/.gitattributes", "-early -text\nlate -text\n");
  WriteFile(o / "sub/late", "a\nb\n");
  const std::string commit = CommitAll(origin_, "attributes");
  RepoPtr ours = NewWorkTree("ours");
  RepoPtr theirs = NewWorkTree("theirs");

  ASSERT_OK(CheckoutFreshTree(ours.get(), Oid(commit), threads()));
  Libgit2Checkout(theirs.get(), commit);
  Git({"clone", "-q", origin_, WorkTree("cli")});

  auto ours_files = Snapshot(WorkTree("ours"));
  auto libgit2_files = Snapshot(WorkTree("theirs"));
  auto git_files = Snapshot(WorkTree("cli"));
  EXPECT_EQ(ours_files.at(".editorconfig"), "file 0644 a\r\nb\r\n");
  EXPECT_EQ(ours_files.at("sub/-early"), "file 0644 a\nb\n");
  EXPECT_EQ(ours_files.at(".gitattributes"),
            libgit2_files.at(".gitattributes"));
  EXPECT_EQ(ours_files.at("sub/.gitattributes"),
            libgit2_files.at("sub/.gitattributes"));
  ours_files.erase(".gitattributes");
  git_files.erase(".gitattributes");
  EXPECT_EQ(ours_files, git_files);
  // libgit2 differs on exactly the two files sorted before their rules.
  EXPECT_EQ(libgit2_files.at(".editorconfig"), "file 0644 a\nb\n");
  EXPECT_EQ(libgit2_files.at("sub/-early"), "file 0644 a\r\nb\r\n");
}

// One entry of a tree object written byte by byte.
struct RawEntry {
  std::string mode;  // octal, as in tree objects: "100644", "40000", ...
  std::string name;
  git_oid id;
};

// Objects as a hostile server could send them: libgit2's tree builder and
// git's index would refuse these names, so the tree is written raw.
class HostileObjects {
 public:
  explicit HostileObjects(const std::string& repo_path) {
    EXPECT_EQ(git_repository_open(&repo_, repo_path.c_str()), 0);
    EXPECT_EQ(git_repository_odb(&odb_, repo_), 0);
  }
  ~HostileObjects() {
    git_odb_free(odb_);
    git_repository_free(repo_);
  }

  git_oid Blob(const std::string& content) {
    return Write(content, GIT_OBJECT_BLOB);
  }
  git_oid Tree(const std::vector<RawEntry>& entries) {
    std::string raw;
    for (const RawEntry& e : entries) {
      raw += absl::StrCat(e.mode, " ", e.name, std::string(1, '\0'));
      raw.append(reinterpret_cast<const char*>(e.id.id), GIT_OID_RAWSZ);
    }
    return Write(raw, GIT_OBJECT_TREE);
  }
  std::string Commit(const std::vector<RawEntry>& root) {
    const std::string body = absl::StrCat(
        "tree ", Hex(Tree(root)), "\n",
        "author A <a@example.com> 1700000000 +0000\n",
        "committer A <a@example.com> 1700000000 +0000\n\nhostile\n");
    return Hex(Write(body, GIT_OBJECT_COMMIT));
  }

 private:
  git_oid Write(const std::string& data, git_object_t type) {
    git_oid id;
    EXPECT_EQ(git_odb_write(&id, odb_, data.data(), data.size(), type), 0)
        << GitMessage();
    return id;
  }

  git_repository* repo_ = nullptr;
  git_odb* odb_ = nullptr;
};

std::set<std::string> Listing(const std::string& dir) {
  std::set<std::string> names;
  for (const auto& entry : fs::directory_iterator(dir)) {
    names.insert(entry.path().filename().string());
  }
  return names;
}

TEST_P(CheckoutTest, RefusesPathsOutsideTheWorkTreeOrInsideGit) {
  HostileObjects objects(origin_);
  const git_oid payload = objects.Blob("[core]\n\thooksPath = /tmp\n");
  const git_oid escape = objects.Tree({{"100644", "escape", payload}});
  const git_oid config = objects.Tree({{"100644", "config", payload}});
  struct Case {
    std::string refused;  // the path the error names
    std::vector<RawEntry> root;
  };
  const std::vector<Case> cases = {
      {"..", {{"40000", "..", escape}}},
      {"../escape", {{"100644", "../escape", payload}}},
      {".", {{"40000", ".", escape}}},
      {"/tmp/escape", {{"100644", "/tmp/escape", payload}}},
      {".git", {{"40000", ".git", config}}},
      {".GIT", {{"40000", ".GIT", config}}},
      {".git. ", {{"40000", ".git. ", config}}},  // NTFS reads ".git"
      {"GIT~1", {{"40000", "GIT~1", config}}},    // NTFS short name
      {"a/.git", {{"40000", "a", objects.Tree({{"40000", ".git", config}})}}},
      {".gitmodules", {{"120000", ".gitmodules", payload}}},
      {"GITMOD~1", {{"120000", "GITMOD~1", payload}}},
  };
  const std::set<std::string> before = Listing(dir_);
  for (size_t i = 0; i < cases.size(); ++i) {
    const Case& c = cases[i];
    SCOPED_TRACE(c.refused);
    const std::string name = absl::StrCat("wt", i);
    RepoPtr repo = NewWorkTree(name);
    const std::string git_config_before =
        ReadFile(WorkTree(name) + "/.git/config");

    EXPECT_THAT(
        CheckoutFreshTree(repo.get(), Oid(objects.Commit(c.root)), threads()),
        StatusIs(absl::StatusCode::kInvalidArgument,
                 HasSubstr(absl::StrCat("\"", c.refused, "\""))));

    EXPECT_THAT(Listing(WorkTree(name)), ::testing::ElementsAre(".git"));
    EXPECT_EQ(ReadFile(WorkTree(name) + "/.git/config"), git_config_before);
    std::set<std::string> after = Listing(dir_);
    for (size_t made = 0; made <= i; ++made) {
      after.erase(absl::StrCat("wt", made));
    }
    EXPECT_EQ(after, before);
  }
}

TEST_P(CheckoutTest, RefusesATreeThatNamesAPathTwice) {
  HostileObjects objects(origin_);
  const git_oid first = objects.Blob("first\n");
  const git_oid second = objects.Blob("second\n");
  const git_oid dir = objects.Tree({{"100644", "passwd", first}});
  const std::string twice_a_file =
      objects.Commit({{"100644", "same", first}, {"100644", "same", second}});
  // A link and a directory of the same name: written through the link, the
  // file would land outside the work tree.
  const std::string link_and_dir = objects.Commit(
      {{"120000", "etc", objects.Blob("/etc")}, {"40000", "etc", dir}});
  RepoPtr a = NewWorkTree("a");
  RepoPtr b = NewWorkTree("b");

  EXPECT_THAT(CheckoutFreshTree(a.get(), Oid(twice_a_file), threads()),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("same: File exists (the tree names this "
                                 "path twice)")));
  EXPECT_EQ(ReadFile(WorkTree("a") + "/same"), "first\n");
  EXPECT_THAT(CheckoutFreshTree(b.get(), Oid(link_and_dir), threads()),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("etc")));
  EXPECT_TRUE(fs::is_directory(WorkTree("b") + "/etc"));
  EXPECT_FALSE(fs::is_symlink(WorkTree("b") + "/etc"));
}

TEST_P(CheckoutTest, WritesNoDirectoryForAnEmptyTree) {
  HostileObjects objects(origin_);
  const git_oid empty = objects.Tree({});
  const std::string commit = objects.Commit(
      {{"40000", "empty", empty},
       {"40000", "nested", objects.Tree({{"40000", "empty", empty}})},
       {"100644", "file", objects.Blob("x\n")}});
  RepoPtr ours = NewWorkTree("ours");
  RepoPtr theirs = NewWorkTree("theirs");

  ASSERT_OK(CheckoutFreshTree(ours.get(), Oid(commit), threads()));
  Libgit2Checkout(theirs.get(), commit);

  EXPECT_THAT(Listing(WorkTree("ours")),
              ::testing::ElementsAre(".git", "file"));
  EXPECT_EQ(Snapshot(WorkTree("ours")), Snapshot(WorkTree("theirs")));
}

TEST_P(CheckoutTest, RefusesAWorkTreeThatIsNotEmpty) {
  const std::string commit = *kitchen_commit_;
  RepoPtr repo = NewWorkTree("wt");
  WriteFile(WorkTree("wt") + "/left-over", "x");

  EXPECT_THAT(
      CheckoutFreshTree(repo.get(), Oid(commit), threads()),
      StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("left-over")));
}

TEST_P(CheckoutTest, MissingCommitIsNotFound) {
  RepoPtr repo = NewWorkTree("wt");

  EXPECT_THAT(
      CheckoutFreshTree(repo.get(),
                        Oid("0123456789abcdef0123456789abcdef01234567"),
                        threads()),
      StatusIs(absl::StatusCode::kNotFound, HasSubstr("0123456789abcdef")));
}

TEST_P(CheckoutTest, MissingBlobIsDataLossNamingThePath) {
  HostileObjects objects(origin_);
  git_oid absent;
  ASSERT_EQ(
      git_oid_fromstr(&absent, "fedcba9876543210fedcba9876543210fedcba98"), 0);
  const std::string commit = objects.Commit({{"100644", "lost.txt", absent}});
  RepoPtr repo = NewWorkTree("wt");

  EXPECT_THAT(CheckoutFreshTree(repo.get(), Oid(commit), threads()),
              StatusIs(absl::StatusCode::kDataLoss, HasSubstr("lost.txt")));
}

INSTANTIATE_TEST_SUITE_P(Threads, CheckoutTest, ::testing::Values(1, 4),
                         [](const auto& info) {
                           return absl::StrCat(info.param, "Threads");
                         });

}  // namespace
}  // namespace ciagent
