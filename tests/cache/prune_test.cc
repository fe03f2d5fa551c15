#include "ciagent/cache/prune.h"

#include <fcntl.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "ciagent/base/clock.h"
#include "ciagent/base/file_lock.h"
#include "testing/status_matchers.h"

namespace ciagent {
namespace {

namespace fs = std::filesystem;
using ::ciagent::testing::StatusIs;
using ::testing::ElementsAre;
using ::testing::IsEmpty;

class ManualClock : public Clock {
 public:
  explicit ManualClock(absl::Time now) : now_(now) {}
  absl::Time Now() const override { return now_; }
  void SleepFor(absl::Duration d) override { now_ += d; }

 private:
  absl::Time now_;
};

const absl::Time kNow = absl::FromUnixSeconds(1800000000);

CacheEntry Entry(std::string path, absl::Duration age, int64_t size,
                 bool in_use = false) {
  CacheEntry e;
  e.path = std::move(path);
  e.last_use = kNow - age;
  e.size_bytes = size;
  e.in_use = in_use;
  return e;
}

std::vector<std::string> Paths(const std::vector<CacheEntry>& entries,
                               const std::vector<PlannedRemoval>& removals) {
  std::vector<std::string> out;
  for (const PlannedRemoval& r : removals) out.push_back(entries[r.entry].path);
  return out;
}

TEST(PrunePlanTest, RemovesEntriesOlderThanMaxAgeOldestFirst) {
  const std::vector<CacheEntry> entries = {
      Entry("target/b", absl::Hours(24 * 8), 10),
      Entry("git/a.git", absl::Hours(24 * 30), 10),
      Entry("target/fresh", absl::Hours(1), 10),
      Entry("target/edge", absl::Hours(24 * 7), 10),  // not older: equal
  };
  const PrunePlan plan = MakePrunePlan(entries, kNow, PrunePolicy{});
  EXPECT_THAT(Paths(entries, plan.remove),
              ElementsAre("git/a.git", "target/b"));
  for (const PlannedRemoval& r : plan.remove) {
    EXPECT_EQ(r.reason, PruneReason::kOlderThanMaxAge);
  }
  EXPECT_EQ(plan.total_before, 40);
  EXPECT_EQ(plan.total_after, 20);
}

TEST(PrunePlanTest, EvictsLeastRecentlyUsedUntilTotalIsUnderSizeCap) {
  const std::vector<CacheEntry> entries = {
      Entry("target/newest", absl::Hours(1), 40),
      Entry("target/oldest", absl::Hours(5), 30),
      Entry("target/middle", absl::Hours(3), 20),
      Entry("git/x.git", absl::Hours(2), 10),
  };
  PrunePolicy policy;
  policy.max_size_bytes = 55;
  const PrunePlan plan = MakePrunePlan(entries, kNow, policy);
  // 100 -> 70 (oldest) -> 50 (middle) <= 55: stop.
  EXPECT_THAT(Paths(entries, plan.remove),
              ElementsAre("target/oldest", "target/middle"));
  for (const PlannedRemoval& r : plan.remove) {
    EXPECT_EQ(r.reason, PruneReason::kOverSizeCap);
  }
  EXPECT_EQ(plan.total_after, 50);
}

TEST(PrunePlanTest, AgesOutFirstThenEvictsBySize) {
  const std::vector<CacheEntry> entries = {
      Entry("target/old", absl::Hours(24 * 9), 5),
      Entry("target/a", absl::Hours(3), 50),
      Entry("target/b", absl::Hours(2), 50),
  };
  PrunePolicy policy;
  policy.max_size_bytes = 60;
  const PrunePlan plan = MakePrunePlan(entries, kNow, policy);
  ASSERT_THAT(Paths(entries, plan.remove),
              ElementsAre("target/old", "target/a"));
  EXPECT_EQ(plan.remove[0].reason, PruneReason::kOlderThanMaxAge);
  EXPECT_EQ(plan.remove[1].reason, PruneReason::kOverSizeCap);
}

TEST(PrunePlanTest, NeverRemovesEntriesInUseAndReportsThemSkipped) {
  const std::vector<CacheEntry> entries = {
      Entry("target/old-busy", absl::Hours(24 * 9), 10, /*in_use=*/true),
      Entry("target/lru-busy", absl::Hours(5), 50, /*in_use=*/true),
      Entry("target/next", absl::Hours(4), 50),
      Entry("target/new", absl::Hours(1), 50),
  };
  PrunePolicy policy;
  policy.max_size_bytes = 110;
  const PrunePlan plan = MakePrunePlan(entries, kNow, policy);
  // 160 -> 110 (next): busy entries are passed over, never counted freed.
  EXPECT_THAT(Paths(entries, plan.remove), ElementsAre("target/next"));
  EXPECT_THAT(Paths(entries, plan.skipped_in_use),
              ElementsAre("target/old-busy", "target/lru-busy"));
  EXPECT_EQ(plan.total_after, 110);
  // A cap the busy entries alone exceed removes everything else.
  policy.max_size_bytes = 0;
  const PrunePlan all = MakePrunePlan(entries, kNow, policy);
  EXPECT_THAT(Paths(entries, all.remove),
              ElementsAre("target/next", "target/new"));
  EXPECT_EQ(all.total_after, 60);
}

TEST(PrunePlanTest, ReasonsNameTheLimit) {
  PrunePolicy policy;
  EXPECT_EQ(PruneReasonText(PruneReason::kOlderThanMaxAge, policy),
            "older than 7d");
  policy.max_age = absl::Hours(36);
  EXPECT_EQ(PruneReasonText(PruneReason::kOlderThanMaxAge, policy),
            "older than 36h");
  EXPECT_EQ(PruneReasonText(PruneReason::kOverSizeCap, policy),
            "over size cap, least recently used");
}

TEST(PruneFlagsTest, ParsesAges) {
  EXPECT_EQ(*ParsePruneAge("36h"), absl::Hours(36));
  EXPECT_EQ(*ParsePruneAge("7d"), absl::Hours(168));
  EXPECT_EQ(*ParsePruneAge("1d12h"), absl::Hours(36));
  EXPECT_EQ(*ParsePruneAge("2w"), absl::Hours(336));
  EXPECT_EQ(*ParsePruneAge("90s"), absl::Seconds(90));
  for (const char* bad : {"", "7", "d", "7x", "-1d", "0d", "1.5d", "7d "}) {
    EXPECT_THAT(ParsePruneAge(bad),
                StatusIs(absl::StatusCode::kInvalidArgument))
        << bad;
  }
  EXPECT_EQ(FormatPruneAge(absl::Hours(48)), "2d");
  EXPECT_EQ(FormatPruneAge(absl::Minutes(90)), "90m");
}

TEST(PruneFlagsTest, ParsesSizesBinaryAndDecimal) {
  EXPECT_EQ(*ParseByteSize("50G"), int64_t{50} << 30);
  EXPECT_EQ(*ParseByteSize("50GiB"), int64_t{50} << 30);
  EXPECT_EQ(*ParseByteSize("50GB"), int64_t{50} * 1000 * 1000 * 1000);
  EXPECT_EQ(*ParseByteSize("2t"), int64_t{2} << 40);
  EXPECT_EQ(*ParseByteSize("10k"), 10240);
  EXPECT_EQ(*ParseByteSize("10KB"), 10000);
  EXPECT_EQ(*ParseByteSize("512M"), int64_t{512} << 20);
  EXPECT_EQ(*ParseByteSize("123"), 123);
  EXPECT_EQ(*ParseByteSize("0"), 0);
  for (const char* bad :
       {"", "G", "5X", "5GG", "-5G", "1.5G", "99999999999T", "5 G"}) {
    EXPECT_THAT(ParseByteSize(bad),
                StatusIs(absl::StatusCode::kInvalidArgument))
        << bad;
  }
}

// A cache root in a fresh temporary directory, removed afterwards.
class PruneCacheTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/prune_test.XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    base_ = tmpl;
    root_ = base_ + "/cache";
    fs::create_directories(root_ + "/git");
    fs::create_directories(root_ + "/target");
    fs::create_directories(root_ + "/cargo-home/registry");
    WriteFile(root_ + "/cargo-home/registry/index", 5000);
  }
  void TearDown() override {
    std::error_code ec;
    fs::remove_all(base_, ec);
  }

  static void WriteFile(const std::string& path, size_t bytes) {
    std::ofstream out(path, std::ios::binary);
    out << std::string(bytes, 'x');
  }

  // An entry directory with `files` files of `bytes` each and a stamp.
  void MakeEntry(const std::string& rel, absl::Duration age, int files = 3,
                 size_t bytes = 4096) {
    const std::string dir = root_ + "/" + rel;
    fs::create_directories(dir + "/sub/deeper");
    for (int i = 0; i < files; ++i) {
      WriteFile(absl::StrCat(dir, i % 2 ? "/sub/deeper/f" : "/f", i), bytes);
    }
    std::ofstream(dir + "/ciagent-last-use")
        << FormatTimestamp(kNow - age) << "\n";
  }

  bool Exists(const std::string& rel) {
    std::error_code ec;
    return fs::exists(fs::symlink_status(root_ + "/" + rel, ec));
  }

  PruneOptions Options() {
    PruneOptions o;
    o.cache_dir = root_;
    o.clock = &clock_;
    return o;
  }

  static std::vector<std::string> ItemPaths(
      const std::vector<PruneReport::Item>& items) {
    std::vector<std::string> out;
    for (const auto& item : items) out.push_back(item.path);
    return out;
  }

  ManualClock clock_{kNow};
  std::string base_;
  std::string root_;
};

TEST_F(PruneCacheTest, RemovesAgedOutEntriesByTheirStampsOldestFirst) {
  MakeEntry("git/old.git", absl::Hours(24 * 10));
  MakeEntry("target/older", absl::Hours(24 * 20));
  MakeEntry("target/recent", absl::Hours(2));
  MakeEntry("sccache", absl::Hours(24 * 8));
  ASSERT_OK_AND_ASSIGN(PruneReport report, PruneCache(Options()));
  EXPECT_THAT(ItemPaths(report.removed),
              ElementsAre("target/older", "git/old.git", "sccache"));
  EXPECT_EQ(report.removed[0].reason, "older than 7d");
  EXPECT_TRUE(report.failed.empty());
  EXPECT_FALSE(Exists("git/old.git"));
  EXPECT_FALSE(Exists("target/older"));
  EXPECT_FALSE(Exists("sccache"));
  EXPECT_TRUE(Exists("target/recent/sub/deeper/f1"));
  EXPECT_TRUE(Exists("cargo-home/registry/index"));
  EXPECT_EQ(report.entries_scanned, 4);
  EXPECT_GT(report.bytes_freed, 3 * 3 * 4096);
  EXPECT_EQ(report.total_after, report.total_before - report.bytes_freed);
  EXPECT_GE(report.cargo_home_bytes, 5000);
  // No trash left behind.
  for (const auto& e : fs::directory_iterator(root_)) {
    EXPECT_FALSE(absl::StartsWith(e.path().filename().string(), ".trash-"));
  }
}

TEST_F(PruneCacheTest, AdvancingTheClockAgesEntriesOut) {
  MakeEntry("target/a", absl::Hours(30));
  MakeEntry("target/b", absl::Hours(10));
  PruneOptions options = Options();
  options.policy.max_age = absl::Hours(36);
  ASSERT_OK_AND_ASSIGN(PruneReport first, PruneCache(options));
  EXPECT_THAT(first.removed, IsEmpty());
  clock_.SleepFor(absl::Hours(12));  // a: 42h, b: 22h
  ASSERT_OK_AND_ASSIGN(PruneReport second, PruneCache(options));
  EXPECT_THAT(ItemPaths(second.removed), ElementsAre("target/a"));
  EXPECT_EQ(second.removed[0].reason, "older than 36h");
  EXPECT_TRUE(Exists("target/b"));
}

TEST_F(PruneCacheTest, SizeCapEvictsLeastRecentlyUsedFirst) {
  MakeEntry("target/lru", absl::Hours(5), 4, 64 * 1024);
  MakeEntry("git/mid.git", absl::Hours(3), 4, 64 * 1024);
  MakeEntry("target/mru", absl::Hours(1), 4, 64 * 1024);
  PruneOptions options = Options();
  options.policy.max_size_bytes = 300 * 1024;  // room for one entry
  ASSERT_OK_AND_ASSIGN(PruneReport report, PruneCache(options));
  EXPECT_THAT(ItemPaths(report.removed),
              ElementsAre("target/lru", "git/mid.git"));
  EXPECT_EQ(report.removed[0].reason, "over size cap, least recently used");
  EXPECT_TRUE(Exists("target/mru"));
  EXPECT_LE(report.total_after, options.policy.max_size_bytes);
}

TEST_F(PruneCacheTest, SkipsEntriesWhoseLockIsHeld) {
  MakeEntry("target/busy", absl::Hours(24 * 30));
  MakeEntry("git/busy.git", absl::Hours(24 * 30));
  MakeEntry("target/idle", absl::Hours(24 * 30));
  // flock belongs to the open file description: these conflict with the
  // pruner's own opens although they are in the same process.
  ASSERT_OK_AND_ASSIGN(FileLock target_lock,
                       FileLock::TryAcquire(root_ + "/target/busy.lock"));
  ASSERT_OK_AND_ASSIGN(FileLock git_lock,
                       FileLock::TryAcquire(root_ + "/git/busy.git.lock"));
  PruneOptions options = Options();
  options.policy.max_size_bytes = 0;
  ASSERT_OK_AND_ASSIGN(PruneReport report, PruneCache(options));
  EXPECT_THAT(ItemPaths(report.removed), ElementsAre("target/idle"));
  std::vector<std::string> skipped = ItemPaths(report.skipped_in_use);
  std::sort(skipped.begin(), skipped.end());
  EXPECT_THAT(skipped, ElementsAre("git/busy.git", "target/busy"));
  EXPECT_TRUE(Exists("target/busy/f0"));
  EXPECT_TRUE(Exists("git/busy.git/f0"));
  EXPECT_TRUE(report.failed.empty());
}

TEST_F(PruneCacheTest, ImageStorageIsAnEntryKeptWhileABuildSharesItsLock) {
  MakeEntry("buildah", absl::Hours(24 * 30));
  MakeEntry("target/idle", absl::Hours(24 * 30));
  PruneOptions options = Options();
  {
    // Image builds hold the storage's lock shared, several at once.
    ASSERT_OK_AND_ASSIGN(FileLock build_a,
                         FileLock::AcquireShared(root_ + "/buildah.lock",
                                                 absl::ZeroDuration()));
    ASSERT_OK_AND_ASSIGN(FileLock build_b,
                         FileLock::AcquireShared(root_ + "/buildah.lock",
                                                 absl::ZeroDuration()));
    ASSERT_OK_AND_ASSIGN(PruneReport report, PruneCache(options));
    EXPECT_THAT(ItemPaths(report.removed), ElementsAre("target/idle"));
    EXPECT_THAT(ItemPaths(report.skipped_in_use), ElementsAre("buildah"));
    EXPECT_TRUE(Exists("buildah/f0"));
  }
  ASSERT_OK_AND_ASSIGN(PruneReport report, PruneCache(options));
  EXPECT_THAT(ItemPaths(report.removed), ElementsAre("buildah"));
  EXPECT_FALSE(Exists("buildah"));
}

TEST_F(PruneCacheTest, ATargetDirBeingCopiedIsGuardedByItsKeysLock) {
  MakeEntry("target/k.incoming", absl::Hours(24 * 30));
  MakeEntry("target/crashed.incoming", absl::Hours(24 * 30));
  ASSERT_OK_AND_ASSIGN(FileLock lock,
                       FileLock::TryAcquire(root_ + "/target/k.lock"));
  ASSERT_OK_AND_ASSIGN(PruneReport report, PruneCache(Options()));
  EXPECT_THAT(ItemPaths(report.removed),
              ElementsAre("target/crashed.incoming"));
  EXPECT_THAT(ItemPaths(report.skipped_in_use),
              ElementsAre("target/k.incoming"));
  EXPECT_TRUE(Exists("target/k.incoming/f0"));
}

TEST_F(PruneCacheTest, NeverFollowsOrDeletesThroughASymlinkOutOfTheRoot) {
  const std::string outside = base_ + "/outside";
  fs::create_directories(outside + "/dir");
  WriteFile(outside + "/dir/precious", 1 << 20);
  WriteFile(outside + "/file", 1 << 20);
  MakeEntry("target/evil", absl::Hours(24 * 30));
  fs::create_directory_symlink(outside + "/dir", root_ + "/target/evil/link");
  fs::create_directory_symlink(outside + "/dir",
                               root_ + "/target/evil/sub/dirlink");
  fs::create_symlink(outside + "/file", root_ + "/target/evil/filelink");
  // An entry that is itself a symlink out of the root.
  fs::create_directory_symlink(outside, root_ + "/target/linked");

  int64_t cargo_home = 0, errors = 0;
  ASSERT_OK_AND_ASSIGN(std::vector<CacheEntry> entries,
                       ScanCache(root_, &cargo_home, &errors));
  for (const CacheEntry& e : entries) {
    EXPECT_LT(e.size_bytes, 1 << 20) << e.path << " counted outside bytes";
  }
  ASSERT_OK_AND_ASSIGN(PruneReport report, PruneCache(Options()));
  EXPECT_EQ(report.removed.size(), 2u);
  EXPECT_TRUE(report.failed.empty());
  EXPECT_FALSE(Exists("target/evil"));
  EXPECT_FALSE(Exists("target/linked"));
  EXPECT_TRUE(fs::exists(outside + "/dir/precious"));
  EXPECT_TRUE(fs::exists(outside + "/file"));
  EXPECT_EQ(fs::file_size(outside + "/dir/precious"), 1u << 20);
}

TEST_F(PruneCacheTest, DryRunDeletesNothing) {
  MakeEntry("target/old", absl::Hours(24 * 30));
  MakeEntry("git/big.git", absl::Hours(1), 4, 64 * 1024);
  fs::create_directories(root_ + "/.trash-0123456789abcdef/x");
  PruneOptions options = Options();
  options.dry_run = true;
  options.policy.max_size_bytes = 0;
  ASSERT_OK_AND_ASSIGN(PruneReport report, PruneCache(options));
  EXPECT_TRUE(report.dry_run);
  EXPECT_THAT(ItemPaths(report.removed),
              ElementsAre("target/old", "git/big.git"));
  EXPECT_GT(report.bytes_freed, 0);
  EXPECT_TRUE(Exists("target/old/f0"));
  EXPECT_TRUE(Exists("git/big.git/f0"));
  EXPECT_TRUE(Exists(".trash-0123456789abcdef/x"));
  EXPECT_FALSE(Exists("target/old.lock"));  // no lock files created either
}

TEST_F(PruneCacheTest, DeletesTrashLeftByAnInterruptedRun) {
  fs::create_directories(root_ + "/.trash-00000000000000aa/a/b/c");
  WriteFile(root_ + "/.trash-00000000000000aa/a/b/c/f", 100);
  fs::create_directories(root_ + "/target/.trash-00000000000000bb/d");
  MakeEntry("target/keep", absl::Hours(1));
  ASSERT_OK_AND_ASSIGN(PruneReport report, PruneCache(Options()));
  EXPECT_EQ(report.trash_removed, 2);
  EXPECT_FALSE(Exists(".trash-00000000000000aa"));
  EXPECT_FALSE(Exists("target/.trash-00000000000000bb"));
  EXPECT_TRUE(Exists("target/keep/f0"));
  EXPECT_EQ(report.entries_scanned, 1);  // trash is never an entry
}

TEST_F(PruneCacheTest, MissingStampFallsBackToTheEntrysMtime) {
  fs::create_directories(root_ + "/target/nostamp");
  const struct timespec times[2] = {
      {0, UTIME_OMIT}, absl::ToTimespec(kNow - absl::Hours(24 * 9))};
  ASSERT_EQ(
      ::utimensat(AT_FDCWD, (root_ + "/target/nostamp").c_str(), times, 0), 0);
  int64_t cargo_home = 0, errors = 0;
  ASSERT_OK_AND_ASSIGN(std::vector<CacheEntry> entries,
                       ScanCache(root_, &cargo_home, &errors));
  ASSERT_EQ(entries.size(), 1u);
  EXPECT_TRUE(entries[0].stamp_missing);
  EXPECT_EQ(entries[0].last_use, kNow - absl::Hours(24 * 9));
  ASSERT_OK_AND_ASSIGN(PruneReport report, PruneCache(Options()));
  EXPECT_THAT(ItemPaths(report.removed), ElementsAre("target/nostamp"));
}

TEST_F(PruneCacheTest, CountsHardLinkedFilesOnce) {
  MakeEntry("target/k", absl::Hours(1), 0);
  WriteFile(root_ + "/target/k/artifact", 256 * 1024);
  fs::create_hard_link(root_ + "/target/k/artifact", root_ + "/target/k/copy");
  int64_t cargo_home = 0, errors = 0;
  ASSERT_OK_AND_ASSIGN(std::vector<CacheEntry> entries,
                       ScanCache(root_, &cargo_home, &errors));
  ASSERT_EQ(entries.size(), 1u);
  EXPECT_GE(entries[0].size_bytes, 256 * 1024);
  EXPECT_LT(entries[0].size_bytes, 2 * 256 * 1024);
}

TEST_F(PruneCacheTest, ParallelWalksMeasureLikeOneWalk) {
  for (int i = 0; i < 9; ++i) {
    MakeEntry(absl::StrCat("target/k", i), absl::Hours(i), 5 + i, 1000 * i);
  }
  MakeEntry("sccache", absl::Hours(1));
  int64_t cargo_one = 0, cargo_four = 0, errors = 0;
  ASSERT_OK_AND_ASSIGN(std::vector<CacheEntry> one,
                       ScanCache(root_, &cargo_one, &errors, 1));
  ASSERT_OK_AND_ASSIGN(std::vector<CacheEntry> four,
                       ScanCache(root_, &cargo_four, &errors, 4));
  ASSERT_EQ(one.size(), 10u);
  ASSERT_EQ(four.size(), one.size());
  for (size_t i = 0; i < one.size(); ++i) {
    EXPECT_EQ(four[i].path, one[i].path);
    EXPECT_EQ(four[i].size_bytes, one[i].size_bytes) << one[i].path;
    EXPECT_EQ(four[i].last_use, one[i].last_use);
  }
  EXPECT_EQ(cargo_four, cargo_one);
  EXPECT_EQ(errors, 0);
}

TEST_F(PruneCacheTest, WalksAndRemovesADeepTree) {
  MakeEntry("target/deep", absl::Hours(24 * 30), 0);
  std::string dir = root_ + "/target/deep";
  int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY);
  ASSERT_GE(fd, 0);
  for (int i = 0; i < 300; ++i) {  // paths far beyond PATH_MAX
    ASSERT_EQ(::mkdirat(fd, "a-rather-long-directory-name", 0755), 0);
    const int next =
        ::openat(fd, "a-rather-long-directory-name", O_RDONLY | O_DIRECTORY);
    ::close(fd);
    ASSERT_GE(next, 0);
    fd = next;
  }
  const int file = ::openat(fd, "leaf", O_WRONLY | O_CREAT, 0644);
  ASSERT_GE(file, 0);
  ::close(file);
  ::close(fd);
  ASSERT_OK_AND_ASSIGN(PruneReport report, PruneCache(Options()));
  ASSERT_THAT(ItemPaths(report.removed), ElementsAre("target/deep"));
  EXPECT_GT(report.removed[0].bytes, 300 * 512);
  EXPECT_TRUE(report.failed.empty());
  EXPECT_FALSE(Exists("target/deep"));
}

TEST_F(PruneCacheTest, BuildWritingIntoALockedTargetIsLeftIntact) {
  MakeEntry("target/building", absl::Hours(24 * 30));
  const std::string lock_path = root_ + "/target/building.lock";
  const std::string out_dir = root_ + "/target/building/debug";
  int ready[2];
  ASSERT_EQ(::pipe(ready), 0);
  constexpr int kFiles = 300;
  const pid_t child = ::fork();
  ASSERT_GE(child, 0);
  if (child == 0) {  // the "build": holds the lock, writes artifacts
    absl::StatusOr<FileLock> lock = FileLock::TryAcquire(lock_path);
    if (!lock.ok()) ::_exit(3);
    ::mkdir(out_dir.c_str(), 0755);
    (void)!::write(ready[1], "x", 1);
    for (int i = 0; i < kFiles; ++i) {
      const std::string f = absl::StrCat(out_dir, "/unit", i, ".rlib");
      const int fd = ::open(f.c_str(), O_WRONLY | O_CREAT, 0644);
      if (fd < 0 || ::write(fd, "artifact", 8) != 8) ::_exit(4);
      ::close(fd);
      ::usleep(1000);
    }
    ::_exit(0);
  }
  char c;
  ASSERT_EQ(::read(ready[0], &c, 1), 1);
  PruneOptions options = Options();
  options.policy.max_size_bytes = 0;
  ASSERT_OK_AND_ASSIGN(PruneReport report, PruneCache(options));
  int status = 0;
  ASSERT_EQ(::waitpid(child, &status, 0), child);
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 0);
  EXPECT_THAT(report.removed, IsEmpty());
  EXPECT_THAT(ItemPaths(report.skipped_in_use), ElementsAre("target/building"));
  int files = 0;
  for (const auto& e : fs::directory_iterator(out_dir)) {
    (void)e;
    ++files;
  }
  EXPECT_EQ(files, kFiles);
  EXPECT_TRUE(Exists("target/building/f0"));
}

TEST_F(PruneCacheTest, RefusesAMissingOrUnreadableRoot) {
  PruneOptions options = Options();
  options.cache_dir = base_ + "/nope";
  EXPECT_THAT(PruneCache(options),
              StatusIs(absl::StatusCode::kFailedPrecondition));
  options.cache_dir = root_ + "/cargo-home/registry/index";  // a file
  EXPECT_THAT(PruneCache(options),
              StatusIs(absl::StatusCode::kFailedPrecondition));
  options.cache_dir = "";
  EXPECT_THAT(PruneCache(options),
              StatusIs(absl::StatusCode::kFailedPrecondition));
}

TEST_F(PruneCacheTest, ReportIsOneJsonDocument) {
  MakeEntry("target/old", absl::Hours(24 * 30));
  ASSERT_OK_AND_ASSIGN(PruneReport report, PruneCache(Options()));
  const std::string json = PruneReportJson(report);
  EXPECT_THAT(json, ::testing::HasSubstr(
                        "\"removed\":[{\"path\":\"target/old\",\"reason\":"
                        "\"older than 7d\",\"bytes\":"));
  EXPECT_THAT(json, ::testing::HasSubstr("\"skipped_in_use\":[]"));
  EXPECT_THAT(json, ::testing::HasSubstr("\"duration_ms\":"));
  EXPECT_EQ(json.front(), '{');
  EXPECT_EQ(json.back(), '}');
}

}  // namespace
}  // namespace ciagent
