// The whole agent (packaging/entrypoint.sh: ci-consume, then ci-build) on
// the Redis connections production uses: TLS with client certificates, and
// Sentinel with a failover while the job runs. Both tools read the
// connection settings from the environment, as in a pod.
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "ciagent/job/job.h"
#include "ciagent/queue/job_queue.h"
#include "ciagent/queue/redis_client.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "testing/agent_pod.h"
#include "testing/cargo_fixture.h"
#include "testing/git_repo.h"
#include "testing/git_server.h"
#include "testing/redis_sentinel.h"
#include "testing/redis_server.h"
#include "testing/status_matchers.h"
#include "testing/subprocess.h"
#include "testing/test_certs.h"

namespace ciagent {
namespace {

using ::ciagent::testing::IsOkAndHolds;
using ::testing::Contains;
using ::testing::HasSubstr;

constexpr char kGitToken[] = "git-token-redis-e2e-41c2";
constexpr char kRedisPassword[] = "redis-password-e2e-8d1f";
constexpr char kSentinelPassword[] = "sentinel-password-e2e-77aa";

class RedisConnectionsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_OK_AND_ASSIGN(dir_, testing::MakeTempDir("redis-e2e"));
  }
  void TearDown() override {
    if (!dir_.empty()) testing::RemoveTree(dir_);
  }

  // The fixture crate `passing` on main of acme/passing; its job.
  Job Publish(testing::GitServer& git) {
    absl::StatusOr<std::string> bare = git.CreateBareRepo("acme/passing");
    EXPECT_OK(bare.status());
    absl::StatusOr<std::map<std::string, std::string>> files =
        testing::FixtureFiles("passing");
    EXPECT_OK(files.status());
    absl::StatusOr<std::string> commit = testing::CommitFiles(
        bare.value_or(""), "main",
        files.value_or(std::map<std::string, std::string>{}), "import");
    EXPECT_OK(commit.status());
    return Job{.job_id = "redis-e2e-passing",
               .repo = git.RepoUrl("acme/passing"),
               .branch = "main",
               .commit = commit.value_or(""),
               .timeout = absl::Minutes(5)};
  }

  std::unique_ptr<testing::Subprocess> StartAgent(
      const std::string& redis_url, const std::string& path,
      std::map<std::string, std::string> env) {
    env.insert({{"GIT_USERNAME", "ci"},
                {"GIT_TOKEN", kGitToken},
                {"CI_IMAGE_BUILDER", "none"}});
    absl::StatusOr<std::unique_ptr<testing::Subprocess>> agent =
        testing::StartAgentPod({.name = "agent-a",
                                .dir = dir_,
                                .redis_url = redis_url,
                                .path = path,
                                .env = std::move(env)});
    EXPECT_OK(agent.status());
    return agent.ok() ? *std::move(agent) : nullptr;
  }

  // The job's end as the API service reads it: status, steps in the log
  // stream, nothing pending.
  void ExpectSucceeded(const RedisOptions& redis, const Job& job) {
    QueueOptions queue;
    RedisClient client(redis);
    absl::StatusOr<RedisReply> status =
        client.Command({"HGET", queue.StatusKey(job.job_id), "status"});
    ASSERT_OK(status.status());
    EXPECT_EQ(status->str, "success");
    absl::StatusOr<RedisReply> log =
        client.Command({"XRANGE", queue.LogKey(job.job_id), "-", "+"});
    ASSERT_OK(log.status());
    std::vector<std::string> steps;
    for (const RedisReply& entry : log->elements) {
      const auto& kv = entry.elements[1].elements;
      for (size_t i = 0; i + 1 < kv.size(); i += 2) {
        if (kv[i].str == "step") steps.push_back(kv[i + 1].str);
      }
    }
    EXPECT_THAT(steps, Contains("fetch"));
    EXPECT_THAT(steps, Contains("test")) << AgentLog();
    absl::StatusOr<RedisReply> pending =
        client.Command({"XPENDING", queue.stream, queue.group});
    ASSERT_OK(pending.status());
    EXPECT_EQ(pending->elements[0].integer, 0);
  }

  std::string AgentLog() const {
    return testing::ReadFileOrEmpty(dir_ + "/agent-a.log");
  }

  std::string dir_;
};

TEST_F(RedisConnectionsTest, AgentRunsAJobOverMutualTls) {
  CIAGENT_REQUIRE_CARGO(path);
  ASSERT_OK_AND_ASSIGN(testing::ServerCertificates certs,
                       testing::MakeServerCertificates(dir_ + "/pki"));
  ASSERT_OK_AND_ASSIGN(testing::ClientCertificate agent_certificate,
                       testing::MakeClientCertificate(dir_ + "/pki", "agent"));
  testing::RedisServerOptions server;
  server.tls = certs;
  server.require_client_certificate = true;
  server.password = kRedisPassword;
  CIAGENT_START_REDIS_WITH(redis, server);
  CIAGENT_START_GIT_SERVER(git, {.username = "ci", .password = kGitToken});
  const Job job = Publish(*git);

  ASSERT_OK_AND_ASSIGN(RedisOptions redis_options,
                       RedisOptionsFromUrl(redis->url()));
  redis_options.password = kRedisPassword;
  redis_options.tls_files = {.ca_file = certs.ca_file,
                             .cert_file = agent_certificate.cert_file,
                             .key_file = agent_certificate.key_file};
  JobQueue producer(redis_options, {.consumer = "producer", .create_group = true});
  ASSERT_OK(producer.Enqueue(job).status());

  auto agent = StartAgent(redis->url(), path,
                          {{"REDIS_PASSWORD", kRedisPassword},
                           {"REDIS_CA_FILE", certs.ca_file},
                           {"REDIS_TLS_CERT_FILE", agent_certificate.cert_file},
                           {"REDIS_TLS_KEY_FILE", agent_certificate.key_file}});
  ASSERT_NE(agent, nullptr);
  EXPECT_THAT(agent->Wait(absl::Minutes(5)), IsOkAndHolds(0)) << AgentLog();
  ExpectSucceeded(redis_options, job);
  EXPECT_THAT(AgentLog(), HasSubstr(absl::StrCat("rediss://127.0.0.1:",
                                                 redis->port())));
}

TEST_F(RedisConnectionsTest, AgentFollowsASentinelFailoverWhileTheJobRuns) {
  CIAGENT_REQUIRE_CARGO(path);
  testing::SentinelGroupOptions group_options;
  group_options.password = kRedisPassword;
  group_options.sentinel_password = kSentinelPassword;
  CIAGENT_START_SENTINEL_GROUP(group, group_options);
  CIAGENT_START_GIT_SERVER(git, {.username = "ci", .password = kGitToken});
  const Job job = Publish(*git);

  const RedisOptions redis_options = group->options();
  JobQueue producer(redis_options, {.consumer = "producer", .create_group = true});
  ASSERT_OK(producer.Enqueue(job).status());
  auto agent = StartAgent(group->url(), path,
                          {{"REDIS_PASSWORD", kRedisPassword},
                           {"REDIS_SENTINEL_PASSWORD", kSentinelPassword},
                           {"CI_REDIS_MIN_REPLICAS", "1"}});
  ASSERT_NE(agent, nullptr);

  // Fail over as soon as the job runs.
  QueueOptions queue;
  RedisClient client(redis_options);
  std::string status;
  const absl::Time deadline = absl::Now() + absl::Minutes(2);
  while (status != "running" && absl::Now() < deadline) {
    absl::StatusOr<RedisReply> reply =
        client.Command({"HGET", queue.StatusKey(job.job_id), "status"});
    status = reply.ok() ? reply->str : "";
    absl::SleepFor(absl::Milliseconds(50));
  }
  ASSERT_EQ(status, "running") << AgentLog();
  ASSERT_OK_AND_ASSIGN(int old_master, group->MasterPort());
  ASSERT_OK(group->Failover());
  ASSERT_OK(group->WaitUntilReplica(old_master, absl::Seconds(30)));

  EXPECT_THAT(agent->Wait(absl::Minutes(5)), IsOkAndHolds(0)) << AgentLog();
  ExpectSucceeded(redis_options, job);
  // One agent process, one finalize, no secret in its log.
  const std::string log = AgentLog();
  size_t finalized = 0;
  for (size_t at = log.find("\"job finalized\""); at != std::string::npos;
       at = log.find("\"job finalized\"", at + 1)) {
    ++finalized;
  }
  EXPECT_EQ(finalized, 1u) << log;
  EXPECT_THAT(log, ::testing::Not(HasSubstr(kSentinelPassword)));
  EXPECT_THAT(log, ::testing::Not(HasSubstr(kRedisPassword)));
}

}  // namespace
}  // namespace ciagent
