// FetchCommit against a real git server (git http-backend over HTTP and
// HTTPS with Basic auth): exact checkout, credentials, mirror cache,
// corruption recovery, retries, TLS trust and submodules.
#include "ciagent/git/fetch.h"

#include <sys/stat.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "ciagent/base/log.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "testing/git_repo.h"
#include "testing/git_server.h"
#include "testing/redis_server.h"
#include "testing/status_matchers.h"
#include "testing/subprocess.h"
#include "testing/tcp_listener.h"

namespace ciagent {
namespace {

namespace fs = std::filesystem;
using ::ciagent::testing::CommitFiles;
using ::ciagent::testing::CommitSubmodule;
using ::ciagent::testing::GitServerOptions;
using ::ciagent::testing::ReadFileOrEmpty;
using ::ciagent::testing::StatusIs;
using ::testing::HasSubstr;
using ::testing::Not;

constexpr char kUser[] = "ci-bot";
constexpr char kToken[] = "tok-9f8e7d6c5b4a";

class FetchTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_OK_AND_ASSIGN(dir_,
                         ::ciagent::testing::MakeTempDir("ciagent-fetch-"));
    cache_ = dir_ + "/cache";
  }
  void TearDown() override { ::ciagent::testing::RemoveTree(dir_); }

  void StartServer(GitServerOptions options = {}) {
    CIAGENT_START_GIT_SERVER(started, options);
    server_ = std::move(started);
  }

  // A repository "app" with one commit on main; returns the commit.
  std::string MakeRepo(const std::map<std::string, std::string>& files = {
                           {"Cargo.toml", "[package]\nname = \"app\"\n"},
                           {"src/main.rs", "fn main() {}\n"}}) {
    auto bare = server_->CreateBareRepo("app");
    EXPECT_OK(bare.status());
    bare_ = *bare;
    auto commit = CommitFiles(bare_, "main", files, "initial");
    EXPECT_OK(commit.status());
    return commit.value_or("");
  }

  FetchOptions Options() const {
    FetchOptions options;
    options.cache_dir = cache_;
    options.backoff = {.initial = absl::Milliseconds(50),
                       .max = absl::Milliseconds(200)};
    options.lock_timeout = absl::Seconds(30);
    options.credentials = {kUser, kToken};
    if (!server_->ca_file().empty()) options.ca_file = server_->ca_file();
    return options;
  }

  std::string Dest(absl::string_view name = "src") const {
    return absl::StrCat(dir_, "/", name);
  }

  std::string dir_, cache_, bare_;
  std::unique_ptr<::ciagent::testing::GitServer> server_;
};

TEST_F(FetchTest, ChecksOutTheExactCommitDetached) {
  StartServer();
  const std::string first = MakeRepo();
  ASSERT_OK(CommitFiles(bare_, "main",
                        {{"src/main.rs", "fn main() { v2() }\n"}}, "second")
                .status());
  ASSERT_OK_AND_ASSIGN(
      FetchResult result,
      FetchCommit(server_->RepoUrl("app"), "main", first, Dest(), Options()));
  EXPECT_EQ(result.commit, first);
  EXPECT_EQ(ReadFileOrEmpty(Dest() + "/src/main.rs"), "fn main() {}\n");
  EXPECT_EQ(ReadFileOrEmpty(Dest() + "/Cargo.toml"),
            "[package]\nname = \"app\"\n");
  EXPECT_EQ(ReadFileOrEmpty(Dest() + "/.git/HEAD"), first + "\n");
  EXPECT_FALSE(result.mirror_was_warm);
  EXPECT_EQ(result.attempts, 1);
}

TEST_F(FetchTest, FetchesWithoutACacheStraightIntoTheWorkTree) {
  StartServer();
  const std::string commit = MakeRepo();
  FetchOptions options = Options();
  options.cache_dir.clear();
  ASSERT_OK_AND_ASSIGN(
      FetchResult result,
      FetchCommit(server_->RepoUrl("app"), "main", commit, Dest(), options));
  EXPECT_TRUE(result.mirror_path.empty());
  EXPECT_EQ(ReadFileOrEmpty(Dest() + "/src/main.rs"), "fn main() {}\n");
  EXPECT_FALSE(fs::exists(cache_));
}

TEST_F(FetchTest, WarmMirrorPicksUpNewCommits) {
  StartServer();
  const std::string first = MakeRepo();
  ASSERT_OK(
      FetchCommit(server_->RepoUrl("app"), "main", first, Dest("a"), Options())
          .status());
  ASSERT_OK_AND_ASSIGN(
      std::string second,
      CommitFiles(bare_, "main", {{"NEW", "new file\n"}}, "second"));
  ASSERT_OK_AND_ASSIGN(FetchResult result,
                       FetchCommit(server_->RepoUrl("app"), "main", second,
                                   Dest("b"), Options()));
  EXPECT_TRUE(result.mirror_was_warm);
  EXPECT_EQ(ReadFileOrEmpty(Dest("b") + "/NEW"), "new file\n");
  EXPECT_EQ(result.mirror_path, MirrorPath(cache_, server_->RepoUrl("app")));
  EXPECT_TRUE(
      fs::exists(result.mirror_path + "/" + std::string(kLastUseStampName)));
}

// The .idx files of a repository's packs, by name.
std::map<std::string, std::string> PackIndexes(const std::string& repo) {
  std::map<std::string, std::string> indexes;
  for (const auto& entry : fs::directory_iterator(repo + "/objects/pack")) {
    if (entry.path().extension() == ".idx") {
      indexes[entry.path().filename().string()] =
          ReadFileOrEmpty(entry.path().string());
    }
  }
  return indexes;
}

TEST_F(FetchTest, ClonesIndexedOnAllCoresMatchLibgit2sOwnIndexing) {
  StartServer();
  std::map<std::string, std::string> files;
  for (int i = 0; i < 40; ++i) {
    files[absl::StrCat("src/f", i, ".rs")] =
        absl::StrCat(std::string(3000, 'a' + i % 26), "\n");
  }
  MakeRepo(files);
  for (int i = 0; i < 40; i += 3)
    files[absl::StrCat("src/f", i, ".rs")] += "edit\n";
  ASSERT_OK_AND_ASSIGN(std::string second,
                       CommitFiles(bare_, "main", files, "second"));
  // A server-side repack makes the clone's pack carry deltas.
  ASSERT_TRUE(::ciagent::testing::RunGit(
                  {"-C", bare_, "repack", "-a", "-d", "-f", "--quiet"})
                  .ok());

  FetchOptions parallel = Options();  // index_threads 0: one per CPU
  FetchOptions libgit2 = Options();
  libgit2.index_threads = 1;
  libgit2.cache_dir = dir_ + "/cache-libgit2";
  ASSERT_OK_AND_ASSIGN(FetchResult ours,
                       FetchCommit(server_->RepoUrl("app"), "main", second,
                                   Dest("a"), parallel));
  ASSERT_OK_AND_ASSIGN(
      FetchResult theirs,
      FetchCommit(server_->RepoUrl("app"), "main", second, Dest("b"), libgit2));
  EXPECT_EQ(ours.transfer.indexed_objects, ours.transfer.total_objects);
  EXPECT_EQ(PackIndexes(ours.mirror_path), PackIndexes(theirs.mirror_path));
  EXPECT_EQ(PackIndexes(ours.mirror_path).size(), 1u);
  auto fsck = ::ciagent::testing::RunGit(
      {"-C", ours.mirror_path, "fsck", "--full", "--strict"});
  ASSERT_OK(fsck.status());
  EXPECT_TRUE(fsck->ok()) << fsck->stderr_text;
  EXPECT_EQ(ReadFileOrEmpty(Dest("a") + "/src/f3.rs"),
            absl::StrCat(std::string(3000, 'd'), "\nedit\n"));

  // The next fetch into that mirror is incremental (libgit2 indexes it).
  ASSERT_OK_AND_ASSIGN(
      std::string third,
      CommitFiles(bare_, "main", {{"NEW", "new file\n"}}, "third"));
  ASSERT_OK_AND_ASSIGN(
      FetchResult warm,
      FetchCommit(server_->RepoUrl("app"), "main", third, Dest("c"), parallel));
  EXPECT_TRUE(warm.mirror_was_warm);
  EXPECT_LT(warm.transfer.received_objects, 5);
  EXPECT_EQ(ReadFileOrEmpty(Dest("c") + "/NEW"), "new file\n");
}

// The inode of a file: the same one after an update means it was not
// written again.
ino_t InodeOf(const std::string& path) {
  struct stat st = {};
  return ::stat(path.c_str(), &st) == 0 ? st.st_ino : 0;
}

TEST_F(FetchTest, UpdatesThePreviousWorkTreeInPlaceAndCleansIt) {
  StartServer();
  const std::string first = MakeRepo({{"Cargo.toml", "[package]\n"},
                                      {"src/main.rs", "fn main() {}\n"},
                                      {"src/util.rs", "// util\n"},
                                      {".gitignore", "/target/\n"}});
  ASSERT_OK(
      FetchCommit(server_->RepoUrl("app"), "main", first, Dest(), Options())
          .status());
  const ino_t untouched = InodeOf(Dest() + "/Cargo.toml");
  ASSERT_NE(untouched, 0u);
  // What a job may leave behind: edits, deletions, build output, new
  // files, and changes to the repository itself.
  std::ofstream(Dest() + "/src/main.rs") << "fn main() { edited() }\n";
  fs::remove(Dest() + "/src/util.rs");
  fs::create_directories(Dest() + "/target/debug");
  std::ofstream(Dest() + "/target/debug/app") << "binary";
  std::ofstream(Dest() + "/scratch.txt") << "untracked";
  std::ofstream(Dest() + "/.git/config", std::ios::app)
      << "[core]\n\tautocrlf = true\n";
  fs::create_directories(Dest() + "/.git/objects/ab");
  std::ofstream(Dest() + "/.git/objects/ab/cdef") << "not an object";

  ASSERT_OK_AND_ASSIGN(
      std::string second,
      CommitFiles(bare_, "main", {{"NEW", "new file\n"}}, "second"));
  ASSERT_OK_AND_ASSIGN(
      FetchResult result,
      FetchCommit(server_->RepoUrl("app"), "main", second, Dest(), Options()));
  EXPECT_TRUE(result.work_tree_reused);
  EXPECT_EQ(ReadFileOrEmpty(Dest() + "/.git/HEAD"), second + "\n");
  EXPECT_EQ(ReadFileOrEmpty(Dest() + "/NEW"), "new file\n");
  EXPECT_EQ(ReadFileOrEmpty(Dest() + "/src/main.rs"), "fn main() {}\n");
  EXPECT_EQ(ReadFileOrEmpty(Dest() + "/src/util.rs"), "// util\n");
  EXPECT_FALSE(fs::exists(Dest() + "/target"));
  EXPECT_FALSE(fs::exists(Dest() + "/scratch.txt"));
  EXPECT_FALSE(fs::exists(Dest() + "/.git/objects/ab"));
  EXPECT_THAT(ReadFileOrEmpty(Dest() + "/.git/config"),
              Not(HasSubstr("autocrlf")));
  EXPECT_EQ(InodeOf(Dest() + "/Cargo.toml"), untouched);

  // Back to the first commit: the file the second one added goes.
  ASSERT_OK_AND_ASSIGN(result, FetchCommit(server_->RepoUrl("app"), "main",
                                           first, Dest(), Options()));
  EXPECT_TRUE(result.work_tree_reused);
  EXPECT_FALSE(fs::exists(Dest() + "/NEW"));
  EXPECT_EQ(ReadFileOrEmpty(Dest() + "/.git/HEAD"), first + "\n");
}

TEST_F(FetchTest, ChecksOutAfreshWhenThePreviousWorkTreeIsBroken) {
  StartServer();
  const std::string commit = MakeRepo();
  ASSERT_OK(
      FetchCommit(server_->RepoUrl("app"), "main", commit, Dest(), Options())
          .status());
  std::ofstream(Dest() + "/.git/index", std::ios::trunc) << "garbage";
  std::ofstream(Dest() + "/src/main.rs") << "edited\n";
  ASSERT_OK_AND_ASSIGN(
      FetchResult result,
      FetchCommit(server_->RepoUrl("app"), "main", commit, Dest(), Options()));
  EXPECT_FALSE(result.work_tree_reused);
  EXPECT_EQ(ReadFileOrEmpty(Dest() + "/src/main.rs"), "fn main() {}\n");
  EXPECT_EQ(ReadFileOrEmpty(Dest() + "/.git/HEAD"), commit + "\n");
}

TEST_F(FetchTest, DoesNotReuseACheckoutOfAnotherRepository) {
  StartServer();
  const std::string commit = MakeRepo();
  ASSERT_OK_AND_ASSIGN(std::string other_bare,
                       server_->CreateBareRepo("other"));
  ASSERT_OK_AND_ASSIGN(std::string other, CommitFiles(other_bare, "main",
                                                      {{"OTHER", "x\n"}}, "o"));
  ASSERT_OK(
      FetchCommit(server_->RepoUrl("other"), "main", other, Dest(), Options())
          .status());
  ASSERT_OK_AND_ASSIGN(
      FetchResult result,
      FetchCommit(server_->RepoUrl("app"), "main", commit, Dest(), Options()));
  EXPECT_FALSE(result.work_tree_reused);
  EXPECT_FALSE(fs::exists(Dest() + "/OTHER"));
  EXPECT_EQ(ReadFileOrEmpty(Dest() + "/src/main.rs"), "fn main() {}\n");
}

TEST_F(FetchTest, AuthenticatesWithTokenAndFailsFastOnAWrongOne) {
  StartServer({.username = kUser, .password = kToken});
  const std::string commit = MakeRepo();
  ASSERT_OK(FetchCommit(server_->RepoUrl("app"), "main", commit, Dest("ok"),
                        Options())
                .status());

  std::vector<std::string> lines;
  SetLogSinkForTesting(
      [&](absl::string_view line) { lines.emplace_back(line); });
  FetchOptions wrong = Options();
  wrong.credentials.token = "wrong-token-1234";
  wrong.cache_dir.clear();
  const absl::Time start = absl::Now();
  absl::StatusOr<FetchResult> rejected =
      FetchCommit(server_->RepoUrl("app"), "main", commit, Dest("bad"), wrong);
  const absl::Duration took = absl::Now() - start;
  SetLogSinkForTesting(nullptr);
  EXPECT_THAT(rejected, StatusIs(absl::StatusCode::kUnauthenticated));
  EXPECT_LT(took, absl::Seconds(2));
  EXPECT_THAT(rejected.status().message(), Not(HasSubstr("wrong-token-1234")));
  for (const auto& line : lines)
    EXPECT_THAT(line, Not(HasSubstr("wrong-token")));
  EXPECT_THAT(server_->RequestLog(), Not(HasSubstr(kToken)));

  FetchOptions anonymous = Options();
  anonymous.credentials = {};
  EXPECT_THAT(
      FetchCommit(server_->RepoUrl("app"), "main", commit, Dest("anon"),
                  anonymous),
      StatusIs(absl::StatusCode::kUnauthenticated, HasSubstr("GIT_TOKEN")));
}

TEST_F(FetchTest, UnknownCommitIsNotFoundNamingCommitAndBranch) {
  StartServer();
  MakeRepo();
  const std::string missing(40, 'e');
  EXPECT_THAT(
      FetchCommit(server_->RepoUrl("app"), "main", missing, Dest(), Options()),
      StatusIs(absl::StatusCode::kNotFound,
               ::testing::AllOf(HasSubstr(missing), HasSubstr("main"))));
}

TEST_F(FetchTest, CommitMustBeOnTheJobsBranchEvenInAWarmMirror) {
  StartServer();
  const std::string on_main = MakeRepo();
  ASSERT_OK_AND_ASSIGN(
      std::string on_feature,
      CommitFiles(bare_, "feature", {{"F", "feature\n"}}, "feature work"));
  // Warm the mirror with both branches' commits.
  ASSERT_OK(FetchCommit(server_->RepoUrl("app"), "feature", on_feature,
                        Dest("a"), Options())
                .status());
  // The feature commit is in the mirror, but not on main.
  EXPECT_THAT(
      FetchCommit(server_->RepoUrl("app"), "main", on_feature, Dest("b"),
                  Options()),
      StatusIs(absl::StatusCode::kNotFound, HasSubstr("not on the branch")));
  // A branch the server does not have, for a commit the mirror has.
  EXPECT_THAT(FetchCommit(server_->RepoUrl("app"), "gone", on_main, Dest("c"),
                          Options()),
              StatusIs(absl::StatusCode::kNotFound,
                       HasSubstr("branch gone not found")));
  // An ancestor of the branch tip is fine.
  ASSERT_OK(CommitFiles(bare_, "main", {{"N", "next\n"}}, "next").status());
  EXPECT_OK(FetchCommit(server_->RepoUrl("app"), "main", on_main, Dest("d"),
                        Options())
                .status());
}

TEST_F(FetchTest, UnknownRepositoryIsNotFound) {
  StartServer();
  EXPECT_THAT(FetchCommit(server_->RepoUrl("nope"), "main",
                          std::string(40, 'a'), Dest(), Options()),
              StatusIs(absl::StatusCode::kNotFound));
}

TEST_F(FetchTest, RecoversFromACorruptRefInTheMirror) {
  StartServer();
  const std::string commit = MakeRepo();
  ASSERT_OK_AND_ASSIGN(FetchResult cold,
                       FetchCommit(server_->RepoUrl("app"), "main", commit,
                                   Dest("a"), Options()));
  // Loose and packed forms of the branch both garbled.
  std::ofstream(cold.mirror_path + "/refs/heads/main") << "garbage\n";
  ASSERT_OK_AND_ASSIGN(FetchResult again,
                       FetchCommit(server_->RepoUrl("app"), "main", commit,
                                   Dest("b"), Options()));
  EXPECT_TRUE(again.mirror_recovered);
  EXPECT_EQ(ReadFileOrEmpty(Dest("b") + "/src/main.rs"), "fn main() {}\n");
}

TEST_F(FetchTest, RecoversFromATruncatedPackInTheMirror) {
  StartServer();
  std::map<std::string, std::string> files;
  for (int i = 0; i < 50; ++i) {
    files[absl::StrCat("src/f", i, ".rs")] = std::string(2000 + i, 'x');
  }
  const std::string commit = MakeRepo(files);
  ASSERT_OK_AND_ASSIGN(FetchResult cold,
                       FetchCommit(server_->RepoUrl("app"), "main", commit,
                                   Dest("a"), Options()));
  int truncated = 0;
  for (const auto& entry :
       fs::directory_iterator(cold.mirror_path + "/objects/pack")) {
    if (entry.path().extension() == ".pack") {
      fs::resize_file(entry.path(), fs::file_size(entry.path()) / 2);
      ++truncated;
    }
  }
  ASSERT_GT(truncated, 0);
  ASSERT_OK_AND_ASSIGN(FetchResult again,
                       FetchCommit(server_->RepoUrl("app"), "main", commit,
                                   Dest("b"), Options()));
  EXPECT_TRUE(again.mirror_recovered);
  EXPECT_EQ(ReadFileOrEmpty(Dest("b") + "/src/f7.rs"), std::string(2007, 'x'));
}

TEST_F(FetchTest, RetriesTransientServerErrors) {
  StartServer({.fail_first_requests = 1});
  const std::string commit = MakeRepo();
  ASSERT_OK_AND_ASSIGN(
      FetchResult result,
      FetchCommit(server_->RepoUrl("app"), "main", commit, Dest(), Options()));
  EXPECT_EQ(result.attempts, 2);
}

TEST_F(FetchTest, ServerDownIsRetriedThenUnavailable) {
  StartServer();
  const std::string commit = MakeRepo();
  ASSERT_OK(server_->Stop());
  absl::StatusOr<FetchResult> result =
      FetchCommit(server_->RepoUrl("app"), "main", commit, Dest(), Options());
  EXPECT_THAT(result, StatusIs(absl::StatusCode::kUnavailable,
                               HasSubstr("after 3 attempts")));
}

TEST_F(FetchTest, ServerThatNeverAnswersIsRetriedThenUnavailable) {
  // Accepts connections and never says a word, as a hung server or a
  // half-open connection does.
  ::ciagent::testing::TcpListener listener;
  ASSERT_NE(listener.port(), 0);
  FetchOptions options;
  options.cache_dir = cache_;
  options.backoff = {.initial = absl::Milliseconds(50),
                     .max = absl::Milliseconds(200)};
  options.io_timeout = absl::Milliseconds(300);
  options.max_attempts = 2;
  absl::StatusOr<FetchResult> result = FetchCommit(
      absl::StrCat("http://127.0.0.1:", listener.port(), "/app.git"), "main",
      std::string(40, 'a'), Dest(), options);
  EXPECT_THAT(result, StatusIs(absl::StatusCode::kUnavailable,
                               HasSubstr("no data from 127.0.0.1 for 0.3 s")));
  EXPECT_THAT(result, StatusIs(absl::StatusCode::kUnavailable,
                               HasSubstr("after 2 attempts")));
}

TEST_F(FetchTest, HttpsNeedsTheConfiguredCa) {
  StartServer({.https = true});
  const std::string commit = MakeRepo();
  ASSERT_OK(
      FetchCommit(server_->RepoUrl("app"), "main", commit, Dest("a"), Options())
          .status());
  EXPECT_EQ(ReadFileOrEmpty(Dest("a") + "/src/main.rs"), "fn main() {}\n");
}

TEST_F(FetchTest, HttpsFailsWithoutTrustingTheCa) {
  // A separate test: libgit2's CA setting is process-wide, and the system
  // store (which does not know the test CA) applies until one is set.
  StartServer({.https = true});
  const std::string commit = MakeRepo();
  FetchOptions options = Options();
  options.ca_file.clear();
  EXPECT_THAT(
      FetchCommit(server_->RepoUrl("app"), "main", commit, Dest(), options),
      StatusIs(absl::StatusCode::kFailedPrecondition,
               HasSubstr("certificate")));
}

TEST_F(FetchTest, ChecksOutSubmodulesRecursively) {
  StartServer();
  ASSERT_OK_AND_ASSIGN(std::string lib_bare, server_->CreateBareRepo("lib"));
  ASSERT_OK_AND_ASSIGN(
      std::string lib_commit,
      CommitFiles(lib_bare, "main", {{"lib.rs", "pub fn f() {}\n"}}, "lib"));
  MakeRepo();
  ASSERT_OK_AND_ASSIGN(
      std::string commit,
      CommitSubmodule(bare_, "main", "vendor/lib", server_->RepoUrl("lib"),
                      lib_commit, "add lib"));
  ASSERT_OK_AND_ASSIGN(
      FetchResult result,
      FetchCommit(server_->RepoUrl("app"), "main", commit, Dest(), Options()));
  EXPECT_EQ(ReadFileOrEmpty(Dest() + "/vendor/lib/lib.rs"), "pub fn f() {}\n");
  EXPECT_THAT(result.submodules, ::testing::ElementsAre("vendor/lib"));
}

TEST_F(FetchTest, UpdatesSubmodulesInPlaceToo) {
  StartServer();
  ASSERT_OK_AND_ASSIGN(std::string lib_bare, server_->CreateBareRepo("lib"));
  ASSERT_OK_AND_ASSIGN(
      std::string lib_v1,
      CommitFiles(lib_bare, "main", {{"lib.rs", "// v1\n"}}, "lib v1"));
  MakeRepo();
  ASSERT_OK_AND_ASSIGN(
      std::string first,
      CommitSubmodule(bare_, "main", "vendor/lib", server_->RepoUrl("lib"),
                      lib_v1, "add lib"));
  ASSERT_OK(
      FetchCommit(server_->RepoUrl("app"), "main", first, Dest(), Options())
          .status());
  std::ofstream(Dest() + "/vendor/lib/stray.o") << "build output";

  ASSERT_OK_AND_ASSIGN(
      std::string lib_v2,
      CommitFiles(lib_bare, "main", {{"lib.rs", "// v2\n"}}, "lib v2"));
  ASSERT_OK_AND_ASSIGN(
      std::string second,
      CommitSubmodule(bare_, "main", "vendor/lib", server_->RepoUrl("lib"),
                      lib_v2, "bump lib"));
  ASSERT_OK_AND_ASSIGN(
      FetchResult result,
      FetchCommit(server_->RepoUrl("app"), "main", second, Dest(), Options()));
  EXPECT_TRUE(result.work_tree_reused);
  EXPECT_EQ(ReadFileOrEmpty(Dest() + "/vendor/lib/lib.rs"), "// v2\n");
  EXPECT_EQ(ReadFileOrEmpty(Dest() + "/vendor/lib/.git/HEAD"), lib_v2 + "\n");
  EXPECT_FALSE(fs::exists(Dest() + "/vendor/lib/stray.o"));
}

TEST_F(FetchTest, ReportsProgressAndHonoursAbort) {
  StartServer();
  const std::string commit = MakeRepo();
  FetchOptions options = Options();
  int reports = 0;
  options.progress_interval = absl::ZeroDuration();
  options.on_progress = [&](const FetchProgress& p) {
    ++reports;
    EXPECT_GE(p.received_objects, 0);
  };
  ASSERT_OK_AND_ASSIGN(
      FetchResult result,
      FetchCommit(server_->RepoUrl("app"), "main", commit, Dest("a"), options));
  EXPECT_GT(reports, 0);
  EXPECT_GT(result.transfer.received_objects, 0);

  FetchOptions aborting = Options();
  aborting.cache_dir.clear();
  aborting.should_abort = [] { return true; };
  EXPECT_THAT(
      FetchCommit(server_->RepoUrl("app"), "main", commit, Dest("b"), aborting),
      StatusIs(absl::StatusCode::kCancelled));
}

TEST_F(FetchTest, TwoProcessesFetchTheSameRepositoryAtOnce) {
  StartServer();
  const std::string commit = MakeRepo();
  ASSERT_OK_AND_ASSIGN(std::string helper,
                       ::ciagent::testing::PathFromEnv("CIAGENT_FETCH_ONCE"));
  std::vector<std::unique_ptr<::ciagent::testing::Subprocess>> fetchers;
  for (const char* name : {"p1", "p2"}) {
    ASSERT_OK_AND_ASSIGN(auto process,
                         ::ciagent::testing::Subprocess::Start(
                             {helper, server_->RepoUrl("app"), "main", commit,
                              Dest(name), cache_},
                             {.stderr_path = Dest(name) + ".log"}));
    fetchers.push_back(std::move(process));
  }
  for (auto& process : fetchers) {
    ASSERT_OK_AND_ASSIGN(int code, process->Wait(absl::Seconds(60)));
    EXPECT_EQ(code, 0);
  }
  EXPECT_EQ(ReadFileOrEmpty(Dest("p1") + "/src/main.rs"), "fn main() {}\n");
  EXPECT_EQ(ReadFileOrEmpty(Dest("p2") + "/src/main.rs"), "fn main() {}\n");
}

TEST(RepoUrlTest, NormalizesForTheMirrorKey) {
  EXPECT_EQ(NormalizeRepoUrl("HTTPS://Git.Example.com:443/Acme/App.git/"),
            "https://git.example.com/Acme/App");
  EXPECT_EQ(NormalizeRepoUrl("http://h:80/a"), "http://h/a");
  EXPECT_EQ(NormalizeRepoUrl("http://h:8080/a.git"), "http://h:8080/a");
  EXPECT_EQ(MirrorPath("/c", "https://h/a.git"),
            MirrorPath("/c", "https://H/a"));
  EXPECT_NE(MirrorPath("/c", "https://h/a"), MirrorPath("/c", "https://h/b"));
  EXPECT_THAT(MirrorPath("/c", "https://h/a"),
              ::testing::StartsWith("/c/git/"));
  // The cache volume's layout (docs/caching.md): sha256 of the normalized URL.
  EXPECT_EQ(MirrorPath("/c", "https://Git.Example.com/a/b.git"),
            "/c/git/"
            "083cba4fc325104dfc5a077f5eafc2b049dbb3c8d3b638fdaa1464f510a78cfd"
            ".git");
}

}  // namespace
}  // namespace ciagent
