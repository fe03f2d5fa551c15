// Runs the ci-queue binary against a real redis-server and checks its
// documented contract: every command against jobs in every state, JSON on
// the read commands, exit codes, the password never shown; and, with real
// agents (the container entrypoint: ci-consume, then ci-build on a fixture
// crate fetched from a real git server), `logs --follow` attached while a
// job runs, a cancel reaching a running job, and a redriven dead letter
// that then succeeds.
#include <simdjson.h>

#include <algorithm>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/algorithm/container.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "ciagent/job/job.h"
#include "ciagent/queue/job_log.h"
#include "ciagent/queue/job_queue.h"
#include "ciagent/queue/test_history.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "testing/cargo_fixture.h"
#include "testing/git_repo.h"
#include "testing/git_server.h"
#include "testing/queue_fixtures.h"
#include "testing/redis_server.h"
#include "testing/status_matchers.h"
#include "testing/subprocess.h"

namespace ciagent {
namespace {

using ::ciagent::testing::IsOkAndHolds;
using ::ciagent::testing::Subprocess;
using ::ciagent::testing::SubprocessOptions;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::Not;

// Exit codes as documented in `ci-queue --help`.
constexpr int kOk = 0;
constexpr int kFailure = 1;
constexpr int kUsageError = 2;

constexpr char kPassword[] = "queue-pa55word-3e1f";

struct ToolRun {
  int exit_code = -1;
  std::string out;
  std::string err;
};

// One JSON document parsed; `doc` stays valid while the parser lives.
struct Json {
  simdjson::dom::parser parser;
  simdjson::dom::element doc;
};

std::string Text(simdjson::dom::element value) {
  std::string_view text;
  return value.get(text) == simdjson::SUCCESS ? std::string(text) : "";
}

class CiQueueTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_OK_AND_ASSIGN(tool_, testing::PathFromEnv("CIAGENT_CI_QUEUE"));
    ASSERT_OK_AND_ASSIGN(dir_, testing::MakeTempDir("ci-queue"));
  }
  void TearDown() override { testing::RemoveTree(dir_); }

  void StartRedis(testing::RedisServerOptions options = {}) {
    CIAGENT_START_REDIS_WITH(started, options);
    redis_ = std::move(started);
    ASSERT_OK_AND_ASSIGN(redis_options_, RedisOptionsFromUrl(redis_->url()));
    redis_options_.password = options.password;
  }

  SubprocessOptions ToolOptions(std::map<std::string, std::string> env,
                                const std::string& name) const {
    SubprocessOptions options;
    options.env = std::move(env);
    options.unset_env = {"REDIS_URL", "REDIS_PASSWORD", "REDIS_PASSWORD_FILE",
                         "CIAGENT_LOG_LEVEL", "NO_COLOR"};
    options.stdout_path = absl::StrCat(dir_, "/", name, ".out");
    options.stderr_path = absl::StrCat(dir_, "/", name, ".err");
    return options;
  }

  std::vector<std::string> Argv(std::vector<std::string> args) const {
    std::vector<std::string> argv = {tool_, "--redis=" + redis_->url()};
    argv.insert(argv.end(), args.begin(), args.end());
    return argv;
  }

  // Starts ci-queue with `args`; its output goes to <dir>/<name>.out/.err.
  std::unique_ptr<Subprocess> Start(std::vector<std::string> args,
                                    const std::string& name,
                                    std::map<std::string, std::string> env = {}) {
    absl::StatusOr<std::unique_ptr<Subprocess>> process =
        Subprocess::Start(Argv(std::move(args)), ToolOptions(std::move(env), name));
    EXPECT_OK(process.status());
    return process.ok() ? *std::move(process) : nullptr;
  }

  ToolRun Finish(std::unique_ptr<Subprocess> process, const std::string& name,
                 absl::Duration timeout = absl::Seconds(30)) {
    ToolRun run;
    if (process == nullptr) return run;
    absl::StatusOr<int> code = process->Wait(timeout);
    EXPECT_OK(code.status());
    run.exit_code = code.value_or(-1);
    run.out = testing::ReadFileOrEmpty(absl::StrCat(dir_, "/", name, ".out"));
    run.err = testing::ReadFileOrEmpty(absl::StrCat(dir_, "/", name, ".err"));
    return run;
  }

  ToolRun Run(std::vector<std::string> args,
              std::map<std::string, std::string> env = {}) {
    const std::string name = absl::StrCat("run", ++runs_);
    return Finish(Start(std::move(args), name, std::move(env)), name);
  }

  // Runs a read command with --json and parses what it printed.
  std::unique_ptr<Json> RunJson(std::vector<std::string> args) {
    args.push_back("--json");
    ToolRun run = Run(std::move(args));
    EXPECT_EQ(run.exit_code, kOk) << run.err;
    auto json = std::make_unique<Json>();
    json_text_.push_back(run.out);
    EXPECT_EQ(json->parser.parse(json_text_.back()).get(json->doc),
              simdjson::SUCCESS)
        << run.out;
    return json;
  }

  JobQueue Queue(absl::string_view consumer = "agent-a", int deliveries = 3) {
    QueueOptions options{.consumer = std::string(consumer),
                         .max_deliveries = deliveries,
                         .create_group = true};
    return JobQueue(redis_options_, options);
  }

  std::string StatusField(const std::string& job_id, const std::string& field) {
    RedisClient client(redis_options_);
    absl::StatusOr<RedisReply> reply =
        client.Command({"HGET", QueueOptions().StatusKey(job_id), field});
    return reply.ok() ? reply->str : "";
  }

  // The job's log stream as "<attempt>/<seq> <line>", in stream order.
  std::vector<std::string> LogStream(const std::string& job_id) {
    std::vector<std::string> lines;
    for (auto& fields :
         testing::StreamEntries(redis_options_, QueueOptions().LogKey(job_id))) {
      lines.push_back(absl::StrCat(fields["attempt"], "/", fields["seq"], " ",
                                   fields["line"]));
    }
    return lines;
  }

  // --- real agents ---------------------------------------------------------

  // Fixture `name` committed to a repository on `git`, enqueued with
  // ci-queue as job `job_id` running `steps`.
  void EnqueueFixture(testing::GitServer& git, const std::string& name,
                      const std::string& job_id, const std::string& steps) {
    std::vector<std::string> enqueue = {"enqueue", "--steps=" + steps,
                                        "--job-id=" + job_id};
    for (std::string& flag : Publish(git, name)) enqueue.push_back(flag);
    ToolRun run = Run(enqueue);
    ASSERT_EQ(run.exit_code, kOk) << run.err;
  }

  // Fixture `name` committed to a repository on `git`; returns the
  // `enqueue` flags for it.
  std::vector<std::string> Publish(testing::GitServer& git,
                                   const std::string& name) {
    absl::StatusOr<std::string> bare = git.CreateBareRepo("acme/" + name);
    absl::StatusOr<std::map<std::string, std::string>> files =
        testing::FixtureFiles(name);
    EXPECT_OK(bare.status());
    EXPECT_OK(files.status());
    absl::StatusOr<std::string> commit = testing::CommitFiles(
        bare.value_or(""), "main",
        files.value_or(std::map<std::string, std::string>{}), "import");
    EXPECT_OK(commit.status());
    return {"--repo=" + git.RepoUrl("acme/" + name), "--branch=main",
            "--commit=" + commit.value_or(""), "--timeout=300"};
  }

  // One agent pod: the entrypoint runs ci-consume, then ci-build, for one
  // job; with CI_EXIT_CODE=job its exit code is the job's outcome.
  std::unique_ptr<Subprocess> StartAgent(const std::string& name,
                                         const std::string& path) {
    SubprocessOptions options;
    options.env = {
        {"PATH", path},
        {"REDIS_URL", redis_->url()},
        {"POD_NAME", name},
        {"CI_WORKDIR", dir_ + "/" + name},
        {"CI_CACHE_DIR", dir_ + "/cache"},
        {"CI_WAIT", "30"},
        {"CI_GRACE", "1"},
        {"CI_EXIT_CODE", "job"},
        {"CI_IMAGE_BUILDER", "none"},
        {"CI_CONSUME_BIN",
         testing::PathFromEnv("CIAGENT_CI_CONSUME").value_or("")},
        {"CI_BUILD_BIN", testing::PathFromEnv("CIAGENT_CI_BUILD").value_or("")},
    };
    options.unset_env = {"REDIS_PASSWORD", "CI_SECRET_ENV",   "CI_TARGET_DIR",
                         "CI_CARGO_HOME",  "GITEA_URL",       "REGISTRY_URL",
                         "GIT_TOKEN",      "CIAGENT_LOG_LEVEL"};
    options.stdout_path = dir_ + "/" + name + ".agent.out";
    options.stderr_path = dir_ + "/" + name + ".agent.log";
    absl::StatusOr<std::string> entrypoint =
        testing::PathFromEnv("CIAGENT_ENTRYPOINT");
    EXPECT_OK(entrypoint.status());
    absl::StatusOr<std::unique_ptr<Subprocess>> agent =
        Subprocess::Start({entrypoint.value_or("")}, options);
    EXPECT_OK(agent.status());
    return agent.ok() ? *std::move(agent) : nullptr;
  }

  std::string AgentLog(const std::string& name) {
    return testing::ReadFileOrEmpty(dir_ + "/" + name + ".agent.log");
  }

  std::string tool_;
  std::string dir_;
  std::unique_ptr<testing::RedisServer> redis_;
  RedisOptions redis_options_;
  std::vector<std::string> json_text_;
  int runs_ = 0;
};

TEST_F(CiQueueTest, ReadCommandsDescribeJobsInEveryStateAsJson) {
  StartRedis();
  JobQueue queue = Queue();
  for (const char* id : {"passed", "failed", "dead", "running", "queued"}) {
    ASSERT_OK(queue.Enqueue(testing::ExampleJob(id)).status());
  }
  ASSERT_OK_AND_ASSIGN(ClaimedJob passed, queue.Claim(absl::ZeroDuration()));
  ASSERT_OK(queue.Finalize(passed, {JobStatus::kSuccess, "", {{"tests_passed", "6"}}}));
  ASSERT_OK_AND_ASSIGN(ClaimedJob failed, queue.Claim(absl::ZeroDuration()));
  ASSERT_OK(queue.Finalize(
      failed, {JobStatus::kFailed, "1 test failed",
               {{"steps", R"([{"name":"test","status":"failed","exit_code":101,"duration_ms":5,"reason":"exit code 101","warnings":0}])"}}}));
  // "dead": its agents gave it back more often than max_deliveries=1.
  JobQueue strict = Queue("agent-a", 1);
  ASSERT_OK_AND_ASSIGN(ClaimedJob dead, strict.Claim(absl::ZeroDuration()));
  ASSERT_OK(strict.Requeue(dead, "agent shutting down"));
  ASSERT_OK_AND_ASSIGN(ClaimedJob running, strict.Claim(absl::ZeroDuration()));
  ASSERT_EQ(running.job.job_id, "running");

  std::unique_ptr<Json> stats = RunJson({"stats"});
  EXPECT_EQ(stats->doc["length"].get_int64().value(), 5);
  EXPECT_EQ(stats->doc["lag"].get_int64().value(), 1);
  EXPECT_EQ(stats->doc["pending"].get_int64().value(), 1);
  EXPECT_EQ(stats->doc["dead_letters"].get_int64().value(), 1);
  EXPECT_EQ(Text(stats->doc["consumers"].at(0)["name"]), "agent-a");

  std::unique_ptr<Json> list = RunJson({"list"});
  std::vector<std::string> listed;
  for (simdjson::dom::element job : list->doc.get_array()) {
    listed.push_back(Text(job["job_id"]) + " " + Text(job["status"]));
  }
  EXPECT_THAT(listed, ElementsAre("queued queued", "running running",
                                  "dead error", "failed failed",
                                  "passed success"));
  std::unique_ptr<Json> failed_only = RunJson({"list", "--status=failed"});
  EXPECT_EQ(failed_only->doc.get_array().size(), 1u);

  std::unique_ptr<Json> shown = RunJson({"show", "failed"});
  EXPECT_EQ(Text(shown->doc["reason"]), "1 test failed");
  EXPECT_EQ(Text(shown->doc["steps"].at(0)["reason"]), "exit code 101");

  std::unique_ptr<Json> dead_letters = RunJson({"dead", "list"});
  EXPECT_EQ(Text(dead_letters->doc.at(0)["dead_reason"]),
            "delivered 2 times, more than max_deliveries=1");

  // And as text for people: aligned, without colour outside a terminal.
  ToolRun text = Run({"list"});
  EXPECT_EQ(text.exit_code, kOk) << text.err;
  EXPECT_THAT(text.out, HasSubstr("failed   "));
  EXPECT_THAT(text.out, Not(HasSubstr("\033[")));
  ToolRun show = Run({"show", "failed"});
  EXPECT_THAT(show.out, HasSubstr("  test  failed  5ms   101   exit code 101"));
}

TEST_F(CiQueueTest, LogsPrintsEachLineOnceAndOnlyTheStepAsked) {
  StartRedis();
  JobQueue queue = Queue();
  ASSERT_OK(queue.Enqueue(testing::ExampleJob("logged")).status());
  ASSERT_OK_AND_ASSIGN(ClaimedJob claim, queue.Claim(absl::ZeroDuration()));
  RedisClient writer(redis_options_);
  JobLog log(&writer, QueueOptions(), claim);
  ASSERT_OK(log.Append({{"check", "stdout", "checking"}, {"test", "stderr", "testing"}}));

  ToolRun all = Run({"logs", "logged"});
  EXPECT_EQ(all.exit_code, kOk) << all.err;
  EXPECT_EQ(all.out, "check  checking\ntest   testing\n");
  ToolRun test = Run({"logs", "logged", "--step=test", "--json"});
  EXPECT_EQ(test.exit_code, kOk) << test.err;
  EXPECT_THAT(test.out, ::testing::EndsWith(
                            R"(","seq":2,"attempt":1,"step":"test",)"
                            R"("stream":"stderr","line":"testing"})" "\n"));
  EXPECT_EQ(std::count(test.out.begin(), test.out.end(), '\n'), 1);
}

TEST_F(CiQueueTest, EnqueuePrintsTheJobIdOfAQueuedJobAndRefusesABadOne) {
  StartRedis();
  ToolRun run = Run({"enqueue", "--repo=https://git.example.com/acme/hello-ci.git",
                     "--branch=main", "--commit=" + std::string(40, 'b'),
                     "--steps=check,test", "--timeout=600"});
  ASSERT_EQ(run.exit_code, kOk) << run.err;
  const std::string job_id(absl::StripTrailingAsciiWhitespace(run.out));
  EXPECT_THAT(job_id, ::testing::StartsWith("hello-ci-"));
  EXPECT_EQ(StatusField(job_id, "status"), "queued");
  ASSERT_OK_AND_ASSIGN(ClaimedJob claim, Queue().Claim(absl::ZeroDuration()));
  EXPECT_EQ(claim.job.job_id, job_id);
  EXPECT_THAT(claim.job.steps, ElementsAre("check", "test"));
  EXPECT_EQ(claim.job.timeout, absl::Seconds(600));

  ToolRun bad = Run({"enqueue", "--repo=https://h/a.git", "--branch=main",
                     "--commit=abc", "--job-id=bad"});
  EXPECT_EQ(bad.exit_code, kUsageError);
  EXPECT_THAT(bad.err, HasSubstr("commit: must be 40 or 64 hex digits"));
  EXPECT_EQ(StatusField("bad", "status"), "");
}

// The operators' quarantine is what the agent reads before a run
// (TestHistoryStore::ReadQuarantine): names added show there, removed ones
// go.
TEST_F(CiQueueTest, QuarantineAddsListsAndRemovesTestsTheAgentThenSees) {
  StartRedis();
  const std::string repo = "--repo=https://git.example.com/acme/app.git";
  ToolRun add = Run({"quarantine", "add", repo, "net::flaky_dns",
                     "io::slow_disk", "net::flaky_dns"});
  ASSERT_EQ(add.exit_code, kOk) << add.err;
  EXPECT_EQ(add.out, "quarantined 2 of 3 tests of "
                     "https://git.example.com/acme/app.git\n");
  EXPECT_EQ(Run({"quarantine", "list", repo}).out,
            "io::slow_disk\nnet::flaky_dns\n");
  std::unique_ptr<Json> listed = RunJson({"quarantine", "list", repo});
  EXPECT_EQ(simdjson::minify(listed->doc),
            R"(["io::slow_disk","net::flaky_dns"])");

  ASSERT_EQ(Run({"quarantine", "remove", repo, "io::slow_disk"}).exit_code,
            kOk);
  TestHistoryStore agent_view(redis_options_, {});
  EXPECT_THAT(agent_view.ReadQuarantine("https://git.example.com/acme/app.git"),
              IsOkAndHolds(ElementsAre("net::flaky_dns")));
  // Another repository's quarantine is its own.
  EXPECT_EQ(Run({"quarantine", "list", "--repo=https://h/other.git"}).out, "");
  EXPECT_EQ(Run({"quarantine", "add", repo}).exit_code, kUsageError);
  EXPECT_EQ(Run({"quarantine", "list"}).exit_code, kUsageError);
}

TEST_F(CiQueueTest, UsageErrorsExitTwoAndHelpListsEveryCommand) {
  StartRedis();
  const std::vector<std::vector<std::string>> mistakes = {
      {},
      {"frobnicate"},
      {"show"},
      {"show", "a", "b"},
      {"list", "--follow"},
      {"list", "--status=finished"},
      {"list", "--limit=0"},
      {"stats", "--no-such-flag"},
      {"dead", "redrive"},
      {"dead", "redrive", "1-0", "--all"},
      {"dead", "purge"},
      {"dead", "purge", "--older-than=soon"},
      {"enqueue", "--repo=https://h/a.git"},
  };
  for (const std::vector<std::string>& args : mistakes) {
    ToolRun run = Run(args);
    EXPECT_EQ(run.exit_code, kUsageError)
        << absl::StrJoin(args, " ") << ": " << run.err;
  }
  ToolRun help = Run({"--help"});
  EXPECT_EQ(help.exit_code, kOk);
  for (const char* command : {"stats", "list", "show", "logs", "cancel",
                              "enqueue", "dead list", "dead redrive",
                              "dead purge", "quarantine", "--older-than",
                              "--follow"}) {
    EXPECT_THAT(help.out, HasSubstr(command));
  }
}

TEST_F(CiQueueTest, ShowOfAnUnknownJobExitsTwo) {
  StartRedis();
  ToolRun run = Run({"show", "nobody"});
  EXPECT_EQ(run.exit_code, kUsageError);
  EXPECT_THAT(run.err, HasSubstr("no status hash ci:job:{nobody}"));
}

TEST_F(CiQueueTest, ReadsThePasswordFromAFileAndNeverPrintsIt) {
  StartRedis({.password = kPassword});
  ASSERT_OK(Queue().Enqueue(testing::ExampleJob("secret")).status());
  ASSERT_OK(testing::WriteText(dir_ + "/password", std::string(kPassword) + "\n",
                               0600));
  ToolRun run = Run({"list"}, {{"REDIS_PASSWORD_FILE", dir_ + "/password"}});
  EXPECT_EQ(run.exit_code, kOk) << run.err;
  EXPECT_THAT(run.out, HasSubstr("secret"));

  ToolRun wrong = Run({"stats"}, {{"REDIS_PASSWORD", "not-the-password"}});
  EXPECT_EQ(wrong.exit_code, kUsageError);
  for (const ToolRun& r : {run, wrong}) {
    EXPECT_THAT(r.out + r.err, Not(HasSubstr(kPassword)));
    EXPECT_THAT(r.out + r.err, Not(HasSubstr("not-the-password")));
  }
}

TEST_F(CiQueueTest, UnreachableRedisExitsOne) {
  ASSERT_OK_AND_ASSIGN(int port, testing::PickFreePort());
  ToolRun run;
  const std::string name = "unreachable";
  absl::StatusOr<std::unique_ptr<Subprocess>> process = Subprocess::Start(
      {tool_, absl::StrCat("--redis=redis://127.0.0.1:", port), "stats"},
      ToolOptions({}, name));
  ASSERT_OK(process.status());
  run = Finish(*std::move(process), name);
  EXPECT_EQ(run.exit_code, kFailure);
  EXPECT_THAT(run.err, HasSubstr("UNAVAILABLE"));
}

TEST_F(CiQueueTest, RedriveRefusesAStillMalformedDeadLetterAndPurgeRemovesOld) {
  StartRedis();
  ASSERT_OK(Queue().EnsureGroup());
  RedisClient client(redis_options_);
  // A dead letter from ten days ago, then one from now: a job whose branch
  // breaks the rules.
  ASSERT_OK(client.Command({"XADD", "ci-jobs:dead",
                            absl::StrCat(absl::ToUnixMillis(absl::Now()) -
                                             10 * 24 * 3600 * 1000LL, "-0"),
                            "dead_reason", "old"})
                .status());
  Job bad = testing::ExampleJob("bad-branch");
  bad.branch = "no..dots";
  ASSERT_OK(client.Command({"XADD", "ci-jobs", "*", "job", JobToJson(bad)}).status());
  EXPECT_FALSE(Queue().Claim(absl::ZeroDuration()).ok());
  const std::string id = Text(RunJson({"dead", "list"})->doc.at(0)["id"]);

  ToolRun redrive = Run({"dead", "redrive", id});
  EXPECT_EQ(redrive.exit_code, kFailure);
  EXPECT_THAT(redrive.out, HasSubstr("refused"));
  EXPECT_THAT(redrive.out, HasSubstr("malformed job: branch"));

  EXPECT_EQ(Run({"dead", "purge", "--older-than=30d"}).out,
            "purged 0 dead letters older than 30d\n");
  EXPECT_EQ(Run({"dead", "purge", "--older-than=7d", "--dry-run", "--json"}).out,
            "{\"would_purge\":1,\"older_than\":\"7d\"}\n");
  EXPECT_EQ(Run({"dead", "purge", "--older-than=7d"}).out,
            "purged 1 dead letters older than 7d\n");
  std::unique_ptr<Json> left = RunJson({"dead", "list"});
  ASSERT_EQ(left->doc.get_array().size(), 1u);
  EXPECT_EQ(Text(left->doc.at(0)["id"]), id);
}

// --- with real agents ------------------------------------------------------

TEST_F(CiQueueTest, FollowedLogShowsEveryLineOnceInOrderAndExitsWithTheOutcome) {
  CIAGENT_REQUIRE_CARGO(path);
  StartRedis();
  CIAGENT_START_GIT_SERVER(git, {});
  for (const auto& [fixture, outcome] :
       std::vector<std::pair<std::string, int>>{{"passing", kOk},
                                                {"failing_test", kFailure}}) {
    const std::string job_id = "follow-" + fixture;
    EnqueueFixture(*git, fixture, job_id, "check,test");

    // Attached before the job starts, as someone watching a push.
    std::unique_ptr<Subprocess> follow =
        Start({"logs", job_id, "--follow", "--json"}, "follow-" + fixture);
    std::unique_ptr<Subprocess> agent = StartAgent("agent-" + fixture, path);
    ASSERT_NE(agent, nullptr);
    ToolRun followed =
        Finish(std::move(follow), "follow-" + fixture, absl::Minutes(5));
    EXPECT_THAT(agent->Wait(absl::Minutes(5)),
                IsOkAndHolds(outcome == kOk ? 0 : 1))
        << AgentLog("agent-" + fixture);

    EXPECT_EQ(followed.exit_code, outcome) << fixture << ": " << followed.err;
    std::vector<std::string> shown;
    for (absl::string_view line :
         absl::StrSplit(followed.out, '\n', absl::SkipEmpty())) {
      simdjson::dom::parser parser;
      simdjson::dom::element entry;
      ASSERT_EQ(parser.parse(line.data(), line.size()).get(entry),
                simdjson::SUCCESS) << line;
      shown.push_back(absl::StrCat(entry["attempt"].get_int64().value(), "/",
                                   entry["seq"].get_int64().value(), " ",
                                   Text(entry["line"])));
    }
    EXPECT_EQ(shown, LogStream(job_id)) << fixture;
    EXPECT_THAT(shown, ::testing::Contains(HasSubstr("step test")));
  }
}

TEST_F(CiQueueTest, CancelReachesARunningJob) {
  CIAGENT_REQUIRE_CARGO(path);
  StartRedis();
  CIAGENT_START_GIT_SERVER(git, {});
  EnqueueFixture(*git, "hanging_test", "hangs", "test");
  std::unique_ptr<Subprocess> follow =
      Start({"logs", "hangs", "--follow"}, "follow-hangs");
  std::unique_ptr<Subprocess> agent = StartAgent("agent-hangs", path);
  ASSERT_NE(agent, nullptr);
  // The test step is running when its start marker is in the log.
  const absl::Time deadline = absl::Now() + absl::Minutes(4);
  while (absl::Now() < deadline &&
         !absl::c_any_of(LogStream("hangs"), [](const std::string& line) {
           return absl::StrContains(line, "step test started");
         })) {
    absl::SleepFor(absl::Milliseconds(200));
  }
  ASSERT_EQ(StatusField("hangs", "status"), "running") << AgentLog("agent-hangs");

  ToolRun cancel = Run({"cancel", "hangs", "--reason=superseded"});
  EXPECT_EQ(cancel.exit_code, kOk) << cancel.err;
  EXPECT_THAT(agent->Wait(absl::Minutes(2)), IsOkAndHolds(130))
      << AgentLog("agent-hangs");
  EXPECT_EQ(StatusField("hangs", "status"), "cancelled");
  EXPECT_EQ(StatusField("hangs", "cancel_reason"), "superseded");
  ToolRun followed = Finish(std::move(follow), "follow-hangs");
  EXPECT_EQ(followed.exit_code, kFailure);

  ToolRun again = Run({"cancel", "hangs"});
  EXPECT_EQ(again.exit_code, kUsageError);
  EXPECT_THAT(again.err, HasSubstr("already finished (cancelled)"));
}

TEST_F(CiQueueTest, RedrivenDeadLetterRunsAgainAndSucceeds) {
  CIAGENT_REQUIRE_CARGO(path);
  StartRedis();
  CIAGENT_START_GIT_SERVER(git, {});
  EnqueueFixture(*git, "passing", "second-chance", "check");
  // Its agents gave it back, more often than max_deliveries=1 allows.
  JobQueue strict = Queue("agent-gone", 1);
  ASSERT_OK_AND_ASSIGN(ClaimedJob claim, strict.Claim(absl::ZeroDuration()));
  ASSERT_OK(strict.Requeue(claim, "agent failure: registry unavailable"));
  EXPECT_FALSE(strict.Claim(absl::ZeroDuration()).ok());
  ASSERT_EQ(StatusField("second-chance", "status"), "error");
  const std::string dead_id = Text(RunJson({"dead", "list"})->doc.at(0)["id"]);

  ToolRun dry = Run({"dead", "redrive", "--all", "--dry-run"});
  EXPECT_EQ(dry.exit_code, kOk) << dry.err;
  EXPECT_THAT(dry.out, HasSubstr("would redrive"));
  ToolRun redrive = Run({"dead", "redrive", dead_id});
  EXPECT_EQ(redrive.exit_code, kOk) << redrive.err;
  ToolRun twice = Run({"dead", "redrive", dead_id});
  EXPECT_EQ(twice.exit_code, kFailure);
  EXPECT_THAT(twice.out, HasSubstr("missing"));

  std::unique_ptr<Subprocess> agent = StartAgent("agent-redriven", path);
  ASSERT_NE(agent, nullptr);
  EXPECT_THAT(agent->Wait(absl::Minutes(5)), IsOkAndHolds(0))
      << AgentLog("agent-redriven");
  std::unique_ptr<Json> job = RunJson({"show", "second-chance"});
  EXPECT_EQ(Text(job->doc["status"]), "success");
  EXPECT_EQ(Text(job->doc["attempt"]), "1");
  EXPECT_EQ(Text(job->doc["redriven_from"]), dead_id);
  EXPECT_EQ(Text(job->doc["earlier_reasons"].at(0)["reason"]),
            "delivered 2 times, more than max_deliveries=1");
  EXPECT_EQ(RunJson({"stats"})->doc["pending"].get_int64().value(), 0);
}

}  // namespace
}  // namespace ciagent
