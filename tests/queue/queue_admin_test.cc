// QueueAdmin against a real redis-server: the recent-jobs index, stats, a
// job's status and log, and dead letters redriven and purged.
#include "ciagent/queue/queue_admin.h"

#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "ciagent/queue/job_log.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "testing/queue_fixtures.h"
#include "testing/redis_server.h"
#include "testing/status_matchers.h"

namespace ciagent {
namespace {

using ::ciagent::testing::StatusIs;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;

std::vector<std::string> JobIds(const std::vector<JobRecord>& jobs) {
  std::vector<std::string> ids;
  for (const JobRecord& job : jobs) ids.push_back(job.job_id);
  return ids;
}

class QueueAdminTest : public ::testing::Test {
 protected:
  void SetUp() override {
    CIAGENT_START_REDIS(started);
    server_ = std::move(started);
    ASSERT_OK_AND_ASSIGN(redis_, RedisOptionsFromUrl(server_->url()));
  }

  QueueOptions Options(absl::string_view consumer = "agent-a") const {
    QueueOptions options;
    options.consumer = std::string(consumer);
    options.create_group = true;
    options.max_deliveries = 1;
    return options;
  }

  JobQueue Queue(absl::string_view consumer = "agent-a") {
    return JobQueue(redis_, Options(consumer));
  }
  QueueAdmin Admin() { return QueueAdmin(redis_, Options()); }

  RedisReply Command(std::vector<std::string> argv) {
    RedisClient client(redis_);
    absl::StatusOr<RedisReply> reply = client.Command(absl::MakeConstSpan(argv));
    EXPECT_OK(reply.status());
    return reply.value_or(RedisReply{});
  }

  // Enqueues `job_id` and leaves it dead-lettered: delivered twice, more than
  // max_deliveries=1 (its first agent requeued it).
  void DeadLetterAfterRequeue(absl::string_view job_id) {
    JobQueue queue = Queue();
    ASSERT_OK(queue.Enqueue(testing::ExampleJob(job_id)).status());
    ASSERT_OK_AND_ASSIGN(ClaimedJob claim, queue.Claim(absl::ZeroDuration()));
    RedisClient writer(redis_);
    ASSERT_OK(JobLog(&writer, Options(), claim)
                  .Append({{"fetch", "agent", "fetching"}}));
    ASSERT_OK(queue.Requeue(claim, "agent shutting down"));
    EXPECT_THAT(queue.Claim(absl::ZeroDuration()),
                StatusIs(absl::StatusCode::kDeadlineExceeded));
  }

  std::string OnlyDeadLetterId() {
    absl::StatusOr<std::vector<DeadLetter>> dead = Admin().ListDeadLetters(10);
    EXPECT_OK(dead.status());
    EXPECT_EQ(dead.value_or(std::vector<DeadLetter>{}).size(), 1u);
    return dead.ok() && !dead->empty() ? (*dead)[0].id : "";
  }

  std::unique_ptr<::ciagent::testing::RedisServer> server_;
  RedisOptions redis_;
};

TEST_F(QueueAdminTest, ListsRecentJobsNewestFirstInEveryState) {
  JobQueue queue = Queue();
  for (const char* id : {"passed", "failed", "running", "queued"}) {
    ASSERT_OK(queue.Enqueue(testing::ExampleJob(id)).status());
  }
  ASSERT_OK_AND_ASSIGN(ClaimedJob passed, queue.Claim(absl::ZeroDuration()));
  ASSERT_OK(queue.Finalize(passed, {JobStatus::kSuccess}));
  ASSERT_OK_AND_ASSIGN(ClaimedJob failed, queue.Claim(absl::ZeroDuration()));
  ASSERT_OK(queue.Finalize(failed, {JobStatus::kFailed, "1 test failed"}));
  ASSERT_OK(queue.Claim(absl::ZeroDuration()).status());

  QueueAdmin admin = Admin();
  ASSERT_OK_AND_ASSIGN(std::vector<JobRecord> jobs, admin.ListJobs({}));
  EXPECT_THAT(JobIds(jobs), ElementsAre("queued", "running", "failed", "passed"));
  EXPECT_EQ(jobs[0].status(), JobStatus::kQueued);
  EXPECT_EQ(jobs[1].status(), JobStatus::kRunning);
  EXPECT_EQ(jobs[1].Get("consumer"), "agent-a");
  EXPECT_EQ(jobs[2].Get("reason"), "1 test failed");
  EXPECT_EQ(jobs[3].status(), JobStatus::kSuccess);

  ASSERT_OK_AND_ASSIGN(jobs, admin.ListJobs({.status = JobStatus::kFailed}));
  EXPECT_THAT(JobIds(jobs), ElementsAre("failed"));
  ASSERT_OK_AND_ASSIGN(jobs, admin.ListJobs({.limit = 2}));
  EXPECT_THAT(JobIds(jobs), ElementsAre("queued", "running"));
}

TEST_F(QueueAdminTest, RecentJobsIndexKeepsOnlyTheNewestJobs) {
  QueueOptions options = Options();
  options.recent_jobs_max_len = 3;
  JobQueue queue(redis_, options);
  for (int i = 1; i <= 5; ++i) {
    ASSERT_OK(queue.Enqueue(testing::ExampleJob(absl::StrCat("job-", i))).status());
  }
  EXPECT_EQ(Command({"ZCARD", "ci-jobs:recent"}).integer, 3);
  ASSERT_OK_AND_ASSIGN(std::vector<JobRecord> jobs, Admin().ListJobs({}));
  EXPECT_THAT(JobIds(jobs), ElementsAre("job-5", "job-4", "job-3"));
}

TEST_F(QueueAdminTest, FinalizeIndexesAJobItsProducerAddedByHand) {
  ASSERT_OK(Queue().EnsureGroup());
  Command({"XADD", "ci-jobs", "*", "job", JobToJson(testing::ExampleJob("by-hand"))});
  JobQueue queue = Queue();
  ASSERT_OK_AND_ASSIGN(ClaimedJob claim, queue.Claim(absl::ZeroDuration()));
  ASSERT_OK_AND_ASSIGN(std::vector<JobRecord> jobs, Admin().ListJobs({}));
  EXPECT_THAT(jobs, IsEmpty());

  ASSERT_OK(queue.Finalize(claim, {JobStatus::kSuccess}));
  ASSERT_OK_AND_ASSIGN(jobs, Admin().ListJobs({}));
  EXPECT_THAT(JobIds(jobs), ElementsAre("by-hand"));
}

TEST_F(QueueAdminTest, ListLeavesOutJobsWhoseStatusHashExpired) {
  JobQueue queue = Queue();
  ASSERT_OK(queue.Enqueue(testing::ExampleJob("kept")).status());
  ASSERT_OK(queue.Enqueue(testing::ExampleJob("expired")).status());
  Command({"DEL", "ci:job:{expired}"});
  ASSERT_OK_AND_ASSIGN(std::vector<JobRecord> jobs, Admin().ListJobs({}));
  EXPECT_THAT(JobIds(jobs), ElementsAre("kept"));
}

TEST_F(QueueAdminTest, StatsCountWaitingRunningConsumersAndDeadLetters) {
  JobQueue queue = Queue();
  for (const char* id : {"first", "second", "third"}) {
    ASSERT_OK(queue.Enqueue(testing::ExampleJob(id)).status());
  }
  ASSERT_OK(queue.Claim(absl::ZeroDuration()).status());
  Command({"XADD", "ci-jobs:dead", "*", "dead_reason", "malformed"});

  ASSERT_OK_AND_ASSIGN(QueueStats stats, Admin().Stats());
  EXPECT_TRUE(stats.group_exists);
  EXPECT_EQ(stats.length, 3);
  EXPECT_EQ(stats.lag, 2);
  EXPECT_EQ(stats.pending, 1);
  EXPECT_TRUE(stats.oldest_waiting_age.has_value());
  EXPECT_TRUE(stats.oldest_pending_age.has_value());
  ASSERT_EQ(stats.consumers.size(), 1u);
  EXPECT_EQ(stats.consumers[0].name, "agent-a");
  EXPECT_EQ(stats.consumers[0].pending, 1);
  EXPECT_EQ(stats.dead_letters, 1);
  EXPECT_EQ(stats.recent_jobs, 3);
}

TEST_F(QueueAdminTest, StatsOfAQueueNotYetCreatedAreZero) {
  ASSERT_OK_AND_ASSIGN(QueueStats stats, Admin().Stats());
  EXPECT_FALSE(stats.group_exists);
  EXPECT_EQ(stats.length, 0);
  EXPECT_EQ(stats.pending, 0);
  EXPECT_FALSE(stats.oldest_waiting_age.has_value());
}

TEST_F(QueueAdminTest, GetJobReturnsTheStatusHashOrNotFound) {
  ASSERT_OK(Queue().Enqueue(testing::ExampleJob("shown")).status());
  ASSERT_OK_AND_ASSIGN(JobRecord job, Admin().GetJob("shown"));
  EXPECT_EQ(job.status(), JobStatus::kQueued);
  EXPECT_EQ(job.Get("repo"), "https://git.example.com/acme/app.git");
  EXPECT_THAT(Admin().GetJob("nobody"),
              StatusIs(absl::StatusCode::kNotFound));
}

TEST_F(QueueAdminTest, ReadLogPassesEachLineOnceInOrderAndFiltersByStep) {
  JobQueue queue = Queue();
  ASSERT_OK(queue.Enqueue(testing::ExampleJob("logged")).status());
  ASSERT_OK_AND_ASSIGN(ClaimedJob claim, queue.Claim(absl::ZeroDuration()));
  RedisClient writer(redis_);
  JobLog log(&writer, Options(), claim);
  ASSERT_OK(log.Append({{"check", "stdout", "one"}, {"check", "stdout", "two"}}));
  // A batch sent again after a broken connection: the same seq values.
  Command({"XADD", log.key(), "*", "seq", "2", "attempt", "1", "step", "check",
           "stream", "stdout", "line", "two"});
  ASSERT_OK(log.Append({{"test", "stderr", "three"}}));

  std::vector<std::string> lines;
  const auto collect = [&](const LogEntry& e) {
    lines.push_back(absl::StrCat(e.seq, " ", e.step, " ", e.line));
  };
  QueueAdmin admin = Admin();
  EXPECT_THAT(admin.ReadLog("logged", {}, collect),
              ::ciagent::testing::IsOkAndHolds(JobStatus::kRunning));
  EXPECT_THAT(lines, ElementsAre("1 check one", "2 check two", "3 test three"));

  lines.clear();
  ASSERT_OK(admin.ReadLog("logged", {.step = "test"}, collect).status());
  EXPECT_THAT(lines, ElementsAre("3 test three"));
  EXPECT_THAT(admin.ReadLog("nobody", {}, collect),
              StatusIs(absl::StatusCode::kNotFound));
}

TEST_F(QueueAdminTest, FollowingALogEndsWithTheJobAndMissesNoLine) {
  JobQueue queue = Queue();
  ASSERT_OK(queue.Enqueue(testing::ExampleJob("followed")).status());
  ASSERT_OK_AND_ASSIGN(ClaimedJob claim, queue.Claim(absl::ZeroDuration()));
  // The agent: 300 lines in batches, then the final status.
  std::thread agent([&] {
    RedisClient writer(redis_);
    JobLog log(&writer, Options(), claim);
    for (int batch = 0; batch < 30; ++batch) {
      std::vector<LogLine> lines;
      for (int i = 0; i < 10; ++i) {
        lines.push_back({"build", "stdout", absl::StrCat(batch * 10 + i + 1)});
      }
      EXPECT_OK(log.Append(lines));
    }
    JobQueue finisher = Queue();
    EXPECT_OK(finisher.Finalize(claim, {JobStatus::kFailed, "exit 1"}));
  });
  std::vector<int64_t> seqs;
  absl::StatusOr<JobStatus> end = Admin().ReadLog(
      "followed", {.follow = true, .poll = absl::Milliseconds(50)},
      [&](const LogEntry& e) { seqs.push_back(e.seq); });
  agent.join();
  EXPECT_THAT(end, ::ciagent::testing::IsOkAndHolds(JobStatus::kFailed));
  ASSERT_EQ(seqs.size(), 300u);
  for (size_t i = 0; i < seqs.size(); ++i) EXPECT_EQ(seqs[i], i + 1);
}

TEST_F(QueueAdminTest, RedriveRequeuesADeadLetterWithAFreshDeliveryCount) {
  DeadLetterAfterRequeue("redriven");
  const std::string dead_id = OnlyDeadLetterId();
  QueueAdmin admin = Admin();
  ASSERT_GT(Command({"TTL", "ci:job:{redriven}:log"}).integer, 0)
      << "dead-lettering set the log to expire";

  ASSERT_OK_AND_ASSIGN(RedriveResult result, admin.Redrive(dead_id, false));
  EXPECT_EQ(result.outcome, RedriveOutcome::kRedriven);
  EXPECT_EQ(result.job_id, "redriven");
  ASSERT_OK_AND_ASSIGN(JobRecord job, admin.GetJob("redriven"));
  EXPECT_EQ(job.status(), JobStatus::kQueued);
  EXPECT_EQ(job.Get("redriven_from"), dead_id);
  EXPECT_THAT(job.Get("earlier_reasons"),
              HasSubstr("delivered 2 times, more than max_deliveries=1"));
  EXPECT_EQ(job.Get("reason"), "");
  EXPECT_EQ(Command({"XLEN", "ci-jobs:dead"}).integer, 0);
  EXPECT_EQ(Command({"TTL", "ci:job:{redriven}:log"}).integer, -1)
      << "the job is alive again: its log keeps until it ends";

  JobQueue queue = Queue("agent-b");
  ASSERT_OK_AND_ASSIGN(ClaimedJob claim, queue.Claim(absl::ZeroDuration()));
  EXPECT_EQ(claim.job.job_id, "redriven");
  EXPECT_EQ(claim.attempt, 1);
  EXPECT_EQ(claim.stream_id, result.stream_id);
}

TEST_F(QueueAdminTest, RedrivingTheSameDeadLetterTwiceEnqueuesItOnce) {
  DeadLetterAfterRequeue("once");
  const std::string dead_id = OnlyDeadLetterId();
  QueueAdmin admin = Admin();
  ASSERT_OK(admin.Redrive(dead_id, false).status());
  const int64_t length = Command({"XLEN", "ci-jobs"}).integer;

  ASSERT_OK_AND_ASSIGN(RedriveResult again, admin.Redrive(dead_id, false));
  EXPECT_EQ(again.outcome, RedriveOutcome::kMissing);
  EXPECT_EQ(Command({"XLEN", "ci-jobs"}).integer, length);
}

TEST_F(QueueAdminTest, KeepsEveryEarlierReasonAcrossTwoRedrives) {
  DeadLetterAfterRequeue("twice");
  QueueAdmin admin = Admin();
  ASSERT_OK(admin.Redrive(OnlyDeadLetterId(), false).status());
  JobQueue queue = Queue();
  ASSERT_OK_AND_ASSIGN(ClaimedJob claim, queue.Claim(absl::ZeroDuration()));
  ASSERT_OK(queue.Requeue(claim, "agent failure"));
  ASSERT_THAT(queue.Claim(absl::ZeroDuration()),
              StatusIs(absl::StatusCode::kDeadlineExceeded));
  const std::string second = OnlyDeadLetterId();
  ASSERT_OK(admin.Redrive(second, false).status());

  ASSERT_OK_AND_ASSIGN(JobRecord job, admin.GetJob("twice"));
  const std::string earlier(job.Get("earlier_reasons"));
  EXPECT_THAT(earlier, HasSubstr(second));
  EXPECT_LT(earlier.find("delivered 2 times"), earlier.rfind("delivered 2 times"))
      << earlier;
}

TEST_F(QueueAdminTest, RedriveRefusesAStillMalformedJobWithItsReason) {
  ASSERT_OK(Queue().EnsureGroup());
  Job bad = testing::ExampleJob("bad-commit");
  bad.commit = "not-hex";
  Command({"XADD", "ci-jobs", "*", "job", JobToJson(bad)});
  EXPECT_THAT(Queue().Claim(absl::ZeroDuration()),
              StatusIs(absl::StatusCode::kDeadlineExceeded));
  const std::string dead_id = OnlyDeadLetterId();

  ASSERT_OK_AND_ASSIGN(RedriveResult result, Admin().Redrive(dead_id, false));
  EXPECT_EQ(result.outcome, RedriveOutcome::kRefused);
  EXPECT_THAT(result.reason, HasSubstr("malformed job: commit"));
  EXPECT_EQ(OnlyDeadLetterId(), dead_id);
}

TEST_F(QueueAdminTest, RedriveRefusesATruncatedDeadLetter) {
  Command({"XADD", "ci-jobs:dead", "*", "job", JobToJson(testing::ExampleJob("cut")),
           "dead_reason", "oversized entry", "dead_truncated", "1"});
  ASSERT_OK_AND_ASSIGN(RedriveResult result,
                       Admin().Redrive(OnlyDeadLetterId(), false));
  EXPECT_EQ(result.outcome, RedriveOutcome::kRefused);
  EXPECT_THAT(result.reason, HasSubstr("dead_truncated"));
}

TEST_F(QueueAdminTest, RedriveRefusesAJobThatIsQueuedAgain) {
  DeadLetterAfterRequeue("back");
  ASSERT_OK(Queue().Enqueue(testing::ExampleJob("back")).status());
  const int64_t length = Command({"XLEN", "ci-jobs"}).integer;
  ASSERT_OK_AND_ASSIGN(RedriveResult result,
                       Admin().Redrive(OnlyDeadLetterId(), false));
  EXPECT_EQ(result.outcome, RedriveOutcome::kRefused);
  EXPECT_THAT(result.reason, HasSubstr("job back is queued again"));
  EXPECT_EQ(Command({"XLEN", "ci-jobs"}).integer, length);
}

TEST_F(QueueAdminTest, RedriveAllDryRunJudgesEveryDeadLetterAndChangesNothing) {
  DeadLetterAfterRequeue("good");
  Command({"XADD", "ci-jobs:dead", "*", "dead_reason", "no job"});
  ASSERT_OK_AND_ASSIGN(std::vector<RedriveResult> results,
                       Admin().RedriveAll(true));
  ASSERT_EQ(results.size(), 2u);
  EXPECT_EQ(results[0].outcome, RedriveOutcome::kWouldRedrive);
  EXPECT_EQ(results[1].outcome, RedriveOutcome::kRefused);
  EXPECT_EQ(results[1].reason, "malformed entry: no `job` field");
  EXPECT_EQ(Command({"XLEN", "ci-jobs:dead"}).integer, 2);

  ASSERT_OK_AND_ASSIGN(results, Admin().RedriveAll(false));
  EXPECT_EQ(results[0].outcome, RedriveOutcome::kRedriven);
  EXPECT_EQ(Command({"XLEN", "ci-jobs:dead"}).integer, 1);
}

TEST_F(QueueAdminTest, PurgeRemovesOnlyDeadLettersOlderThanTheAge) {
  const int64_t now_ms = absl::ToUnixMillis(absl::Now());
  const int64_t day_ms = 24 * 3600 * 1000;
  Command({"XADD", "ci-jobs:dead", absl::StrCat(now_ms - 10 * day_ms, "-0"),
           "dead_reason", "old"});
  Command({"XADD", "ci-jobs:dead", absl::StrCat(now_ms - 1 * day_ms, "-0"),
           "dead_reason", "recent"});
  QueueAdmin admin = Admin();
  EXPECT_THAT(admin.PurgeDeadLetters(absl::Hours(7 * 24), true),
              ::ciagent::testing::IsOkAndHolds(1));
  EXPECT_EQ(Command({"XLEN", "ci-jobs:dead"}).integer, 2);
  EXPECT_THAT(admin.PurgeDeadLetters(absl::Hours(7 * 24), false),
              ::ciagent::testing::IsOkAndHolds(1));
  ASSERT_OK_AND_ASSIGN(std::vector<DeadLetter> left, admin.ListDeadLetters(10));
  ASSERT_EQ(left.size(), 1u);
  EXPECT_EQ(left[0].Get("dead_reason"), "recent");
}

}  // namespace
}  // namespace ciagent
