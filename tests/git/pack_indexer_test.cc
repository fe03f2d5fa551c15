// PackIndexer against git itself: packs written by `git repack` and `git
// pack-objects` are indexed into the very .idx `git index-pack` writes (byte
// for byte), on one thread or several, fed in any chunking; damaged packs
// are refused and leave nothing behind.
#include "ciagent/git/internal/pack_indexer.h"

#include <algorithm>
#include <filesystem>
#include <map>
#include <random>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "testing/git_repo.h"
#include "testing/redis_server.h"
#include "testing/status_matchers.h"
#include "testing/subprocess.h"

namespace ciagent {
namespace {

namespace fs = std::filesystem;
using ::ciagent::testing::CommitFiles;
using ::ciagent::testing::ReadFileOrEmpty;
using ::ciagent::testing::RunGit;
using ::ciagent::testing::StatusIs;
using ::testing::HasSubstr;
using ::testing::IsEmpty;

// Lines of text that change a little from one commit to the next, so that
// git stores most versions as deltas (chains of them, on a few bases).
std::string Version(int file, int version, int lines) {
  std::string text;
  for (int i = 0; i < lines; ++i) {
    absl::StrAppend(&text, "file ", file, " line ", i, " of a source file",
                    (i % 37 == version % 37) ? absl::StrCat(" v", version) : "",
                    "\n");
  }
  return text;
}

// Bytes that do not compress: entries longer than the indexer's read
// window and inflate buffer.
std::string Noise(size_t size, unsigned seed) {
  std::mt19937 random(seed);
  std::string bytes(size, '\0');
  for (char& c : bytes) c = static_cast<char>(random() & 0xff);
  return bytes;
}

// One repository, repacked by git in the ways a server may send it, shared
// by the tests (building it takes seconds).
struct GitPacks {
  std::string dir;
  std::string offset_pack;     // offset deltas (git's default), .idx beside it
  std::string reference_pack;  // reference deltas only, .idx beside it
  std::string thin_pack;       // main~1..main, deltas against main~1's objects
};

// Repacks `repo` into one pack as git would for a clone and moves pack and
// .idx (by git index-pack) to `dest`.pack / `dest`.idx.
void RepackInto(const std::string& repo, bool offset_deltas,
                const std::string& dest) {
  auto result = RunGit({"-C", repo, "-c",
                        absl::StrCat("repack.useDeltaBaseOffset=",
                                     offset_deltas ? "true" : "false"),
                        "-c", "repack.writeBitmaps=false", "repack", "-a", "-d",
                        "-f", "--quiet"});
  ASSERT_TRUE(result.ok() && result->ok());
  for (const auto& entry : fs::directory_iterator(repo + "/objects/pack")) {
    if (entry.path().extension() == ".pack") {
      fs::copy_file(entry.path(), dest + ".pack");
      fs::copy_file(fs::path(entry.path()).replace_extension(".idx"),
                    dest + ".idx");
      return;
    }
  }
  FAIL() << "git repack wrote no pack";
}

GitPacks MakeGitPacks() {
  GitPacks packs;
  auto dir = ::ciagent::testing::MakeTempDir("ciagent-pack-");
  EXPECT_OK(dir.status());
  packs.dir = dir.value_or("");
  const std::string repo = packs.dir + "/repo.git";
  EXPECT_TRUE(RunGit({"init", "--quiet", "--bare", repo}).ok());
  for (int version = 0; version < 12; ++version) {
    std::map<std::string, std::string> files;
    for (int file = 0; file < 6; ++file) {
      files[absl::StrCat("src/f", file, ".rs")] =
          Version(file, version, 300 + 40 * file);
    }
    if (version == 0) {
      files["empty"] = "";
      files["noise.bin"] = Noise(3 << 20, 7);
    }
    if (version == 5) files["noise.bin"] = Noise(3 << 20, 7) + "tail\n";
    EXPECT_OK(
        CommitFiles(repo, "main", files, absl::StrCat("v", version)).status());
  }
  packs.offset_pack = packs.dir + "/offset";
  RepackInto(repo, /*offset_deltas=*/true, packs.offset_pack);
  packs.reference_pack = packs.dir + "/reference";
  RepackInto(repo, /*offset_deltas=*/false, packs.reference_pack);
  packs.thin_pack = packs.dir + "/thin.pack";
  EXPECT_OK(::ciagent::testing::RunTool(
      {"sh", "-c",
       absl::StrCat("printf 'main\\n^main~1\\n' | git -C ", repo,
                    " pack-objects --revs --thin --stdout -q")},
      packs.thin_pack));
  return packs;
}

class PackIndexerTest : public ::testing::TestWithParam<int> {
 protected:
  static void SetUpTestSuite() { packs_ = new GitPacks(MakeGitPacks()); }
  static void TearDownTestSuite() {
    ::ciagent::testing::RemoveTree(packs_->dir);
    delete packs_;
  }
  void SetUp() override {
    ASSERT_OK_AND_ASSIGN(dir_,
                         ::ciagent::testing::MakeTempDir("ciagent-pack-"));
  }
  void TearDown() override { ::ciagent::testing::RemoveTree(dir_); }

  static std::string OffsetPack() {
    return ReadFileOrEmpty(packs_->offset_pack + ".pack");
  }

  // A new, empty pack directory.
  std::string NewPackDir(absl::string_view name) {
    const std::string path = absl::StrCat(dir_, "/", name, ".git");
    EXPECT_TRUE(RunGit({"init", "--quiet", "--bare", path}).ok());
    return path + "/objects/pack";
  }

  // Feeds `pack` to a new indexer in chunks of random sizes, as the network
  // delivers it, and commits.
  absl::StatusOr<std::string> Index(const std::string& pack,
                                    const std::string& pack_dir,
                                    PackIndexerOptions options = {}) {
    if (options.threads == 0) options.threads = GetParam();
    auto indexer = PackIndexer::Create(pack_dir, std::move(options));
    if (!indexer.ok()) return indexer.status();
    std::mt19937 random(42);
    size_t pos = 0;
    while (pos < pack.size()) {
      const size_t n =
          std::min<size_t>(pack.size() - pos, 1 + random() % 70000);
      absl::Status status =
          (*indexer)->Append(absl::string_view(pack).substr(pos, n));
      if (!status.ok()) return status;
      pos += n;
    }
    return (*indexer)->Commit();
  }

  static std::vector<std::string> Files(const std::string& dir) {
    std::vector<std::string> names;
    for (const auto& entry : fs::directory_iterator(dir)) {
      names.push_back(entry.path().filename().string());
    }
    std::sort(names.begin(), names.end());
    return names;
  }

  static GitPacks* packs_;
  std::string dir_;
};

GitPacks* PackIndexerTest::packs_ = nullptr;

INSTANTIATE_TEST_SUITE_P(Threads, PackIndexerTest, ::testing::Values(1, 2, 4),
                         [](const auto& info) {
                           return absl::StrCat(info.param, "Threads");
                         });

TEST_P(PackIndexerTest, WritesTheIndexGitWritesForAnOffsetDeltaPack) {
  const std::string pack = OffsetPack();
  const std::string pack_dir = NewPackDir("clone");
  ASSERT_OK_AND_ASSIGN(std::string name, Index(pack, pack_dir));

  EXPECT_EQ(ReadFileOrEmpty(absl::StrCat(pack_dir, "/pack-", name, ".pack")),
            pack);
  const std::string git_index = ReadFileOrEmpty(packs_->offset_pack + ".idx");
  ASSERT_FALSE(git_index.empty());
  EXPECT_EQ(ReadFileOrEmpty(absl::StrCat(pack_dir, "/pack-", name, ".idx")),
            git_index);
  EXPECT_EQ(Files(pack_dir),
            (std::vector<std::string>{absl::StrCat("pack-", name, ".idx"),
                                      absl::StrCat("pack-", name, ".pack")}));
}

TEST_P(PackIndexerTest, WritesTheIndexGitWritesForAReferenceDeltaPack) {
  const std::string pack_dir = NewPackDir("clone");
  ASSERT_OK_AND_ASSIGN(
      std::string name,
      Index(ReadFileOrEmpty(packs_->reference_pack + ".pack"), pack_dir));
  const std::string git_index =
      ReadFileOrEmpty(packs_->reference_pack + ".idx");
  ASSERT_FALSE(git_index.empty());
  EXPECT_EQ(ReadFileOrEmpty(absl::StrCat(pack_dir, "/pack-", name, ".idx")),
            git_index);
}

TEST_P(PackIndexerTest, GitReadsEveryObjectOfTheIndexedPack) {
  const std::string pack = OffsetPack();
  const std::string pack_dir = NewPackDir("clone");
  ASSERT_OK(Index(pack, pack_dir).status());
  const std::string clone = fs::path(pack_dir).parent_path().parent_path();
  auto fsck =
      RunGit({"-C", clone, "fsck", "--full", "--strict", "--no-dangling"});
  ASSERT_OK(fsck.status());
  EXPECT_TRUE(fsck->ok()) << fsck->stderr_text;
  auto count = RunGit({"-C", clone, "count-objects", "-v"});
  ASSERT_OK(count.status());
  EXPECT_THAT(count->stdout_text, HasSubstr("in-pack: "));
  EXPECT_THAT(count->stdout_text, ::testing::Not(HasSubstr("in-pack: 0\n")));
}

TEST_P(PackIndexerTest, ReportsEveryObjectAndDeltaAsIndexed) {
  const std::string pack = OffsetPack();
  auto indexer =
      PackIndexer::Create(NewPackDir("clone"), {.threads = GetParam()});
  ASSERT_OK(indexer.status());
  ASSERT_OK((*indexer)->Append(pack));
  ASSERT_OK((*indexer)->Commit().status());
  const PackIndexerProgress progress = (*indexer)->progress();
  EXPECT_GT(progress.total_objects, 70);  // 12 commits, their trees, blobs
  EXPECT_EQ(progress.received_objects, progress.total_objects);
  EXPECT_EQ(progress.indexed_objects, progress.total_objects);
  EXPECT_GT(progress.total_deltas, 30);
  EXPECT_EQ(progress.indexed_deltas, progress.total_deltas);
  EXPECT_EQ(progress.received_bytes, static_cast<int64_t>(pack.size()));
}

TEST_P(PackIndexerTest, RefusesADamagedPackAndLeavesNothing) {
  const std::string pack = OffsetPack();
  // One flipped bit in each region: header, an early entry, the middle, the
  // trailer.
  for (size_t at : {size_t{5}, size_t{200}, pack.size() / 2, pack.size() - 3}) {
    std::string damaged = pack;
    damaged[at] ^= 0x10;
    const std::string pack_dir = NewPackDir(absl::StrCat("damaged-", at));
    EXPECT_THAT(Index(damaged, pack_dir), StatusIs(absl::StatusCode::kDataLoss,
                                                   HasSubstr("malformed pack")))
        << "bit flipped at " << at;
    EXPECT_THAT(Files(pack_dir), IsEmpty()) << "bit flipped at " << at;
  }
}

TEST_P(PackIndexerTest, RefusesATruncatedPack) {
  const std::string pack = OffsetPack();
  const std::string pack_dir = NewPackDir("truncated");
  EXPECT_THAT(Index(pack.substr(0, pack.size() - 1000), pack_dir),
              StatusIs(absl::StatusCode::kDataLoss, HasSubstr("truncated")));
  EXPECT_THAT(Files(pack_dir), IsEmpty());
}

TEST_P(PackIndexerTest, RefusesBytesAfterTheTrailer) {
  const std::string pack = OffsetPack();
  const std::string pack_dir = NewPackDir("trailing");
  EXPECT_THAT(Index(pack + "extra", pack_dir),
              StatusIs(absl::StatusCode::kDataLoss,
                       HasSubstr("bytes after the trailer")));
  EXPECT_THAT(Files(pack_dir), IsEmpty());
}

TEST_P(PackIndexerTest, RefusesAThinPackNamingTheMissingBases) {
  // What a server sends a repository that already has main~1: deltas
  // against objects outside the pack.
  const std::string pack_dir = NewPackDir("thin");
  EXPECT_THAT(Index(ReadFileOrEmpty(packs_->thin_pack), pack_dir),
              StatusIs(absl::StatusCode::kDataLoss,
                       HasSubstr("thin packs are not supported")));
  EXPECT_THAT(Files(pack_dir), IsEmpty());
}

TEST_P(PackIndexerTest, StopsWhenCancelledAndLeavesNothing) {
  const std::string pack = OffsetPack();
  const std::string pack_dir = NewPackDir("cancelled");
  EXPECT_THAT(
      Index(pack, pack_dir,
            {.threads = GetParam(), .should_cancel = [] { return true; }}),
      StatusIs(absl::StatusCode::kCancelled));
  EXPECT_THAT(Files(pack_dir), IsEmpty());
}

TEST_P(PackIndexerTest, AbandonedIndexerRemovesItsTemporaryFile) {
  const std::string pack = OffsetPack();
  const std::string pack_dir = NewPackDir("abandoned");
  {
    auto indexer = PackIndexer::Create(pack_dir, {.threads = GetParam()});
    ASSERT_OK(indexer.status());
    ASSERT_OK((*indexer)->Append(absl::string_view(pack).substr(0, 5000)));
    EXPECT_EQ(Files(pack_dir).size(), 1u);  // the temporary pack
  }
  EXPECT_THAT(Files(pack_dir), IsEmpty());
}

TEST(PackIndexerInputTest, RefusesWhatIsNotAPack) {
  ASSERT_OK_AND_ASSIGN(std::string dir,
                       ::ciagent::testing::MakeTempDir("ciagent-pack-"));
  auto indexer = PackIndexer::Create(dir);
  ASSERT_OK(indexer.status());
  ASSERT_OK((*indexer)->Append("<html>503 Service Unavailable</html>"));
  EXPECT_THAT((*indexer)->Commit(), StatusIs(absl::StatusCode::kDataLoss,
                                             HasSubstr("no PACK signature")));
  ::ciagent::testing::RemoveTree(dir);
}

}  // namespace
}  // namespace ciagent
