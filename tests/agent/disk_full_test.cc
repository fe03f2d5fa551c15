// ci-build when the disk under the build fills up: the cargo target dir is
// on a small tmpfs, filled to the last page before the build starts, so the
// first write cargo makes fails with ENOSPC. The job must be requeued (exit
// 75, status back to "queued", its stream entry redeliverable), the log must
// say why, and the cache on the real disk must serve the next attempt.
//
// Mounting needs root or CAP_SYS_ADMIN: without it the test is skipped,
// with a message saying so, even under CI=true (a CI runner without that
// capability cannot run it; tests/pipeline/pipeline_test.cc still covers the
// pipeline's side with a stand-in cargo that prints the error). The tmpfs is
// always unmounted.
#include <errno.h>
#include <fcntl.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "ciagent/job/job.h"
#include "ciagent/queue/claim_file.h"
#include "ciagent/queue/job_queue.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "testing/cargo_fixture.h"
#include "testing/redis_server.h"
#include "testing/status_matchers.h"
#include "testing/subprocess.h"

namespace ciagent {
namespace {

namespace fs = std::filesystem;
using ::ciagent::testing::ReadFileOrEmpty;
using ::ciagent::testing::Subprocess;
using ::ciagent::testing::SubprocessOptions;
using ::testing::HasSubstr;

// `ci-build --help`: 0 success, 75 not finished here (requeued).
constexpr int kSuccess = 0;
constexpr int kRequeued = 75;

// Every regular file under `root` with its size, and every directory; what
// the cache held must still be there, whole, after the failed run.
std::map<std::string, std::string> CacheFiles(const std::string& root) {
  std::map<std::string, std::string> files;
  std::error_code error;
  for (auto it = fs::recursive_directory_iterator(root, error);
       it != fs::recursive_directory_iterator(); it.increment(error)) {
    if (error) break;
    const std::string relative = fs::relative(it->path(), root).string();
    if (it->is_symlink()) {
      files[relative] = "symlink";
    } else if (it->is_directory()) {
      files[relative] = "dir";
    } else if (it->is_regular_file()) {
      files[relative] = absl::StrCat("file ", it->file_size());
    }
  }
  return files;
}

class DiskFullTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_OK_AND_ASSIGN(tool_, testing::PathFromEnv("CIAGENT_CI_BUILD"));
    ASSERT_OK_AND_ASSIGN(dir_, testing::MakeTempDir("ciagent-disk-full-"));
    workdir_ = dir_ + "/work";
    cache_ = dir_ + "/cache";
    full_ = dir_ + "/full";
    ASSERT_EQ(mkdir(workdir_.c_str(), 0755), 0);
    ASSERT_EQ(mkdir(full_.c_str(), 0755), 0);
    if (::mount("tmpfs", full_.c_str(), "tmpfs", MS_NOSUID | MS_NODEV,
                "size=8m") != 0) {
      const int error = errno;
      if (error == EPERM || error == EACCES) {
        GTEST_SKIP() << "mounting a tmpfs needs root or CAP_SYS_ADMIN ("
                     << std::strerror(error)
                     << "); skipped, also under CI=true";
      }
      FAIL() << "mount tmpfs on " << full_ << ": " << std::strerror(error);
    }
    mounted_ = true;
  }

  void TearDown() override {
    if (mounted_ && ::umount2(full_.c_str(), 0) != 0) {
      // Something still holds it open: detach now, freed when released.
      EXPECT_EQ(::umount2(full_.c_str(), MNT_DETACH), 0)
          << "umount " << full_ << ": " << std::strerror(errno);
    }
    if (!dir_.empty()) testing::RemoveTree(dir_);
  }

  // Fills the tmpfs to its last page with one ballast file.
  void FillTheTmpfs() {
    const int fd = ::open((full_ + "/ballast").c_str(),
                          O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
    ASSERT_GE(fd, 0);
    const std::string block(64 * 1024, '\0');
    while (::write(fd, block.data(), block.size()) > 0) {
    }
    ::close(fd);
    struct statvfs st {};
    ASSERT_EQ(::statvfs(full_.c_str(), &st), 0);
    ASSERT_EQ(st.f_bavail, 0u) << "the tmpfs still has room";
  }

  // Claims a job for the passing fixture as ci-consume would: the entry is
  // pending for `consumer`, job.json written, the crate in <workdir>/src.
  void ClaimJob(const testing::RedisServer& redis) {
    Job job{.job_id = "job-disk-full",
            .repo = "https://git.example.com/acme/passing.git",
            .branch = "main",
            .commit = std::string(40, 'c'),
            .steps = {"check"}};
    ASSERT_OK_AND_ASSIGN(redis_options_, RedisOptionsFromUrl(redis.url()));
    queue_options_.consumer = "agent-a";
    queue_options_.create_group = true;
    JobQueue queue(redis_options_, queue_options_);
    ASSERT_OK(queue.Enqueue(job).status());
    ASSERT_OK_AND_ASSIGN(claim_, queue.Claim(absl::Seconds(5)));
    ASSERT_OK(WriteClaimFile(workdir_ + "/job.json", claim_, queue_options_,
                             redis_options_));
    ASSERT_OK_AND_ASSIGN(std::string copied,
                         testing::CopyFixture("passing", workdir_));
    ASSERT_EQ(rename(copied.c_str(), (workdir_ + "/src").c_str()), 0);
  }

  // ci-build --job on the claimed job; the cargo target dir is `target_dir`
  // (empty: the cache's), CARGO_HOME the cache's.
  int RunBuild(const std::string& path, const std::string& target_dir) {
    SubprocessOptions options;
    options.env = {{"PATH", path}, {"CI_CACHE_DIR", cache_}};
    if (!target_dir.empty()) options.env["CI_TARGET_DIR"] = target_dir;
    options.unset_env = {"REDIS_PASSWORD", "CI_SECRET_ENV", "CI_CARGO_HOME",
                         "CIAGENT_LOG_LEVEL"};
    if (target_dir.empty()) options.unset_env.push_back("CI_TARGET_DIR");
    options.stdout_path = dir_ + "/stdout";
    options.stderr_path = dir_ + "/stderr";
    absl::StatusOr<std::unique_ptr<Subprocess>> process =
        Subprocess::Start({tool_, "--job", workdir_ + "/job.json"}, options);
    EXPECT_OK(process.status());
    if (!process.ok()) return -1;
    absl::StatusOr<int> code = (*process)->Wait(absl::Minutes(5));
    EXPECT_OK(code.status());
    return code.value_or(-1);
  }

  std::string StatusField(const std::string& field) {
    RedisClient redis(redis_options_);
    absl::StatusOr<RedisReply> reply = redis.Command(
        {"HGET", queue_options_.StatusKey(claim_.job.job_id), field});
    return reply.ok() ? reply->str : "";
  }

  int64_t PendingEntries() {
    RedisClient redis(redis_options_);
    absl::StatusOr<RedisReply> reply = redis.Command(
        {"XPENDING", queue_options_.stream, queue_options_.group});
    if (!reply.ok() || !reply->is_array() || reply->elements.empty()) return -1;
    return reply->elements[0].integer;
  }

  std::string Log() {
    RedisClient redis(redis_options_);
    absl::StatusOr<RedisReply> reply = redis.Command(
        {"XRANGE", queue_options_.LogKey(claim_.job.job_id), "-", "+"});
    std::string log;
    if (!reply.ok()) return log;
    for (const RedisReply& entry : reply->elements) {
      const auto& kv = entry.elements[1].elements;
      for (size_t i = 0; i + 1 < kv.size(); i += 2) {
        if (kv[i].str == "line") absl::StrAppend(&log, kv[i + 1].str, "\n");
      }
    }
    return log;
  }

  std::string tool_, dir_, workdir_, cache_, full_;
  bool mounted_ = false;
  RedisOptions redis_options_;
  QueueOptions queue_options_;
  ClaimedJob claim_;
};

TEST_F(DiskFullTest, FullTargetDiskRequeuesTheJobAndLeavesTheCacheWhole) {
  CIAGENT_REQUIRE_CARGO(path);
  CIAGENT_START_REDIS(redis);
  ClaimJob(*redis);
  // A cache as an earlier job leaves it: CARGO_HOME and a target dir for
  // the key, written by a build on the real disk (not acked: the job.json
  // is rewritten below for the run under test).
  {
    SubprocessOptions options;
    options.env = {{"PATH", path}, {"CI_CACHE_DIR", cache_}};
    options.unset_env = {"CI_TARGET_DIR", "CI_CARGO_HOME", "CIAGENT_LOG_LEVEL"};
    options.stdout_path = dir_ + "/warm.out";
    options.stderr_path = dir_ + "/warm.err";
    ASSERT_OK_AND_ASSIGN(
        std::unique_ptr<Subprocess> warm,
        Subprocess::Start({tool_, "--local", workdir_ + "/src", "--steps",
                           "check"},
                          options));
    ASSERT_OK_AND_ASSIGN(int code, warm->Wait(absl::Minutes(5)));
    ASSERT_EQ(code, kSuccess) << ReadFileOrEmpty(dir_ + "/warm.err");
  }
  const std::map<std::string, std::string> cache_before = CacheFiles(cache_);
  ASSERT_FALSE(cache_before.empty());
  ASSERT_NO_FATAL_FAILURE(FillTheTmpfs());
  ASSERT_EQ(PendingEntries(), 1);

  const int code = RunBuild(path, full_ + "/target");

  const std::string err = ReadFileOrEmpty(dir_ + "/stderr");
  EXPECT_EQ(code, kRequeued) << err;
  EXPECT_EQ(StatusField("status"), "queued") << err;
  EXPECT_THAT(Log(), HasSubstr("No space left on device"));
  // Still pending: another agent gets it at once, as the second delivery.
  EXPECT_EQ(PendingEntries(), 1);
  QueueOptions other = queue_options_;
  other.consumer = "agent-b";
  JobQueue queue(redis_options_, other);
  ASSERT_OK_AND_ASSIGN(ClaimedJob again, queue.Claim(absl::Seconds(2)));
  EXPECT_EQ(again.job.job_id, claim_.job.job_id);
  EXPECT_EQ(again.attempt, 2);

  // The cache holds what it held, and the next attempt builds from it.
  const std::map<std::string, std::string> cache_after = CacheFiles(cache_);
  for (const auto& [file, what] : cache_before) {
    auto found = cache_after.find(file);
    if (found == cache_after.end()) {
      ADD_FAILURE() << "gone from the cache: " << file;
    } else if (what != found->second && !absl::StrContains(file, "last-use") &&
               !absl::EndsWith(file, ".lock")) {
      ADD_FAILURE() << "changed in the cache: " << file << ": " << what
                    << " -> " << found->second;
    }
  }
  claim_ = again;
  queue_options_.consumer = "agent-b";
  ASSERT_OK(WriteClaimFile(workdir_ + "/job.json", claim_, queue_options_,
                           redis_options_));
  EXPECT_EQ(RunBuild(path, ""), kSuccess) << ReadFileOrEmpty(dir_ + "/stderr");
  EXPECT_EQ(StatusField("status"), "success");
  EXPECT_EQ(PendingEntries(), 0);
}

}  // namespace
}  // namespace ciagent
