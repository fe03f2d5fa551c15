// The whole chain, as in production but on one machine: a producer
// enqueues two jobs on a real Redis; two agents, each the container
// entrypoint (packaging/entrypoint.sh → ci-consume → ci-build), take one job
// each, fetch over HTTP with a token from a real git server, run real cargo,
// build the passing crate's image with buildah and push it to a real
// registry with Basic auth. And the poison-pill case: agents under a pod's
// address-space limit get past a 300 MB entry and an entry without `job`.
#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "ciagent/job/job.h"
#include "ciagent/queue/job_queue.h"
#include "ciagent/queue/redis_client.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "testing/agent_pod.h"
#include "testing/buildah.h"
#include "testing/cargo_fixture.h"
#include "testing/git_repo.h"
#include "testing/git_server.h"
#include "testing/oci_layout.h"
#include "testing/redis_server.h"
#include "testing/registry_server.h"
#include "testing/status_matchers.h"
#include "testing/subprocess.h"

namespace ciagent {
namespace {

using ::ciagent::testing::InspectDigest;
using ::ciagent::testing::IsOkAndHolds;
using ::ciagent::testing::RegistryServerOptions;
using ::ciagent::testing::Subprocess;
using ::testing::Contains;
using ::testing::HasSubstr;

constexpr char kGitToken[] = "git-token-e2e-5f4e3d";
constexpr char kRegistryToken[] = "registry-token-e2e-9a8b7c";

class AgentChainTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_OK_AND_ASSIGN(dir_, testing::MakeTempDir("agent-chain"));
    ASSERT_OK_AND_ASSIGN(entrypoint_,
                         testing::PathFromEnv("CIAGENT_ENTRYPOINT"));
  }
  void TearDown() override {
    if (!dir_.empty()) testing::RemoveTree(dir_);
  }

  // A bare repository on `git` holding fixture `name` on main; its job.
  Job Publish(testing::GitServer& git, const std::string& name) {
    absl::StatusOr<std::string> bare = git.CreateBareRepo("acme/" + name);
    EXPECT_OK(bare.status());
    absl::StatusOr<std::map<std::string, std::string>> files =
        testing::FixtureFiles(name);
    EXPECT_OK(files.status());
    absl::StatusOr<std::string> commit = testing::CommitFiles(
        bare.value_or(""), "main", files.value_or(std::map<std::string, std::string>{}),
        "import " + name);
    EXPECT_OK(commit.status());
    std::string repo_name = name;
    std::replace(repo_name.begin(), repo_name.end(), '_', '-');
    return Job{.job_id = "e2e-" + repo_name,
               .repo = git.RepoUrl("acme/" + name),
               .branch = "main",
               .commit = commit.value_or(""),
               .timeout = absl::Minutes(5)};
  }

  // One agent pod that builds images and pushes them to `registry`.
  std::unique_ptr<Subprocess> StartAgent(
      const std::string& name, const std::string& redis_url,
      const testing::RegistryServer& registry, const std::string& path) {
    absl::StatusOr<std::unique_ptr<Subprocess>> agent =
        testing::StartAgentPod(Pod(name, redis_url, path,
                                   {{"CI_IMAGE_BUILDER", "buildah"},
                                    {"REGISTRY_URL", registry.url()},
                                    {"REGISTRY_USERNAME", "ci"},
                                    {"REGISTRY_TOKEN", kRegistryToken}}));
    EXPECT_OK(agent.status());
    return agent.ok() ? *std::move(agent) : nullptr;
  }

  // One agent pod's settings: its own work dir, the shared cache, the git
  // token, and `env`.
  testing::AgentPodOptions Pod(const std::string& name,
                               const std::string& redis_url,
                               const std::string& path,
                               std::map<std::string, std::string> env = {}) {
    env.insert({{"GIT_USERNAME", "ci"}, {"GIT_TOKEN", kGitToken}});
    return {.name = name,
            .dir = dir_,
            .redis_url = redis_url,
            .path = path,
            .env = std::move(env)};
  }

  std::string dir_;
  std::string entrypoint_;
};

TEST_F(AgentChainTest, TwoAgentsRunTwoJobsToTheirFinalStatusesAndPushTheImage) {
  CIAGENT_REQUIRE_CARGO(path);
  CIAGENT_REQUIRE_BUILDAH(buildah_path);
  CIAGENT_START_REDIS(redis);
  CIAGENT_START_GIT_SERVER(git, {.username = "ci", .password = kGitToken});
  CIAGENT_START_REGISTRY(registry, {.auth = RegistryServerOptions::Auth::kBasic,
                                    .password = kRegistryToken});

  // The producer: two jobs, as the API service enqueues them.
  const Job passing = Publish(*git, "with_dockerfile");
  const Job failing = Publish(*git, "failing_test");
  ASSERT_OK_AND_ASSIGN(RedisOptions redis_options,
                       RedisOptionsFromUrl(redis->url()));
  QueueOptions queue_options{.consumer = "producer", .create_group = true};
  JobQueue producer(redis_options, queue_options);
  ASSERT_OK(producer.Enqueue(passing).status());
  ASSERT_OK(producer.Enqueue(failing).status());

  auto agent_a = StartAgent("agent-a", redis->url(), *registry, path);
  auto agent_b = StartAgent("agent-b", redis->url(), *registry, path);
  ASSERT_NE(agent_a, nullptr);
  ASSERT_NE(agent_b, nullptr);
  // Each agent reached a final state for its job: exit 0 (CI_EXIT_CODE=agent).
  EXPECT_THAT(agent_a->Wait(absl::Minutes(5)), IsOkAndHolds(0))
      << testing::ReadFileOrEmpty(dir_ + "/agent-a.log");
  EXPECT_THAT(agent_b->Wait(absl::Minutes(5)), IsOkAndHolds(0))
      << testing::ReadFileOrEmpty(dir_ + "/agent-b.log");

  RedisClient client(redis_options);
  auto status = [&](const Job& job, const std::string& field) {
    absl::StatusOr<RedisReply> reply =
        client.Command({"HGET", queue_options.StatusKey(job.job_id), field});
    return reply.ok() ? reply->str : std::string();
  };
  // Both agents worked, one job each.
  EXPECT_NE(status(passing, "consumer"), status(failing, "consumer"));

  EXPECT_EQ(status(passing, "status"), "success") << status(passing, "reason");
  EXPECT_EQ(status(passing, "tests_passed"), "1");
  EXPECT_EQ(status(passing, "tests_failed"), "0");
  const std::string image = status(passing, "image");
  EXPECT_EQ(image, absl::StrCat(registry->host(),
                                "/acme/with_dockerfile:", passing.commit));
  EXPECT_THAT(
      InspectDigest(image, {.username = "ci", .password = kRegistryToken}),
      IsOkAndHolds(status(passing, "image_digest")));

  EXPECT_EQ(status(failing, "status"), "failed");
  EXPECT_THAT(status(failing, "reason"), HasSubstr("1 test failed"));
  EXPECT_EQ(status(failing, "tests_failed"), "1");
  EXPECT_EQ(status(failing, "tests_passed"),
            absl::StrCat(testing::kFailingPassed));
  EXPECT_THAT(status(failing, "failed_tests"),
              HasSubstr(testing::kFailingName));
  EXPECT_EQ(status(failing, "image"), "");

  // The log streams tell the story, fetch to finish, tokens masked.
  for (const Job& job : {passing, failing}) {
    absl::StatusOr<RedisReply> log =
        client.Command({"XRANGE", queue_options.LogKey(job.job_id), "-", "+"});
    ASSERT_OK(log.status());
    std::vector<std::string> steps;
    std::string all;
    for (const RedisReply& entry : log->elements) {
      const auto& kv = entry.elements[1].elements;
      for (size_t i = 0; i + 1 < kv.size(); i += 2) {
        if (kv[i].str == "step") steps.push_back(kv[i + 1].str);
        absl::StrAppend(&all, kv[i + 1].str, "\n");
      }
    }
    EXPECT_THAT(steps, Contains("fetch")) << job.job_id;
    EXPECT_THAT(steps, Contains("test")) << job.job_id;
    EXPECT_THAT(all, ::testing::Not(HasSubstr(kGitToken)));
    EXPECT_THAT(all, ::testing::Not(HasSubstr(kRegistryToken)));
  }
  EXPECT_THAT(testing::ReadFileOrEmpty(dir_ + "/agent-a.log") +
                  testing::ReadFileOrEmpty(dir_ + "/agent-b.log"),
              ::testing::AllOf(::testing::Not(HasSubstr(kGitToken)),
                               ::testing::Not(HasSubstr(kRegistryToken))));

  // Nothing left pending: both entries were acked.
  absl::StatusOr<RedisReply> pending =
      client.Command({"XPENDING", queue_options.stream, queue_options.group});
  ASSERT_OK(pending.status());
  EXPECT_EQ(pending->elements[0].integer, 0);
}


// The poison-pill scenario: a stream holding a 300 MB entry, an entry without
// `job`, then 3 good jobs; agents run as the entrypoint runs them, each
// under a 1.5 GiB address-space limit, lease 2 s, max deliveries 3. The bad
// entries are dead-lettered on their first claim, inside Redis; every good
// job succeeds and no agent fails. Peak RSS of each ci-consume is printed
// (docs/reliability.md quotes it).
TEST_F(AgentChainTest, AgentsUnderAMemoryLimitGetPastPoisonPillsToTheGoodJobs) {
  CIAGENT_REQUIRE_CARGO(path);
  CIAGENT_START_REDIS(redis);
  CIAGENT_START_GIT_SERVER(git, {.username = "ci", .password = kGitToken});
  Job good = Publish(*git, "passing");
  good.steps = {"check"};
  ASSERT_OK_AND_ASSIGN(RedisOptions redis_options,
                       RedisOptionsFromUrl(redis->url()));
  QueueOptions queue_options{.consumer = "producer", .create_group = true};
  JobQueue producer(redis_options, queue_options);
  ASSERT_OK(producer.EnsureGroup());
  RedisClient client(redis_options);
  constexpr size_t kPoisonBytes = 300 * 1000 * 1000;
  size_t entry_bytes = 0;
  {
    std::string doc = R"({"job_id":"poison","pad":")";
    doc.append(kPoisonBytes, 'x');
    doc.append("\"}");
    entry_bytes = doc.size() + 3;  // + "job"
    ASSERT_OK(client.Command({"XADD", "ci-jobs", "*", "job", doc}).status());
  }
  ASSERT_OK(client.Command({"XADD", "ci-jobs", "*", "payload", "no job"})
                .status());
  std::vector<std::string> good_ids;
  for (int i = 1; i <= 3; ++i) {
    Job job = good;
    job.job_id = absl::StrCat("good-", i);
    good_ids.push_back(job.job_id);
    ASSERT_OK(producer.Enqueue(job).status());
  }

  // ci-consume through /usr/bin/time, for its peak RSS.
  const std::string rss_file = dir_ + "/consume-rss";
  const std::string consume = dir_ + "/ci-consume";
  {
    std::ofstream wrapper(consume);
    wrapper << "#!/bin/sh\nexec /usr/bin/time -a -o '" << rss_file
            << "' -f %M '"
            << testing::PathFromEnv("CIAGENT_CI_CONSUME").value_or("")
            << "' \"$@\"\n";
  }
  std::filesystem::permissions(consume, std::filesystem::perms::owner_all);
  std::vector<std::unique_ptr<Subprocess>> agents;
  const absl::Time start = absl::Now();
  for (int i = 1; i <= 3; ++i) {
    const std::string name = absl::StrCat("agent-", i);
    const testing::SubprocessOptions options =
        testing::AgentPodProcessOptions(Pod(name, redis->url(), path,
                                            {{"CI_CONSUME_BIN", consume},
                                             {"CI_LEASE", "2"},
                                             {"CI_MAX_DELIVERIES", "3"},
                                             {"CI_WAIT", "5"},
                                             {"CI_IMAGE_BUILDER", "none"}}));
    absl::StatusOr<std::unique_ptr<Subprocess>> agent = Subprocess::Start(
        {"/bin/sh", "-c", "ulimit -v 1572864 && exec \"$0\"", entrypoint_},
        options);
    ASSERT_OK(agent.status());
    agents.push_back(*std::move(agent));
  }
  for (int i = 1; i <= 3; ++i) {
    EXPECT_THAT(agents[i - 1]->Wait(absl::Minutes(3)), IsOkAndHolds(0))
        << testing::ReadFileOrEmpty(absl::StrCat(dir_, "/agent-", i, ".log"));
  }
  const absl::Duration took = absl::Now() - start;

  for (const std::string& id : good_ids) {
    absl::StatusOr<RedisReply> reply = client.Command(
        {"HGET", queue_options.StatusKey(id), "status"});
    ASSERT_OK(reply.status());
    EXPECT_EQ(reply->str, "success") << id;
  }
  absl::StatusOr<RedisReply> dead =
      client.Command({"XRANGE", "ci-jobs:dead", "-", "+"});
  ASSERT_OK(dead.status());
  std::vector<std::map<std::string, std::string>> letters;
  for (const RedisReply& entry : dead->elements) {
    std::map<std::string, std::string> fields;
    const auto& kv = entry.elements[1].elements;
    for (size_t i = 0; i + 1 < kv.size(); i += 2) {
      fields[kv[i].str] = kv[i + 1].str.substr(0, 2048);
    }
    letters.push_back(std::move(fields));
  }
  ASSERT_EQ(letters.size(), 2u);
  EXPECT_EQ(letters[0]["dead_reason"],
            absl::StrCat("oversized entry: ", entry_bytes,
                         " bytes, more than max_entry_bytes=1048576"));
  EXPECT_EQ(letters[1]["dead_reason"], "malformed entry: no `job` field");
  for (auto& letter : letters) EXPECT_EQ(letter["dead_deliveries"], "1");
  absl::StatusOr<RedisReply> pending =
      client.Command({"XPENDING", "ci-jobs", "ci-workers"});
  ASSERT_OK(pending.status());
  EXPECT_EQ(pending->elements[0].integer, 0);

  int64_t peak_kib = 0;
  for (absl::string_view line :
       absl::StrSplit(testing::ReadFileOrEmpty(rss_file), '\n',
                      absl::SkipEmpty())) {
    int64_t kib = 0;
    if (absl::SimpleAtoi(line, &kib)) peak_kib = std::max(peak_kib, kib);
  }
  EXPECT_GT(peak_kib, 0);
  // Far below the entry: the agent never held it.
  EXPECT_LT(peak_kib, 64 * 1024);
  std::printf("poison pill %zu bytes: 3 agents in %s, peak RSS of ci-consume "
              "%lld KiB\n", kPoisonBytes, absl::FormatDuration(took).c_str(),
              static_cast<long long>(peak_kib));
}

}  // namespace
}  // namespace ciagent
