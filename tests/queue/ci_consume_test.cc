// Runs the ci-consume binary against a real redis-server and checks its
// documented contract: exit codes, the job.json it writes, the status hash,
// and that no secret leaks into its output.
#include <signal.h>
#include <simdjson.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "ciagent/job/job.h"
#include "ciagent/queue/job_queue.h"
#include "ciagent/queue/redis_client.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "testing/queue_fixtures.h"
#include "testing/redis_server.h"
#include "testing/status_matchers.h"
#include "testing/subprocess.h"

namespace ciagent {
namespace {

using ::ciagent::testing::MakeTempDir;
using ::ciagent::testing::PathFromEnv;
using ::ciagent::testing::ReadFileOrEmpty;
using ::ciagent::testing::RemoveTree;
using ::ciagent::testing::Subprocess;
using ::ciagent::testing::SubprocessOptions;
using ::testing::HasSubstr;
using ::testing::Not;

#if defined(__SANITIZE_ADDRESS__)
#define CIAGENT_TEST_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define CIAGENT_TEST_ASAN 1
#endif
#endif
#ifdef CIAGENT_TEST_ASAN
constexpr bool kAddressSanitizer = true;
#else
constexpr bool kAddressSanitizer = false;
#endif

// Exit codes as documented in `ci-consume --help`.
constexpr int kJobReady = 0;
constexpr int kFailure = 1;
constexpr int kUsageError = 2;
constexpr int kNothingToDo = 3;

constexpr char kPassword[] = "s3cret-pa55word";

// What one finished run of the tool left behind.
struct ToolRun {
  int exit_code = -1;
  absl::Duration elapsed;
  std::string out;
  std::string err;
};

class CiConsumeTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_OK_AND_ASSIGN(tool_, PathFromEnv("CIAGENT_CI_CONSUME"));
    ASSERT_OK_AND_ASSIGN(dir_, MakeTempDir("ciagent-ci-consume-"));
    workdir_ = dir_ + "/work";
  }
  void TearDown() override { RemoveTree(dir_); }

  // The tool sees none of the settings this process may have inherited.
  SubprocessOptions ToolOptions(std::map<std::string, std::string> env) const {
    SubprocessOptions options;
    options.env = std::move(env);
    options.unset_env = {"REDIS_URL",  "REDIS_PASSWORD", "REDIS_PASSWORD_FILE",
                         "POD_NAME",   "CI_WORKDIR",     "CIAGENT_LOG_LEVEL"};
    options.stdout_path = dir_ + "/stdout";
    options.stderr_path = dir_ + "/stderr";
    return options;
  }

  std::vector<std::string> Argv(const std::string& redis_url,
                                std::vector<std::string> flags) const {
    // The queue side of the tool; its fetch is covered against a real git
    // server in tests/git/ci_consume_fetch_test.cc.
    std::vector<std::string> argv = {tool_, "--redis=" + redis_url,
                                     "--workdir=" + workdir_,
                                     "--consumer=agent-a", "--no-fetch"};
    argv.insert(argv.end(), flags.begin(), flags.end());
    if (address_space_kib_ > 0) {
      // As a pod's memory limit would, through the shell's `ulimit -v`.
      argv.insert(argv.begin(),
                  {"/bin/sh", "-c",
                   absl::StrCat("ulimit -v ", address_space_kib_,
                                " && exec \"$@\""),
                   "sh"});
    }
    return argv;
  }

  // Runs the tool to completion (at most 60 s).
  ToolRun Run(const std::string& redis_url, std::vector<std::string> flags,
              std::map<std::string, std::string> env = {}) const {
    ToolRun run;
    const absl::Time start = absl::Now();
    absl::StatusOr<std::unique_ptr<Subprocess>> process = Subprocess::Start(
        Argv(redis_url, std::move(flags)), ToolOptions(std::move(env)));
    EXPECT_OK(process);
    if (!process.ok()) return run;
    absl::StatusOr<int> code = (*process)->Wait(absl::Seconds(60));
    run.elapsed = absl::Now() - start;
    EXPECT_OK(code);
    run.exit_code = code.value_or(-1);
    run.out = ReadFileOrEmpty(dir_ + "/stdout");
    run.err = ReadFileOrEmpty(dir_ + "/stderr");
    return run;
  }

  std::string JobFile() const { return workdir_ + "/job.json"; }

  std::string tool_;
  std::string dir_;
  std::string workdir_;
  // When set, the tool runs under `ulimit -v` of this many KiB.
  int64_t address_space_kib_ = 0;
};

RedisOptions OptionsFor(const testing::RedisServer& server,
                        const std::string& password = "") {
  absl::StatusOr<RedisOptions> options = RedisOptionsFromUrl(server.url());
  EXPECT_OK(options);
  RedisOptions result = options.value_or(RedisOptions{});
  result.password = password;
  return result;
}

QueueOptions ProducerOptions() {
  QueueOptions options;
  options.consumer = "test-producer";
  return options;
}

// XPENDING summary count of the default group.
int64_t PendingCount(RedisClient& redis) {
  absl::StatusOr<RedisReply> reply =
      redis.Command({"XPENDING", "ci-jobs", "ci-workers"});
  EXPECT_OK(reply);
  if (!reply.ok() || !reply->is_array() || reply->elements.empty()) return -1;
  return reply->elements[0].integer;
}

std::string HashField(RedisClient& redis, const std::string& key,
                      const std::string& field) {
  absl::StatusOr<RedisReply> reply = redis.Command({"HGET", key, field});
  EXPECT_OK(reply);
  return reply.ok() ? reply->str : "";
}

// Fields of the dead-letter entries, oldest first.
std::vector<std::map<std::string, std::string>> DeadLetters(RedisClient& redis) {
  std::vector<std::map<std::string, std::string>> out;
  absl::StatusOr<RedisReply> dead =
      redis.Command({"XRANGE", "ci-jobs:dead", "-", "+"});
  EXPECT_OK(dead);
  if (!dead.ok()) return out;
  for (const RedisReply& entry : dead->elements) {
    std::map<std::string, std::string> fields;
    const RedisReply& list = entry.elements[1];
    for (size_t i = 0; i + 1 < list.elements.size(); i += 2) {
      fields[list.elements[i].str] = list.elements[i + 1].str;
    }
    out.push_back(std::move(fields));
  }
  return out;
}

TEST_F(CiConsumeTest, ExitsNothingToDoAfterWaitWhenNoJob) {
  CIAGENT_START_REDIS(server);
  JobQueue queue(OptionsFor(*server), ProducerOptions());
  ASSERT_OK(queue.EnsureGroup());

  const ToolRun run = Run(server->url(), {"--wait=1"});

  EXPECT_EQ(run.exit_code, kNothingToDo) << run.err;
  EXPECT_GE(run.elapsed, absl::Seconds(1));
  EXPECT_LT(run.elapsed, absl::Seconds(5));
  EXPECT_EQ(run.out, "");
  EXPECT_FALSE(std::filesystem::exists(JobFile()));
}

TEST_F(CiConsumeTest, ClaimsJobWritesJobFileAndMarksItRunning) {
  CIAGENT_START_REDIS(server);
  JobQueue queue(OptionsFor(*server), ProducerOptions());
  ASSERT_OK_AND_ASSIGN(const std::string stream_id, queue.Enqueue(testing::ExampleJob("j1")));

  const ToolRun run = Run(server->url(), {"--wait=5"});

  ASSERT_EQ(run.exit_code, kJobReady) << run.err;
  EXPECT_EQ(run.out, JobFile() + "\n");
  const std::string json = ReadFileOrEmpty(JobFile());
  simdjson::dom::parser parser;
  simdjson::dom::element doc;
  ASSERT_EQ(parser.parse(json).get(doc), simdjson::SUCCESS) << json;
  std::string_view text;
  ASSERT_EQ(doc["job"]["job_id"].get(text), simdjson::SUCCESS) << json;
  EXPECT_EQ(text, "j1");
  ASSERT_EQ(doc["job"]["commit"].get(text), simdjson::SUCCESS) << json;
  EXPECT_EQ(text, std::string(40, 'a'));
  ASSERT_EQ(doc["stream_id"].get(text), simdjson::SUCCESS) << json;
  EXPECT_EQ(text, stream_id);
  int64_t attempt = 0;
  ASSERT_EQ(doc["attempt"].get(attempt), simdjson::SUCCESS) << json;
  EXPECT_EQ(attempt, 1);
  ASSERT_EQ(doc["consumer"].get(text), simdjson::SUCCESS) << json;
  EXPECT_EQ(text, "agent-a");
  ASSERT_EQ(doc["redis_url"].get(text), simdjson::SUCCESS) << json;
  const std::string redis_url(text);
  EXPECT_TRUE(absl::StartsWith(redis_url, server->url())) << redis_url;
  EXPECT_FALSE(absl::StrContains(redis_url, "@")) << redis_url;

  RedisClient& redis = queue.redis();
  const std::string key = "ci:job:{j1}";
  EXPECT_EQ(HashField(redis, key, "status"), "running");
  EXPECT_EQ(HashField(redis, key, "consumer"), "agent-a");
  EXPECT_EQ(HashField(redis, key, "attempt"), "1");
  EXPECT_EQ(HashField(redis, key, "stream_id"), stream_id);
}

TEST_F(CiConsumeTest, RejectsNonRedisUrlAsUsageError) {
  const ToolRun run = Run("http://x", {"--wait=1"});

  EXPECT_EQ(run.exit_code, kUsageError) << run.err;
  EXPECT_THAT(run.err, HasSubstr("redis://"));
  EXPECT_EQ(run.out, "");
}

TEST_F(CiConsumeTest, RejectsNegativeWaitAsUsageError) {
  CIAGENT_START_REDIS(server);

  const ToolRun run = Run(server->url(), {"--wait=-1"});

  EXPECT_EQ(run.exit_code, kUsageError) << run.err;
  EXPECT_THAT(run.err, HasSubstr("--wait"));
  EXPECT_EQ(run.out, "");
}

TEST_F(CiConsumeTest, RejectsUnknownFlagAsUsageError) {
  CIAGENT_START_REDIS(server);

  const ToolRun run = Run(server->url(), {"--wait=1", "--no-such-flag"});

  EXPECT_EQ(run.exit_code, kUsageError) << run.err;
  EXPECT_EQ(run.out, "");
}

TEST_F(CiConsumeTest, UnreadableCaFileIsUsageErrorAndLeavesTheJobQueued) {
  CIAGENT_START_REDIS(server);
  JobQueue queue(OptionsFor(*server), ProducerOptions());
  ASSERT_OK(queue.Enqueue(testing::ExampleJob("j-ca")).status());

  const ToolRun run = Run(server->url(), {"--wait=1"},
                          {{"CI_CA_FILE", dir_ + "/no-such-ca.pem"}});

  EXPECT_EQ(run.exit_code, kUsageError) << run.err;
  EXPECT_THAT(run.err, HasSubstr("no-such-ca.pem"));
  // Not this job's fault: it waits, unclaimed, for a well-configured agent.
  RedisClient client(OptionsFor(*server));
  ASSERT_OK_AND_ASSIGN(RedisReply status,
                       client.Command({"HGET", QueueOptions().StatusKey("j-ca"),
                                       "status"}));
  EXPECT_EQ(status.str, "queued");
}

TEST_F(CiConsumeTest, MissingGroupIsUsageErrorNamingTheGroup) {
  CIAGENT_START_REDIS(server);
  JobQueue queue(OptionsFor(*server), ProducerOptions());
  ASSERT_OK(queue.EnsureGroup());  // the stream exists, with another group

  const ToolRun run = Run(server->url(), {"--wait=1", "--group=nogroup"});

  EXPECT_EQ(run.exit_code, kUsageError) << run.err;
  EXPECT_THAT(run.err, HasSubstr("nogroup"));
  EXPECT_EQ(run.out, "");
}

TEST_F(CiConsumeTest, CreatesMissingGroupWhenAskedAndFindsNoJob) {
  CIAGENT_START_REDIS(server);
  JobQueue queue(OptionsFor(*server), ProducerOptions());
  ASSERT_OK(queue.EnsureGroup());

  // abseil flag names keep their underscores; --help spells it
  // --create-group, which is rejected as an unknown flag.
  const ToolRun run = Run(server->url(),
                          {"--wait=1", "--group=nogroup", "--create-group"});

  EXPECT_EQ(run.exit_code, kNothingToDo) << run.err;
  absl::StatusOr<RedisReply> groups =
      queue.redis().Command({"XINFO", "GROUPS", "ci-jobs"});
  ASSERT_OK(groups);
  EXPECT_EQ(groups->elements.size(), 2u);
}

TEST_F(CiConsumeTest, SigtermWhileWaitingExitsPromptlyWithoutClaiming) {
  CIAGENT_START_REDIS(server);
  JobQueue queue(OptionsFor(*server), ProducerOptions());
  ASSERT_OK(queue.EnsureGroup());
  ASSERT_OK_AND_ASSIGN(
      std::unique_ptr<Subprocess> process,
      Subprocess::Start(Argv(server->url(), {"--wait=30"}), ToolOptions({})));

  const absl::Time give_up = absl::Now() + absl::Seconds(10);
  while (!absl::StrContains(ReadFileOrEmpty(dir_ + "/stderr"),
                            "waiting for a job")) {
    ASSERT_LT(absl::Now(), give_up) << "the tool never started waiting";
    ASSERT_TRUE(process->running()) << ReadFileOrEmpty(dir_ + "/stderr");
    absl::SleepFor(absl::Milliseconds(10));
  }
  absl::SleepFor(absl::Milliseconds(300));
  const absl::Time signalled_at = absl::Now();
  process->Signal(SIGTERM);
  absl::StatusOr<int> code = process->Wait(absl::Seconds(10));
  const absl::Duration exit_delay = absl::Now() - signalled_at;

  ASSERT_OK(code);
  EXPECT_EQ(*code, kNothingToDo) << ReadFileOrEmpty(dir_ + "/stderr");
  EXPECT_LT(exit_delay, absl::Seconds(1));
  EXPECT_EQ(ReadFileOrEmpty(dir_ + "/stdout"), "");

  // A job enqueued after the tool left is not delivered to it.
  ASSERT_OK(queue.Enqueue(testing::ExampleJob("j-after-stop")).status());
  EXPECT_EQ(PendingCount(queue.redis()), 0);
  EXPECT_EQ(HashField(queue.redis(), "ci:job:{j-after-stop}", "status"),
            "queued");
}

TEST_F(CiConsumeTest, UnreachableRedisFailsAfterWait) {
  ASSERT_OK_AND_ASSIGN(const int port, testing::PickFreePort());

  const ToolRun run =
      Run(absl::StrCat("redis://127.0.0.1:", port), {"--wait=1"});

  EXPECT_EQ(run.exit_code, kFailure) << run.err;
  EXPECT_GE(run.elapsed, absl::Seconds(1));
  EXPECT_LT(run.elapsed, absl::Seconds(10));
  EXPECT_EQ(run.out, "");
  EXPECT_FALSE(std::filesystem::exists(JobFile()));
}

TEST_F(CiConsumeTest, ReadsPasswordFromFileAndNeverPrintsIt) {
  CIAGENT_START_REDIS_WITH(server,
                           testing::RedisServerOptions{.password = kPassword});
  JobQueue queue(OptionsFor(*server, kPassword), ProducerOptions());
  ASSERT_OK(queue.Enqueue(testing::ExampleJob("j1")).status());
  const std::string password_file = dir_ + "/redis-password";
  {
    std::ofstream out(password_file);
    out << kPassword << "\n";
  }

  const ToolRun run = Run(server->url(), {"--wait=5"},
                          {{"REDIS_PASSWORD_FILE", password_file}});

  ASSERT_EQ(run.exit_code, kJobReady) << run.err;
  const std::string job_json = ReadFileOrEmpty(JobFile());
  EXPECT_THAT(job_json, HasSubstr("\"j1\""));
  EXPECT_THAT(job_json, Not(HasSubstr(kPassword)));
  EXPECT_THAT(run.out, Not(HasSubstr(kPassword)));
  EXPECT_THAT(run.err, Not(HasSubstr(kPassword)));
  EXPECT_EQ(HashField(queue.redis(), "ci:job:{j1}", "status"), "running");
}

TEST_F(CiConsumeTest, WrongPasswordIsUsageErrorAndNotPrinted) {
  CIAGENT_START_REDIS_WITH(server,
                           testing::RedisServerOptions{.password = kPassword});
  const std::string wrong = "wr0ng-pa55word-guess";

  const ToolRun run =
      Run(server->url(), {"--wait=1"}, {{"REDIS_PASSWORD", wrong}});

  EXPECT_EQ(run.exit_code, kUsageError) << run.err;
  EXPECT_THAT(run.err, Not(HasSubstr(wrong)));
  EXPECT_THAT(run.out, Not(HasSubstr(wrong)));
  EXPECT_FALSE(std::filesystem::exists(JobFile()));
}

TEST_F(CiConsumeTest, DeadLettersMalformedJobAndFindsNothingToDo) {
  CIAGENT_START_REDIS(server);
  JobQueue queue(OptionsFor(*server), ProducerOptions());
  ASSERT_OK(queue.EnsureGroup());
  const std::string malformed = R"({"job_id":"../../etc","repo":"x"})";
  ASSERT_OK(queue.redis().Command({"XADD", "ci-jobs", "*", "job", malformed}));

  const ToolRun run = Run(server->url(), {"--wait=1"});

  EXPECT_EQ(run.exit_code, kNothingToDo) << run.err;
  EXPECT_FALSE(std::filesystem::exists(JobFile()));
  auto dead = DeadLetters(queue.redis());
  ASSERT_EQ(dead.size(), 1u);
  auto& fields = dead[0];
  EXPECT_THAT(fields["dead_reason"], HasSubstr("job_id"));
  EXPECT_EQ(fields["job"], malformed);
  EXPECT_EQ(PendingCount(queue.redis()), 0);
}

// ci-build stopping on its own configuration error gives the claimed job
// back at once, rather than leaving it `running` until its lease lapses.
TEST_F(CiConsumeTest, CiBuildConfigurationErrorRequeuesTheJobItWasGiven) {
  CIAGENT_START_REDIS(server);
  JobQueue queue(OptionsFor(*server), ProducerOptions());
  ASSERT_OK(queue.Enqueue(testing::ExampleJob("j1")).status());
  ASSERT_EQ(Run(server->url(), {"--wait=5"}).exit_code, kJobReady);
  ASSERT_OK_AND_ASSIGN(const std::string ci_build, PathFromEnv("CIAGENT_CI_BUILD"));

  ASSERT_OK_AND_ASSIGN(
      auto build, Subprocess::Start({ci_build, "--job=" + JobFile(),
                                     "--max-timeout=-1"},
                                    ToolOptions({})));
  ASSERT_OK_AND_ASSIGN(const int build_exit, build->Wait(absl::Seconds(60)));

  EXPECT_EQ(build_exit, kUsageError) << ReadFileOrEmpty(dir_ + "/stderr");
  RedisClient& redis = queue.redis();
  EXPECT_EQ(HashField(redis, "ci:job:{j1}", "status"), "queued");
  EXPECT_EQ(HashField(redis, "ci:job:{j1}", "reason"),
            "requeued: agent configuration error: --max-timeout must be >= 0");
  EXPECT_EQ(PendingCount(redis), 1);
  // Claimable at once, as the next attempt.
  const ToolRun again = Run(server->url(), {"--wait=0"});
  ASSERT_EQ(again.exit_code, kJobReady) << again.err;
  EXPECT_EQ(HashField(redis, "ci:job:{j1}", "attempt"), "2");
}

// A poison pill: an entry far larger than any job, ahead of a good job. The
// agent runs with 1.5 GiB of address space, as a pod with that memory limit.
// Receiving the entry would cost it several copies of the entry (hiredis'
// read buffer, the reply, the parsed fields), and every agent that reclaimed
// it would die the same way. The claim script dead-letters it unread, so the
// agent takes the good job behind it.
TEST_F(CiConsumeTest, PoisonPillEntryIsDeadLetteredUnreadUnderMemoryLimit) {
  constexpr int64_t kPoisonBytes = 300 * 1000 * 1000;
  CIAGENT_START_REDIS(server);
  RedisOptions producer = OptionsFor(*server);
  // Building the entry takes seconds on a busy machine.
  producer.command_timeout = absl::Minutes(5);
  JobQueue queue(producer, ProducerOptions());
  ASSERT_OK(queue.EnsureGroup());
  // Built inside Redis, so the test does not hold copies of it either.
  const RedisScript add_poison(R"lua(
return redis.call('XADD', KEYS[1], '*', 'job',
  '{"job_id":"poison","repo":"https://git.example.com/a.git",' ..
  '"branch":"main","commit":"' .. string.rep('a', 40) .. '","pad":"' ..
  string.rep('x', tonumber(ARGV[1])) .. '"}')
)lua");
  ASSERT_OK_AND_ASSIGN(
      RedisReply poison_id,
      queue.redis().Eval(add_poison, {"ci-jobs"}, {absl::StrCat(kPoisonBytes)}));
  ASSERT_OK(queue.Enqueue(testing::ExampleJob("good")).status());

  // AddressSanitizer reserves terabytes of address space: no limit there.
  if (!kAddressSanitizer) address_space_kib_ = 1536 * 1024;
  const ToolRun run = Run(server->url(), {"--wait=5"});

  ASSERT_EQ(run.exit_code, kJobReady) << run.err;
  EXPECT_THAT(ReadFileOrEmpty(JobFile()), HasSubstr(R"("job_id":"good")"));
  EXPECT_THAT(run.err, HasSubstr("dead-lettered entry"));
  const auto dead = DeadLetters(queue.redis());
  ASSERT_EQ(dead.size(), 1u);
  const auto& letter = dead[0];
  EXPECT_THAT(letter.at("dead_reason"), HasSubstr("oversized entry"));
  EXPECT_EQ(letter.at("dead_source_id"), poison_id.str);
  EXPECT_EQ(letter.at("dead_truncated"), "1");
  EXPECT_GT(std::stoll(letter.at("dead_entry_bytes")), kPoisonBytes);
  EXPECT_EQ(letter.at("job").size(), 1024u);
  EXPECT_EQ(HashField(queue.redis(), "ci:job:{poison}", "status"), "error");
  EXPECT_EQ(HashField(queue.redis(), "ci:job:{good}", "status"), "running");
  EXPECT_EQ(PendingCount(queue.redis()), 1);  // only the good job
}

}  // namespace
}  // namespace ciagent
