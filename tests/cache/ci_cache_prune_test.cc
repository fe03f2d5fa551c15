// ci-cache-prune as operators and the CronJob run it: flags, environment,
// exit codes and the --json report.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <simdjson.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "ciagent/base/clock.h"
#include "ciagent/base/file_lock.h"
#include "testing/redis_server.h"
#include "testing/status_matchers.h"
#include "testing/subprocess.h"

namespace ciagent {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;

// Exit codes as documented in `ci-cache-prune --help`.
constexpr int kDone = 0;
constexpr int kSomeRemovalFailed = 1;
constexpr int kUsageError = 2;

class CiCachePruneTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_OK_AND_ASSIGN(tool_, testing::PathFromEnv("CIAGENT_CI_CACHE_PRUNE"));
    ASSERT_OK_AND_ASSIGN(dir_, testing::MakeTempDir("ci-cache-prune"));
    root_ = dir_ + "/cache";
    fs::create_directories(root_ + "/git");
    fs::create_directories(root_ + "/target");
    fs::create_directories(root_ + "/cargo-home");
  }
  void TearDown() override {
    std::error_code ec;
    fs::remove_all(dir_, ec);
  }

  // An entry last used `age` ago (real time: the tool reads the real clock).
  void MakeEntry(const std::string& rel, absl::Duration age,
                 size_t bytes = 4096) {
    const std::string dir = root_ + "/" + rel;
    fs::create_directories(dir + "/deps");
    std::ofstream(dir + "/deps/libx.rlib") << std::string(bytes, 'x');
    std::ofstream(dir + "/ciagent-last-use")
        << FormatTimestamp(absl::Now() - age) << "\n";
  }

  bool Exists(const std::string& rel) {
    return fs::exists(fs::symlink_status(root_ + "/" + rel));
  }

  // Runs the tool; its exit code, stdout in out_, stderr in err_.
  int Run(std::vector<std::string> args,
          std::map<std::string, std::string> env = {}) {
    args.insert(args.begin(), tool_);
    testing::SubprocessOptions options;
    options.env = std::move(env);
    if (!options.env.count("CI_CACHE_DIR")) {
      options.unset_env.push_back("CI_CACHE_DIR");
    }
    options.stdout_path = dir_ + "/stdout";
    options.stderr_path = dir_ + "/stderr";
    auto child = testing::Subprocess::Start(args, options);
    EXPECT_OK(child.status());
    if (!child.ok()) return -1;
    absl::StatusOr<int> code = (*child)->Wait(absl::Seconds(60));
    EXPECT_OK(code.status());
    out_ = testing::ReadFileOrEmpty(dir_ + "/stdout");
    err_ = testing::ReadFileOrEmpty(dir_ + "/stderr");
    return code.ok() ? *code : -1;
  }

  std::string tool_;
  std::string dir_;
  std::string root_;
  std::string out_;
  std::string err_;
};

TEST_F(CiCachePruneTest, JsonReportListsRemovedEntriesWithReasonsAndBytes) {
  MakeEntry("git/0123abcd.git", absl::Hours(48));
  MakeEntry("target/old", absl::Hours(24 * 9));
  MakeEntry("target/new", absl::Hours(1));
  ASSERT_EQ(Run({"--cache-dir", root_, "--max-age", "36h", "--json"}), kDone)
      << err_;
  simdjson::dom::parser parser;
  simdjson::dom::element doc;
  ASSERT_EQ(parser.parse(out_).get(doc), simdjson::SUCCESS) << out_;
  EXPECT_EQ(doc["dry_run"].get_bool().value(), false);
  simdjson::dom::array removed = doc["removed"].get_array().value();
  ASSERT_EQ(removed.size(), 2u);
  EXPECT_EQ(removed.at(0)["path"].get_string().value(), "target/old");
  EXPECT_EQ(removed.at(0)["reason"].get_string().value(), "older than 36h");
  EXPECT_GE(removed.at(0)["bytes"].get_int64().value(), 4096);
  EXPECT_EQ(removed.at(1)["path"].get_string().value(), "git/0123abcd.git");
  const int64_t freed = doc["bytes_freed"].get_int64().value();
  EXPECT_EQ(doc["total_after"].get_int64().value(),
            doc["total_before"].get_int64().value() - freed);
  EXPECT_GE(doc["duration_ms"].get_int64().value(), 0);
  EXPECT_EQ(doc["skipped_in_use"].get_array().value().size(), 0u);
  EXPECT_FALSE(Exists("target/old"));
  EXPECT_FALSE(Exists("git/0123abcd.git"));
  EXPECT_TRUE(Exists("target/new/deps/libx.rlib"));
}

TEST_F(CiCachePruneTest, MaxSizeEvictsLeastRecentlyUsedAndSkipsLockedOnes) {
  MakeEntry("target/busy", absl::Hours(5), 64 * 1024);
  MakeEntry("target/lru", absl::Hours(4), 64 * 1024);
  MakeEntry("target/mru", absl::Hours(1), 64 * 1024);
  // Each entry takes about 76 KiB (file, stamp, two directories): 200K keeps
  // two, and the busy one cannot go.
  ASSERT_OK_AND_ASSIGN(FileLock lock,
                       FileLock::TryAcquire(root_ + "/target/busy.lock"));
  ASSERT_EQ(Run({"--cache-dir", root_, "--max-size", "200K", "--json"}), kDone)
      << err_;
  simdjson::dom::parser parser;
  simdjson::dom::element doc;
  ASSERT_EQ(parser.parse(out_).get(doc), simdjson::SUCCESS) << out_;
  simdjson::dom::array removed = doc["removed"].get_array().value();
  ASSERT_EQ(removed.size(), 1u);
  EXPECT_EQ(removed.at(0)["path"].get_string().value(), "target/lru");
  EXPECT_EQ(removed.at(0)["reason"].get_string().value(),
            "over size cap, least recently used");
  simdjson::dom::array skipped = doc["skipped_in_use"].get_array().value();
  ASSERT_EQ(skipped.size(), 1u);
  EXPECT_EQ(skipped.at(0)["path"].get_string().value(), "target/busy");
  EXPECT_TRUE(Exists("target/busy/deps/libx.rlib"));
  EXPECT_TRUE(Exists("target/mru/deps/libx.rlib"));
}

TEST_F(CiCachePruneTest, DryRunReportsButDeletesNothing) {
  MakeEntry("target/old", absl::Hours(24 * 30));
  ASSERT_EQ(
      Run({"--cache-dir=" + root_, "--dry-run", "--json", "--walk-threads=1"}),
      kDone)
      << err_;
  EXPECT_THAT(out_, HasSubstr("\"dry_run\":true"));
  EXPECT_THAT(out_, HasSubstr("\"path\":\"target/old\""));
  EXPECT_TRUE(Exists("target/old/deps/libx.rlib"));
}

TEST_F(CiCachePruneTest, TakesTheCacheRootFromTheEnvironment) {
  MakeEntry("target/old", absl::Hours(24 * 30));
  ASSERT_EQ(Run({}, {{"CI_CACHE_DIR", root_}}), kDone) << err_;
  EXPECT_THAT(out_, HasSubstr("1 removed"));
  EXPECT_FALSE(Exists("target/old"));
}

TEST_F(CiCachePruneTest, BadFlagsExitTwoWithAMessage) {
  EXPECT_EQ(Run({"--cache-dir", root_, "--max-age", "7x"}), kUsageError);
  EXPECT_THAT(err_, HasSubstr("bad age \"7x\""));
  EXPECT_EQ(Run({"--cache-dir", root_, "--max-size", "5Q"}), kUsageError);
  EXPECT_THAT(err_, HasSubstr("bad size \"5Q\""));
  EXPECT_EQ(Run({"--cache-dir", root_, "--walk-threads", "-1"}), kUsageError);
  EXPECT_EQ(Run({"--cache-dir", root_, "--no-such-flag"}), kUsageError);
  EXPECT_EQ(Run({"--cache-dir", root_, "positional"}), kUsageError);
  EXPECT_EQ(Run({}), kUsageError);
  EXPECT_THAT(err_, HasSubstr("CI_CACHE_DIR"));
  EXPECT_EQ(Run({"--help"}), kDone);
}

TEST_F(CiCachePruneTest, MissingOrNonDirectoryRootExitsTwo) {
  EXPECT_EQ(Run({"--cache-dir", dir_ + "/absent"}), kUsageError);
  EXPECT_THAT(err_, HasSubstr("open cache root " + dir_ + "/absent"));
  std::ofstream(dir_ + "/file") << "x";
  EXPECT_EQ(Run({"--cache-dir", dir_ + "/file"}), kUsageError);
  EXPECT_THAT(err_, HasSubstr("Not a directory"));
}

TEST_F(CiCachePruneTest, AFailedRemovalExitsOneAndTheOthersStillGo) {
  MakeEntry("target/stuck", absl::Hours(24 * 30));
  MakeEntry("target/old", absl::Hours(24 * 30));
  // A lock "file" that cannot be opened for locking.
  fs::create_directories(root_ + "/target/stuck.lock");
  ASSERT_EQ(Run({"--cache-dir", root_, "--json"}), kSomeRemovalFailed) << err_;
  EXPECT_THAT(out_, HasSubstr("\"failed\":[{\"path\":\"target/stuck\""));
  EXPECT_FALSE(Exists("target/old"));
  EXPECT_TRUE(Exists("target/stuck/deps/libx.rlib"));
}

}  // namespace
}  // namespace ciagent
