// ci-consume end to end with a real Redis and a real git server: the claimed
// job's commit is fetched into <workdir>/src, and fetch failures end the job
// (final errors) or requeue it (transient ones).
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <fstream>
#include <map>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "ciagent/job/job.h"
#include "ciagent/queue/job_queue.h"
#include "ciagent/queue/redis_client.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "testing/git_repo.h"
#include "testing/git_server.h"
#include "testing/redis_server.h"
#include "testing/status_matchers.h"
#include "testing/subprocess.h"

namespace ciagent {
namespace {

using ::ciagent::testing::ReadFileOrEmpty;
using ::testing::HasSubstr;
using ::testing::Not;

constexpr char kToken[] = "gitea-token-5150";

class CiConsumeFetchTest : public ::testing::Test {
 protected:
  void SetUp() override {
    CIAGENT_START_REDIS(redis);
    redis_ = std::move(redis);
    const ::ciagent::testing::GitServerOptions git_options = {
        .username = "ci", .password = kToken};
    CIAGENT_START_GIT_SERVER(git, git_options);
    git_ = std::move(git);
    ASSERT_OK_AND_ASSIGN(dir_, ::ciagent::testing::MakeTempDir("ciagent-intake-"));
    ASSERT_OK_AND_ASSIGN(tool_, ::ciagent::testing::PathFromEnv("CIAGENT_CI_CONSUME"));
    ASSERT_OK_AND_ASSIGN(std::string bare, git_->CreateBareRepo("app"));
    ASSERT_OK_AND_ASSIGN(commit_, ::ciagent::testing::CommitFiles(
                                      bare, "main", {{"src/lib.rs", "// app\n"}},
                                      "initial"));
    std::ofstream(dir_ + "/token") << kToken << "\n";
    ASSERT_OK_AND_ASSIGN(redis_options_, RedisOptionsFromUrl(redis_->url()));
  }
  void TearDown() override { ::ciagent::testing::RemoveTree(dir_); }

  void Enqueue(const std::string& commit, std::string repo = "") {
    if (repo.empty()) repo = git_->RepoUrl("app");
    JobQueue queue(redis_options_, QueueOptions{});
    ASSERT_OK(queue
                  .Enqueue(Job{.job_id = "j1",
                               .repo = repo,
                               .branch = "main",
                               .commit = commit})
                  .status());
  }

  // Runs ci-consume once; returns its exit code.
  int Run(const std::string& token_file,
          std::vector<std::string> extra_flags = {}) {
    ::ciagent::testing::SubprocessOptions options;
    options.env = {{"GIT_USERNAME", "ci"}, {"GIT_TOKEN_FILE", token_file}};
    options.unset_env = {"GIT_TOKEN", "GITEA_TOKEN", "GITEA_TOKEN_FILE",
                         "CI_CACHE_DIR", "CI_WORKDIR", "REDIS_URL"};
    options.stdout_path = dir_ + "/stdout";
    options.stderr_path = dir_ + "/stderr";
    std::vector<std::string> argv = {
        tool_, "--redis=" + redis_->url(), "--workdir=" + dir_ + "/work",
        "--cache-dir=" + dir_ + "/cache", "--consumer=agent-a", "--wait=2",
        "--lease=5"};
    argv.insert(argv.end(), extra_flags.begin(), extra_flags.end());
    auto process = ::ciagent::testing::Subprocess::Start(argv, options);
    EXPECT_OK(process.status());
    if (!process.ok()) return -1;
    auto code = (*process)->Wait(absl::Seconds(60));
    return code.value_or(-1);
  }

  std::map<std::string, std::string> Status() {
    RedisClient client(redis_options_);
    std::map<std::string, std::string> fields;
    auto reply = client.Command({"HGETALL", "ci:job:{j1}"});
    for (size_t i = 0; reply.ok() && i + 1 < reply->elements.size(); i += 2) {
      fields[reply->elements[i].str] = reply->elements[i + 1].str;
    }
    return fields;
  }

  std::string LogLines() {
    RedisClient client(redis_options_);
    std::string all;
    auto reply = client.Command({"XRANGE", "ci:job:{j1}:log", "-", "+"});
    for (size_t i = 0; reply.ok() && i < reply->elements.size(); ++i) {
      for (const auto& field : reply->elements[i].elements[1].elements) {
        absl::StrAppend(&all, field.str, " ");
      }
      all.push_back('\n');
    }
    return all;
  }

  std::unique_ptr<::ciagent::testing::RedisServer> redis_;
  std::unique_ptr<::ciagent::testing::GitServer> git_;
  RedisOptions redis_options_;
  std::string dir_, tool_, commit_;
};

TEST_F(CiConsumeFetchTest, FetchesTheJobsCommitAndNeverShowsTheToken) {
  Enqueue(commit_);
  ASSERT_EQ(Run(dir_ + "/token"), 0) << ReadFileOrEmpty(dir_ + "/stderr");
  EXPECT_EQ(ReadFileOrEmpty(dir_ + "/stdout"), dir_ + "/work/job.json\n");
  EXPECT_EQ(ReadFileOrEmpty(dir_ + "/work/src/src/lib.rs"), "// app\n");
  EXPECT_EQ(Status()["status"], "running");
  const std::string log = LogLines();
  EXPECT_THAT(log, HasSubstr("checked out " + commit_));
  for (const std::string& output :
       {ReadFileOrEmpty(dir_ + "/stdout"), ReadFileOrEmpty(dir_ + "/stderr"),
        ReadFileOrEmpty(dir_ + "/work/job.json"), log}) {
    EXPECT_THAT(output, Not(HasSubstr(kToken)));
  }
}

TEST_F(CiConsumeFetchTest, UnknownCommitEndsTheJobAsError) {
  Enqueue(std::string(40, 'd'));
  EXPECT_EQ(Run(dir_ + "/token"), 4) << ReadFileOrEmpty(dir_ + "/stderr");
  auto status = Status();
  EXPECT_EQ(status["status"], "error");
  EXPECT_THAT(status["reason"], HasSubstr("not found"));
}

TEST_F(CiConsumeFetchTest, RejectedTokenEndsTheJobAsError) {
  std::ofstream(dir_ + "/wrong") << "not-the-token\n";
  Enqueue(commit_);
  EXPECT_EQ(Run(dir_ + "/wrong"), 4) << ReadFileOrEmpty(dir_ + "/stderr");
  auto status = Status();
  EXPECT_EQ(status["status"], "error");
  EXPECT_THAT(status["reason"], HasSubstr("credentials rejected"));
  EXPECT_THAT(ReadFileOrEmpty(dir_ + "/stderr"), Not(HasSubstr("not-the-token")));
}

TEST_F(CiConsumeFetchTest, GitServerDownRequeuesTheJobForPromptRedelivery) {
  Enqueue(commit_);
  ASSERT_OK(git_->Stop());
  EXPECT_EQ(Run(dir_ + "/token"), 1) << ReadFileOrEmpty(dir_ + "/stderr");
  EXPECT_EQ(Status()["status"], "queued");
  // Another agent gets it at once, well inside the 5 s lease.
  QueueOptions options;
  options.consumer = "agent-b";
  JobQueue queue(redis_options_, options);
  ASSERT_OK_AND_ASSIGN(ClaimedJob claim, queue.Claim(absl::ZeroDuration()));
  EXPECT_EQ(claim.attempt, 2);
}

TEST_F(CiConsumeFetchTest, StalledGitServerTimesOutAndRequeuesTheJob) {
  // A server that accepts connections (the kernel completes them from the
  // listen backlog) and never answers.
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  ASSERT_GE(fd, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof(addr);
  ASSERT_EQ(::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
  ASSERT_EQ(::listen(fd, 16), 0);
  ASSERT_EQ(::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len), 0);
  Enqueue(commit_, absl::StrCat("http://127.0.0.1:", ntohs(addr.sin_port),
                                "/app.git"));
  const absl::Time start = absl::Now();
  EXPECT_EQ(Run(dir_ + "/token", {"--fetch-timeout=2"}), 1)
      << ReadFileOrEmpty(dir_ + "/stderr");
  EXPECT_LT(absl::Now() - start, absl::Seconds(15));
  ::close(fd);
  auto status = Status();
  EXPECT_EQ(status["status"], "queued");
  EXPECT_THAT(status["reason"], HasSubstr("fetch timed out"));
  QueueOptions options;
  options.consumer = "agent-b";
  JobQueue queue(redis_options_, options);
  ASSERT_OK_AND_ASSIGN(ClaimedJob claim, queue.Claim(absl::ZeroDuration()));
  EXPECT_EQ(claim.attempt, 2);
}

}  // namespace
}  // namespace ciagent
