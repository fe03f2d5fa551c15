// JobQueue against a real redis-server: claiming, leases, reclaim,
// dead letters, fencing, requeue, cancel and reconnects.
#include "ciagent/queue/job_queue.h"

#include <signal.h>

#include <map>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "ciagent/base/log.h"
#include "ciagent/queue/job_log.h"
#include "ciagent/queue/lease_renewer.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "testing/queue_fixtures.h"
#include "testing/redis_server.h"
#include "testing/status_matchers.h"

namespace ciagent {
namespace {

using ::ciagent::testing::StatusIs;
using ::testing::Contains;
using ::testing::HasSubstr;
using ::testing::Not;

class JobQueueTest : public ::testing::Test {
 protected:
  void SetUp() override { StartServer({}); }

  void StartServer(::ciagent::testing::RedisServerOptions server_options) {
    CIAGENT_START_REDIS_WITH(started, server_options);
    server_ = std::move(started);
    ASSERT_OK_AND_ASSIGN(redis_, RedisOptionsFromUrl(server_->url()));
    redis_.password = server_options.password;
  }

  QueueOptions Options(absl::string_view consumer) const {
    QueueOptions options;
    options.consumer = std::string(consumer);
    options.lease = absl::Milliseconds(400);
    options.renew_interval = absl::Milliseconds(100);
    return options;
  }

  JobQueue Queue(absl::string_view consumer) {
    return JobQueue(redis_, Options(consumer));
  }

  std::map<std::string, std::string> Status(absl::string_view job_id) {
    RedisClient client(redis_);
    auto reply = client.Command({"HGETALL", QueueOptions().StatusKey(job_id)});
    std::map<std::string, std::string> fields;
    if (!reply.ok()) return fields;
    for (size_t i = 0; i + 1 < reply->elements.size(); i += 2) {
      fields[reply->elements[i].str] = reply->elements[i + 1].str;
    }
    return fields;
  }

  int64_t PendingCount() {
    RedisClient client(redis_);
    auto reply = client.Command({"XPENDING", "ci-jobs", "ci-workers"});
    return reply.ok() ? reply->elements[0].integer : -1;
  }

  // Entries of the dead-letter stream, each as a field map.
  std::vector<std::map<std::string, std::string>> DeadLetters() {
    return testing::StreamEntries(redis_, "ci-jobs:dead");
  }


  // Bytes Redis has sent to all its clients so far.
  int64_t NetOutputBytes() {
    RedisClient client(redis_);
    auto reply = client.Command({"INFO", "stats"});
    if (!reply.ok()) return -1;
    for (absl::string_view line : absl::StrSplit(reply->str, "\r\n")) {
      int64_t value = 0;
      if (absl::ConsumePrefix(&line, "total_net_output_bytes:") &&
          absl::SimpleAtoi(line, &value)) {
        return value;
      }
    }
    return -1;
  }

  // Adds an entry of `fields`, then a good job, and claims: the claim gets
  // the good job while Redis sends the agent less than 64 KiB in all.
  void ExpectClaimPassesUnsent(std::vector<std::string> fields) {
    AddRawEntry(std::move(fields));
    ASSERT_OK(Queue("producer").Enqueue(testing::ExampleJob("good")).status());
    JobQueue queue = Queue("agent-a");
    const int64_t sent_before = NetOutputBytes();
    ASSERT_OK_AND_ASSIGN(ClaimedJob claim, queue.Claim(absl::ZeroDuration()));
    EXPECT_EQ(claim.job.job_id, "good");
    EXPECT_LT(NetOutputBytes() - sent_before, 64 * 1024);
  }

  void AddRawEntry(std::vector<std::string> fields) {
    RedisClient client(redis_);
    ASSERT_OK(Queue("producer").EnsureGroup());
    std::vector<std::string> argv = {"XADD", "ci-jobs", "*"};
    argv.insert(argv.end(), fields.begin(), fields.end());
    ASSERT_OK(client.Command(absl::MakeConstSpan(argv)).status());
  }

  std::unique_ptr<::ciagent::testing::RedisServer> server_;
  RedisOptions redis_;
};

TEST_F(JobQueueTest, ClaimsEnqueuedJobAndMarksItRunning) {
  JobQueue queue = Queue("agent-a");
  ASSERT_OK_AND_ASSIGN(std::string id, queue.Enqueue(testing::ExampleJob("j1")));
  EXPECT_EQ(Status("j1")["status"], "queued");

  ASSERT_OK_AND_ASSIGN(ClaimedJob claim, queue.Claim(absl::Seconds(1)));
  EXPECT_EQ(claim.job, testing::ExampleJob("j1"));
  EXPECT_EQ(claim.stream_id, id);
  EXPECT_EQ(claim.attempt, 1);
  auto status = Status("j1");
  EXPECT_EQ(status["status"], "running");
  EXPECT_EQ(status["consumer"], "agent-a");
  EXPECT_EQ(status["attempt"], "1");
  EXPECT_EQ(status["stream_id"], id);
  EXPECT_FALSE(status["started_at"].empty());
  EXPECT_EQ(PendingCount(), 1);
}

TEST_F(JobQueueTest, EnqueueIfNewAddsAJobOnceHoweverOftenItIsDelivered) {
  JobQueue producer = Queue("producer");
  ASSERT_OK_AND_ASSIGN(std::optional<std::string> first,
                       producer.EnqueueIfNew(testing::ExampleJob("push-1")));
  ASSERT_TRUE(first.has_value());
  // Redelivered while queued, while running, and after it finished.
  ASSERT_OK_AND_ASSIGN(std::optional<std::string> again,
                       producer.EnqueueIfNew(testing::ExampleJob("push-1")));
  EXPECT_FALSE(again.has_value());
  JobQueue agent = Queue("agent-a");
  ASSERT_OK_AND_ASSIGN(ClaimedJob claim, agent.Claim(absl::Seconds(1)));
  ASSERT_OK_AND_ASSIGN(again, producer.EnqueueIfNew(testing::ExampleJob("push-1")));
  EXPECT_FALSE(again.has_value());
  EXPECT_EQ(Status("push-1")["status"], "running");
  ASSERT_OK(agent.Finalize(claim, {JobStatus::kSuccess}));
  ASSERT_OK_AND_ASSIGN(again, producer.EnqueueIfNew(testing::ExampleJob("push-1")));
  EXPECT_FALSE(again.has_value());
  EXPECT_EQ(Status("push-1")["status"], "success");
  RedisClient client(redis_);
  ASSERT_OK_AND_ASSIGN(RedisReply length, client.Command({"XLEN", "ci-jobs"}));
  EXPECT_EQ(length.integer, 1);
  // Another job is enqueued as usual.
  ASSERT_OK_AND_ASSIGN(std::optional<std::string> other,
                       producer.EnqueueIfNew(testing::ExampleJob("push-2")));
  EXPECT_TRUE(other.has_value());
}

TEST_F(JobQueueTest, EmptyStreamHonoursWait) {
  JobQueue queue = Queue("agent-a");
  ASSERT_OK(queue.EnsureGroup());
  const absl::Time start = absl::Now();
  EXPECT_THAT(queue.Claim(absl::Seconds(1)),
              StatusIs(absl::StatusCode::kDeadlineExceeded));
  const absl::Duration waited = absl::Now() - start;
  EXPECT_GE(waited, absl::Seconds(1));
  EXPECT_LT(waited, absl::Seconds(3));
}

TEST_F(JobQueueTest, WaitingClaimTakesJobEnqueuedMeanwhile) {
  JobQueue queue = Queue("agent-a");
  ASSERT_OK(queue.EnsureGroup());
  std::thread producer([&] {
    absl::SleepFor(absl::Milliseconds(300));
    ASSERT_OK(Queue("producer").Enqueue(testing::ExampleJob("late")).status());
  });
  absl::StatusOr<ClaimedJob> claim = queue.Claim(absl::Seconds(10));
  producer.join();
  ASSERT_OK(claim.status());
  EXPECT_EQ(claim->job.job_id, "late");
}

TEST_F(JobQueueTest, MissingGroupIsAConfigurationErrorUnlessCreateGroup) {
  JobQueue strict = Queue("agent-a");
  EXPECT_THAT(strict.Claim(absl::ZeroDuration()),
              StatusIs(absl::StatusCode::kFailedPrecondition,
                       HasSubstr("ci-workers")));
  QueueOptions options = Options("agent-a");
  options.create_group = true;
  JobQueue lenient(redis_, options);
  EXPECT_THAT(lenient.Claim(absl::ZeroDuration()),
              StatusIs(absl::StatusCode::kDeadlineExceeded));
}

TEST_F(JobQueueTest, JobsEnqueuedBeforeTheGroupExistsAreNotSkipped) {
  RedisClient client(redis_);
  ASSERT_OK(client
                .Command({"XADD", "ci-jobs", "*", "job",
                          JobToJson(testing::ExampleJob("early"))})
                .status());
  QueueOptions options = Options("agent-a");
  options.create_group = true;
  JobQueue queue(redis_, options);
  ASSERT_OK_AND_ASSIGN(ClaimedJob claim, queue.Claim(absl::Seconds(1)));
  EXPECT_EQ(claim.job.job_id, "early");
}

TEST_F(JobQueueTest, TwoConsumersNeverShareAnEntry) {
  constexpr int kJobs = 40;
  JobQueue producer = Queue("producer");
  for (int i = 0; i < kJobs; ++i) {
    ASSERT_OK(producer.Enqueue(testing::ExampleJob(absl::StrCat("job-", i))).status());
  }
  std::vector<std::string> taken[2];
  auto work = [&](int index) {
    JobQueue queue = Queue(absl::StrCat("agent-", index));
    while (true) {
      absl::StatusOr<ClaimedJob> claim = queue.Claim(absl::ZeroDuration());
      if (!claim.ok()) break;
      taken[index].push_back(claim->job.job_id);
      ASSERT_OK(queue.Finalize(*claim, {JobStatus::kSuccess}));
    }
  };
  std::thread a(work, 0), b(work, 1);
  a.join();
  b.join();
  std::set<std::string> all(taken[0].begin(), taken[0].end());
  for (const auto& id : taken[1]) {
    EXPECT_TRUE(all.insert(id).second) << id << " was claimed twice";
  }
  EXPECT_EQ(all.size(), static_cast<size_t>(kJobs));
  EXPECT_EQ(PendingCount(), 0);
}

TEST_F(JobQueueTest, ReclaimsJobOfKilledConsumerAfterLeaseExpires) {
  ASSERT_OK(Queue("producer").Enqueue(testing::ExampleJob("j1")).status());
  ASSERT_OK_AND_ASSIGN(std::string hold_job,
                       ::ciagent::testing::PathFromEnv("CIAGENT_HOLD_JOB"));
  ASSERT_OK_AND_ASSIGN(std::string dir,
                       ::ciagent::testing::MakeTempDir("ciagent-hold-"));
  const std::string out = dir + "/out";
  ASSERT_OK_AND_ASSIGN(
      auto holder, ::ciagent::testing::Subprocess::Start(
                       {hold_job, server_->url(), "ci-jobs", "ci-workers",
                        "agent-dies", "1000"},
                       {.stdout_path = out}));
  const absl::Time deadline = absl::Now() + absl::Seconds(10);
  while (::ciagent::testing::ReadFileOrEmpty(out).empty() &&
         absl::Now() < deadline) {
    absl::SleepFor(absl::Milliseconds(20));
  }
  ASSERT_THAT(::ciagent::testing::ReadFileOrEmpty(out), HasSubstr("claimed"));
  // While the holder lives and renews, nobody can take the job, even well
  // past its 1 s lease.
  QueueOptions survivor_options = Options("agent-b");
  survivor_options.lease = absl::Seconds(1);  // the lease the holder keeps
  JobQueue survivor(redis_, survivor_options);
  EXPECT_THAT(survivor.Claim(absl::Milliseconds(2500)),
              StatusIs(absl::StatusCode::kDeadlineExceeded));

  holder->Signal(SIGKILL);
  ASSERT_OK(holder->Wait().status());
  ASSERT_OK_AND_ASSIGN(ClaimedJob claim, survivor.Claim(absl::Seconds(5)));
  EXPECT_EQ(claim.job.job_id, "j1");
  EXPECT_EQ(claim.attempt, 2);
  EXPECT_EQ(Status("j1")["consumer"], "agent-b");
  ::ciagent::testing::RemoveTree(dir);
}

TEST_F(JobQueueTest, LeaseRenewalKeepsLongJobFromBeingReclaimed) {
  QueueOptions options = Options("agent-a");
  options.lease = absl::Seconds(1);
  options.renew_interval = absl::Milliseconds(300);
  JobQueue owner(redis_, options);
  ASSERT_OK(owner.Enqueue(testing::ExampleJob("long")).status());
  ASSERT_OK_AND_ASSIGN(ClaimedJob claim, owner.Claim(absl::Seconds(1)));
  {
    LeaseRenewer renewer(redis_, options, claim);
    QueueOptions thief_options = options;
    thief_options.consumer = "agent-b";
    JobQueue thief(redis_, thief_options);
    // A 5 s job: the other consumer keeps trying the whole time.
    EXPECT_THAT(thief.Claim(absl::Seconds(5)),
                StatusIs(absl::StatusCode::kDeadlineExceeded));
    EXPECT_FALSE(renewer.lease_lost());
    EXPECT_GE(renewer.renewals(), 10);
  }
  EXPECT_OK(owner.Finalize(claim, {JobStatus::kSuccess}));
  EXPECT_EQ(Status("long")["attempt"], "1");
}

TEST_F(JobQueueTest, DeadLettersJobDeliveredMoreThanMaxDeliveries) {
  QueueOptions options = Options("agent");
  options.max_deliveries = 2;
  options.lease = absl::Milliseconds(100);
  JobQueue queue(redis_, options);
  ASSERT_OK(queue.Enqueue(testing::ExampleJob("crashy")).status());
  RedisClient client(redis_);
  for (int attempt = 1; attempt <= 2; ++attempt) {
    ASSERT_OK_AND_ASSIGN(ClaimedJob claim, queue.Claim(absl::Seconds(2)));
    EXPECT_EQ(claim.attempt, attempt);
    // ... logs a line, and the agent dies without finalizing.
    ASSERT_OK(client.Command({"XADD", options.LogKey("crashy"), "*", "line",
                              "building"}));
  }
  absl::SleepFor(absl::Milliseconds(150));
  EXPECT_THAT(queue.Claim(absl::Milliseconds(300)),
              StatusIs(absl::StatusCode::kDeadlineExceeded));

  auto dead = DeadLetters();
  ASSERT_EQ(dead.size(), 1u);
  EXPECT_EQ(dead[0]["job"], JobToJson(testing::ExampleJob("crashy")));
  EXPECT_THAT(dead[0]["dead_reason"], HasSubstr("max_deliveries=2"));
  EXPECT_EQ(dead[0]["dead_deliveries"], "3");
  auto status = Status("crashy");
  EXPECT_EQ(status["status"], "error");
  EXPECT_THAT(status["reason"], HasSubstr("max_deliveries=2"));
  EXPECT_EQ(PendingCount(), 0);
  // The attempts' log expires with the status, not never.
  ASSERT_OK_AND_ASSIGN(RedisReply ttl,
                       client.Command({"TTL", options.LogKey("crashy")}));
  EXPECT_GT(ttl.integer, 6 * 24 * 3600);
}

TEST_F(JobQueueTest, DeadLettersMalformedJobAtOnceAndGoesOn) {
  AddRawEntry({"job", R"({"job_id":"bad-1","repo":"ftp://x","branch":"main",)"
                      R"("commit":")" + std::string(40, 'b') + "\"}"});
  AddRawEntry({"payload", "no job field"});
  ASSERT_OK(Queue("producer").Enqueue(testing::ExampleJob("good")).status());

  JobQueue queue = Queue("agent-a");
  // Even without waiting, the malformed entries ahead do not hide the job.
  ASSERT_OK_AND_ASSIGN(ClaimedJob claim, queue.Claim(absl::ZeroDuration()));
  EXPECT_EQ(claim.job.job_id, "good");

  auto dead = DeadLetters();
  ASSERT_EQ(dead.size(), 2u);
  EXPECT_THAT(dead[0]["dead_reason"], HasSubstr("repo"));
  EXPECT_EQ(dead[0]["dead_deliveries"], "1");
  EXPECT_THAT(dead[1]["dead_reason"], HasSubstr("no `job` field"));
  EXPECT_EQ(dead[1]["payload"], "no job field");
  EXPECT_EQ(Status("bad-1")["status"], "error");
  EXPECT_EQ(PendingCount(), 1);  // only "good", which is running
}

// A job document padded to `bytes`, with job_id as its first key.
std::string PaddedJobJson(absl::string_view id, size_t bytes) {
  std::string doc = JobToJson(testing::ExampleJob(id));
  doc.pop_back();  // the closing brace
  absl::StrAppend(&doc, R"(,"pad":")");
  doc.append(bytes > doc.size() + 2 ? bytes - doc.size() - 2 : 0, 'x');
  absl::StrAppend(&doc, "\"}");
  return doc;
}

TEST_F(JobQueueTest, DeadLettersOversizedEntryInsideRedisWithoutSendingIt) {
  QueueOptions options = Options("agent-a");
  options.max_entry_bytes = 64 * 1024;
  const std::string huge = PaddedJobJson("huge", 2 * 1024 * 1024);
  AddRawEntry({"job", huge});
  ASSERT_OK(Queue("producer").Enqueue(testing::ExampleJob("good")).status());

  JobQueue queue(redis_, options);
  const int64_t sent_before = NetOutputBytes();
  ASSERT_OK_AND_ASSIGN(ClaimedJob claim, queue.Claim(absl::ZeroDuration()));
  EXPECT_EQ(claim.job.job_id, "good");
  // Redis sent the agent the good job, not the 2 MiB one.
  EXPECT_LT(NetOutputBytes() - sent_before, 64 * 1024);

  auto dead = DeadLetters();
  ASSERT_EQ(dead.size(), 1u);
  const std::string size = absl::StrCat(huge.size() + 3);  // + "job"
  EXPECT_EQ(dead[0]["dead_reason"],
            absl::StrCat("oversized entry: ", size,
                         " bytes, more than max_entry_bytes=65536"));
  EXPECT_EQ(dead[0]["dead_entry_bytes"], size);
  EXPECT_EQ(dead[0]["dead_truncated"], "1");
  EXPECT_EQ(dead[0]["dead_deliveries"], "1");
  EXPECT_EQ(dead[0]["dead_consumer"], "agent-a");
  EXPECT_EQ(dead[0]["job"], huge.substr(0, 1024));
  auto status = Status("huge");
  EXPECT_EQ(status["status"], "error");
  EXPECT_THAT(status["reason"], HasSubstr("oversized entry"));
  EXPECT_FALSE(status["dead_letter_id"].empty());
  EXPECT_EQ(PendingCount(), 1);  // only "good", which is running
}

TEST_F(JobQueueTest, DeadLettersJobOverParserLimitInsideRedisWithoutSendingIt) {
  // Within max_entry_bytes (1 MiB) but over max_json_bytes (64 KiB).
  const std::string big = PaddedJobJson("big", 512 * 1024);
  ExpectClaimPassesUnsent({"job", big});

  auto dead = DeadLetters();
  ASSERT_EQ(dead.size(), 1u);
  EXPECT_EQ(dead[0]["dead_reason"],
            absl::StrCat("malformed job: job: document is ", big.size(),
                         " bytes; the limit is 65536"));
  EXPECT_EQ(dead[0]["dead_entry_bytes"], absl::StrCat(big.size() + 3));
  EXPECT_EQ(dead[0]["dead_truncated"], "1");
  EXPECT_EQ(dead[0]["job"], big.substr(0, 1024));
  auto status = Status("big");
  EXPECT_EQ(status["status"], "error");
  EXPECT_THAT(status["reason"], HasSubstr("the limit is 65536"));
  EXPECT_EQ(PendingCount(), 1);  // only "good", which is running
}

TEST_F(JobQueueTest, DeadLettersEntryWithoutJobInsideRedisWithoutSendingIt) {
  ExpectClaimPassesUnsent(
      {"payload", std::string(256 * 1024, 'p'), "note", "no job"});

  auto dead = DeadLetters();
  ASSERT_EQ(dead.size(), 1u);
  EXPECT_EQ(dead[0]["dead_reason"], "malformed entry: no `job` field");
  // Within max_entry_bytes: kept whole, to be fixed and re-added.
  EXPECT_EQ(dead[0]["payload"].size(), 256u * 1024);
  EXPECT_EQ(dead[0]["note"], "no job");
  EXPECT_EQ(dead[0].count("dead_truncated"), 0u);
  EXPECT_EQ(PendingCount(), 1);
}

TEST_F(JobQueueTest, FinalizeAndClaimNextDeadLettersEntriesWithoutOrOverLimitJob) {
  JobQueue queue = Queue("agent-a");
  ASSERT_OK(queue.Enqueue(testing::ExampleJob("j1")).status());
  ASSERT_OK_AND_ASSIGN(ClaimedJob first, queue.Claim(absl::Seconds(1)));
  AddRawEntry({"payload", "x"});
  ASSERT_OK_AND_ASSIGN(std::optional<ClaimedJob> next,
                       queue.FinalizeAndClaimNext(first, {JobStatus::kSuccess}));
  EXPECT_FALSE(next.has_value());
  AddRawEntry({"job", PaddedJobJson("big", 100 * 1024)});
  ASSERT_OK(queue.Enqueue(testing::ExampleJob("j2")).status());
  ASSERT_OK_AND_ASSIGN(ClaimedJob second, queue.Claim(absl::ZeroDuration()));
  EXPECT_EQ(second.job.job_id, "j2");
  auto dead = DeadLetters();
  ASSERT_EQ(dead.size(), 2u);
  EXPECT_EQ(dead[0]["dead_reason"], "malformed entry: no `job` field");
  EXPECT_THAT(dead[1]["dead_reason"], HasSubstr("the limit is 65536"));
  EXPECT_EQ(Status("big")["status"], "error");
}

TEST_F(JobQueueTest, WaitingClaimDeadLettersOversizedEntryEnqueuedMeanwhile) {
  QueueOptions options = Options("agent-a");
  options.max_entry_bytes = 64 * 1024;
  JobQueue queue(redis_, options);
  ASSERT_OK(queue.EnsureGroup());
  std::thread producer([&] {
    absl::SleepFor(absl::Milliseconds(300));
    AddRawEntry({"job", PaddedJobJson("huge", 2 * 1024 * 1024)});
    ASSERT_OK(Queue("producer").Enqueue(testing::ExampleJob("late")).status());
  });
  const int64_t sent_before = NetOutputBytes();
  absl::StatusOr<ClaimedJob> claim = queue.Claim(absl::Seconds(10));
  producer.join();
  ASSERT_OK(claim.status());
  EXPECT_EQ(claim->job.job_id, "late");
  EXPECT_LT(NetOutputBytes() - sent_before, 64 * 1024);
  EXPECT_EQ(DeadLetters().size(), 1u);
}

TEST_F(JobQueueTest, OversizedEntryWithoutLeadingJobIdLeavesNoStatusKey) {
  QueueOptions options = Options("agent-a");
  options.max_entry_bytes = 1024;
  AddRawEntry({"blob", std::string(4096, 'z'), "job",
               R"({"repo":"x","job_id":"later"})"});
  JobQueue queue(redis_, options);
  EXPECT_THAT(queue.Claim(absl::ZeroDuration()),
              StatusIs(absl::StatusCode::kDeadlineExceeded));
  auto dead = DeadLetters();
  ASSERT_EQ(dead.size(), 1u);
  EXPECT_EQ(dead[0]["blob"], std::string(1024, 'z'));
  EXPECT_TRUE(Status("later").empty());
  EXPECT_EQ(PendingCount(), 0);
}

TEST_F(JobQueueTest, FinalizeAndClaimNextDeadLettersAnOversizedNextEntry) {
  QueueOptions options = Options("agent-a");
  options.max_entry_bytes = 64 * 1024;
  JobQueue queue(redis_, options);
  ASSERT_OK(queue.Enqueue(testing::ExampleJob("j1")).status());
  ASSERT_OK_AND_ASSIGN(ClaimedJob first, queue.Claim(absl::Seconds(1)));
  AddRawEntry({"job", PaddedJobJson("huge", 128 * 1024)});
  ASSERT_OK_AND_ASSIGN(std::optional<ClaimedJob> next,
                       queue.FinalizeAndClaimNext(first, {JobStatus::kSuccess}));
  EXPECT_FALSE(next.has_value());
  EXPECT_EQ(Status("j1")["status"], "success");
  EXPECT_EQ(Status("huge")["status"], "error");
  EXPECT_EQ(DeadLetters().size(), 1u);
  EXPECT_EQ(PendingCount(), 0);
}

TEST_F(JobQueueTest, ZombieFinalizeIsRefusedAndWritesNothing) {
  QueueOptions options = Options("zombie");
  options.lease = absl::Milliseconds(100);
  JobQueue zombie(redis_, options);
  ASSERT_OK(zombie.Enqueue(testing::ExampleJob("j1")).status());
  ASSERT_OK_AND_ASSIGN(ClaimedJob old_claim, zombie.Claim(absl::Seconds(1)));
  absl::SleepFor(absl::Milliseconds(150));
  options.consumer = "agent-b";
  JobQueue fresh(redis_, options);
  ASSERT_OK_AND_ASSIGN(ClaimedJob new_claim, fresh.Claim(absl::Seconds(1)));
  ASSERT_EQ(new_claim.attempt, 2);

  EXPECT_THAT(zombie.Finalize(old_claim, {JobStatus::kFailed, "late", {}}),
              StatusIs(absl::StatusCode::kAborted, HasSubstr("agent-b")));
  EXPECT_THAT(zombie.Renew(old_claim), StatusIs(absl::StatusCode::kAborted));
  EXPECT_THAT(zombie.Requeue(old_claim, "late"),
              StatusIs(absl::StatusCode::kAborted));
  EXPECT_EQ(Status("j1")["status"], "running");
  EXPECT_EQ(PendingCount(), 1);

  EXPECT_OK(fresh.Finalize(new_claim, {JobStatus::kSuccess}));
  auto status = Status("j1");
  EXPECT_EQ(status["status"], "success");
  EXPECT_EQ(status["attempt"], "2");
  // Once finalized, a second finalize (a retry) is refused too: one result.
  EXPECT_THAT(fresh.Finalize(new_claim, {JobStatus::kFailed, "dup", {}}),
              StatusIs(absl::StatusCode::kAborted));
  EXPECT_EQ(Status("j1")["status"], "success");
}

TEST_F(JobQueueTest, ZombieOfSameConsumerNameIsFencedByAttempt) {
  QueueOptions options = Options("agent-a");
  options.lease = absl::Milliseconds(100);
  JobQueue queue(redis_, options);
  ASSERT_OK(queue.Enqueue(testing::ExampleJob("j1")).status());
  ASSERT_OK_AND_ASSIGN(ClaimedJob first, queue.Claim(absl::Seconds(1)));
  absl::SleepFor(absl::Milliseconds(150));
  ASSERT_OK_AND_ASSIGN(ClaimedJob second, queue.Claim(absl::Seconds(1)));
  EXPECT_THAT(queue.Finalize(first, {JobStatus::kSuccess}),
              StatusIs(absl::StatusCode::kAborted, HasSubstr("redelivered")));
  EXPECT_OK(queue.Finalize(second, {JobStatus::kSuccess}));
}

TEST_F(JobQueueTest, FinalizeWritesResultAcksAndExpiresKeys) {
  JobQueue queue = Queue("agent-a");
  ASSERT_OK(queue.Enqueue(testing::ExampleJob("j1")).status());
  ASSERT_OK_AND_ASSIGN(ClaimedJob claim, queue.Claim(absl::Seconds(1)));
  JobOutcome outcome{JobStatus::kFailed, "cargo test failed",
                     {{"tests_failed", "2"}}};
  ASSERT_OK(queue.Finalize(claim, outcome));
  auto status = Status("j1");
  EXPECT_EQ(status["status"], "failed");
  EXPECT_EQ(status["reason"], "cargo test failed");
  EXPECT_EQ(status["tests_failed"], "2");
  EXPECT_FALSE(status["finished_at"].empty());
  EXPECT_FALSE(status["duration_ms"].empty());
  EXPECT_EQ(PendingCount(), 0);
  RedisClient client(redis_);
  ASSERT_OK_AND_ASSIGN(RedisReply ttl,
                       client.Command({"TTL", QueueOptions().StatusKey("j1")}));
  EXPECT_GT(ttl.integer, 6 * 24 * 3600);
}

TEST_F(JobQueueTest, FinalizeAndClaimNextStartsTheNextJobInOneStep) {
  JobQueue queue = Queue("agent-a");
  ASSERT_OK(queue.Enqueue(testing::ExampleJob("j1")).status());
  ASSERT_OK(queue.Enqueue(testing::ExampleJob("j2")).status());
  ASSERT_OK_AND_ASSIGN(ClaimedJob first, queue.Claim(absl::Seconds(1)));
  ASSERT_OK_AND_ASSIGN(std::optional<ClaimedJob> next,
                       queue.FinalizeAndClaimNext(first, {JobStatus::kSuccess}));
  ASSERT_TRUE(next.has_value());
  EXPECT_EQ(next->job.job_id, "j2");
  EXPECT_EQ(Status("j1")["status"], "success");
  EXPECT_EQ(Status("j2")["status"], "running");
  EXPECT_EQ(Status("j2")["consumer"], "agent-a");
  ASSERT_OK_AND_ASSIGN(std::optional<ClaimedJob> none,
                       queue.FinalizeAndClaimNext(*next, {JobStatus::kSuccess}));
  EXPECT_FALSE(none.has_value());
  EXPECT_EQ(PendingCount(), 0);
}

TEST_F(JobQueueTest, FinalizeAndClaimNextByAZombieWritesAndClaimsNothing) {
  QueueOptions options = Options("zombie");
  options.lease = absl::Milliseconds(100);
  JobQueue zombie(redis_, options);
  ASSERT_OK(zombie.Enqueue(testing::ExampleJob("j1")).status());
  ASSERT_OK_AND_ASSIGN(ClaimedJob stale, zombie.Claim(absl::Seconds(1)));
  absl::SleepFor(absl::Milliseconds(150));
  ASSERT_OK(Queue("agent-b").Claim(absl::Seconds(1)).status());
  ASSERT_OK(zombie.Enqueue(testing::ExampleJob("j2")).status());
  EXPECT_THAT(zombie.FinalizeAndClaimNext(stale, {JobStatus::kSuccess}),
              StatusIs(absl::StatusCode::kAborted));
  EXPECT_EQ(Status("j1")["status"], "running");
  EXPECT_EQ(Status("j2")["status"], "queued");
}

TEST_F(JobQueueTest, FinalizeAndClaimNextDisposesOfAMalformedNextEntry) {
  JobQueue queue = Queue("agent-a");
  ASSERT_OK(queue.Enqueue(testing::ExampleJob("j1")).status());
  ASSERT_OK_AND_ASSIGN(ClaimedJob first, queue.Claim(absl::Seconds(1)));
  AddRawEntry({"job", R"({"job_id":"bad","repo":"x","branch":"main","commit":"y"})"});
  ASSERT_OK_AND_ASSIGN(std::optional<ClaimedJob> next,
                       queue.FinalizeAndClaimNext(first, {JobStatus::kSuccess}));
  EXPECT_FALSE(next.has_value());
  EXPECT_EQ(Status("bad")["status"], "error");
  EXPECT_EQ(DeadLetters().size(), 1u);
  EXPECT_EQ(PendingCount(), 0);
}

TEST_F(JobQueueTest, FinalizeRejectsNonTerminalStatus) {
  JobQueue queue = Queue("agent-a");
  ASSERT_OK(queue.Enqueue(testing::ExampleJob("j1")).status());
  ASSERT_OK_AND_ASSIGN(ClaimedJob claim, queue.Claim(absl::Seconds(1)));
  EXPECT_THAT(queue.Finalize(claim, {JobStatus::kRunning}),
              StatusIs(absl::StatusCode::kInvalidArgument));
}

TEST_F(JobQueueTest, RequeueMakesJobClaimableAtOnceKeepingAttemptCount) {
  JobQueue first = Queue("agent-a");  // lease 400 ms
  ASSERT_OK(first.Enqueue(testing::ExampleJob("j1")).status());
  ASSERT_OK_AND_ASSIGN(ClaimedJob claim, first.Claim(absl::Seconds(1)));
  ASSERT_OK(first.Requeue(claim, "SIGTERM"));
  auto status = Status("j1");
  EXPECT_EQ(status["status"], "queued");
  EXPECT_EQ(status["reason"], "requeued: SIGTERM");

  JobQueue second = Queue("agent-b");
  // Well under the lease: redelivery is prompt.
  ASSERT_OK_AND_ASSIGN(ClaimedJob again, second.Claim(absl::ZeroDuration()));
  EXPECT_EQ(again.stream_id, claim.stream_id);
  EXPECT_EQ(again.attempt, 2);
  EXPECT_EQ(Status("j1")["status"], "running");
}

TEST_F(JobQueueTest, CancelBeforeStartFinalizesAsCancelled) {
  JobQueue queue = Queue("agent-a");
  ASSERT_OK(queue.Enqueue(testing::ExampleJob("j1")).status());
  ASSERT_OK(queue.RequestCancel("j1", "superseded by a newer push"));
  EXPECT_THAT(queue.Claim(absl::ZeroDuration()),
              StatusIs(absl::StatusCode::kDeadlineExceeded));
  auto status = Status("j1");
  EXPECT_EQ(status["status"], "cancelled");
  EXPECT_THAT(status["reason"], HasSubstr("superseded by a newer push"));
  EXPECT_EQ(PendingCount(), 0);
}

TEST_F(JobQueueTest, RunningAgentSeesCancelThroughItsLeaseRenewer) {
  QueueOptions options = Options("agent-a");
  JobQueue queue(redis_, options);
  ASSERT_OK(queue.Enqueue(testing::ExampleJob("j1")).status());
  ASSERT_OK_AND_ASSIGN(ClaimedJob claim, queue.Claim(absl::Seconds(1)));
  LeaseRenewer renewer(redis_, options, claim);
  ASSERT_OK(Queue("api").RequestCancel("j1", "user pressed cancel"));
  EXPECT_TRUE(renewer.WaitForLossOrCancel(absl::Seconds(5)));
  EXPECT_TRUE(renewer.cancel_requested());
  EXPECT_EQ(renewer.cancel_reason(), "user pressed cancel");
  renewer.Stop();
  EXPECT_OK(queue.Finalize(claim, {JobStatus::kCancelled, "user pressed cancel", {}}));
  EXPECT_THAT(Queue("api").RequestCancel("j1", "again"),
              StatusIs(absl::StatusCode::kFailedPrecondition));
  EXPECT_THAT(Queue("api").RequestCancel("nope", "x"),
              StatusIs(absl::StatusCode::kNotFound));
}

TEST_F(JobQueueTest, LeaseRenewerReportsLossWhenJobIsTakenOver) {
  QueueOptions options = Options("agent-a");
  JobQueue queue(redis_, options);
  ASSERT_OK(queue.Enqueue(testing::ExampleJob("j1")).status());
  ASSERT_OK_AND_ASSIGN(ClaimedJob claim, queue.Claim(absl::Seconds(1)));
  LeaseRenewer renewer(redis_, options, claim);
  // Another party takes the entry by force (as XAUTOCLAIM would after a
  // long pause of this agent).
  RedisClient client(redis_);
  ASSERT_OK(client
                .Command({"XCLAIM", "ci-jobs", "ci-workers", "agent-b", "0",
                          claim.stream_id})
                .status());
  EXPECT_TRUE(renewer.WaitForLossOrCancel(absl::Seconds(5)));
  EXPECT_TRUE(renewer.lease_lost());
}

TEST_F(JobQueueTest, ReconnectsAndClaimsAfterRedisRestartWhileWaiting) {
  server_.reset();
  StartServer({.persistence = true});
  JobQueue queue = Queue("agent-a");
  ASSERT_OK(queue.EnsureGroup());
  std::thread chaos([&] {
    absl::SleepFor(absl::Milliseconds(400));
    ASSERT_OK(server_->Restart());
    ASSERT_OK(Queue("producer").Enqueue(testing::ExampleJob("after-restart")).status());
  });
  absl::StatusOr<ClaimedJob> claim = queue.Claim(absl::Seconds(20));
  chaos.join();
  ASSERT_OK(claim.status());
  EXPECT_EQ(claim->job.job_id, "after-restart");
}

// KEDA's lag trigger reads XINFO GROUPS `lag`; Redis 7.0 reports nil after a
// deletion past the group's last id and after a restart from the AOF.
TEST_F(JobQueueTest, EnqueueRepairsGroupLagAfterDeletionsAndAofRestart) {
  server_.reset();
  StartServer({.persistence = true});
  JobQueue producer = Queue("producer");
  std::vector<std::string> ids;
  for (int i = 0; i < 6; ++i) {
    ASSERT_OK_AND_ASSIGN(std::string id,
                         producer.Enqueue(testing::ExampleJob(absl::StrCat("j", i))));
    ids.push_back(id);
  }
  JobQueue agent = Queue("agent-a");
  for (int i = 0; i < 2; ++i) ASSERT_OK(agent.Claim(absl::Seconds(1)).status());
  RedisClient client(redis_);
  // Two undelivered entries deleted: 2 of 6 remain undelivered.
  ASSERT_OK(client.Command({"XDEL", "ci-jobs", ids[3], ids[5]}).status());
  const auto lag = [&]() -> std::optional<int64_t> {
    RedisClient c(redis_);
    auto reply = c.Command({"XINFO", "GROUPS", "ci-jobs"});
    if (!reply.ok() || reply->elements.empty()) return std::nullopt;
    const auto& g = reply->elements[0].elements;
    for (size_t i = 0; i + 1 < g.size(); i += 2) {
      if (g[i].str == "lag" && g[i + 1].type == RedisReply::Type::kInteger) {
        return g[i + 1].integer;
      }
    }
    return std::nullopt;
  };
  EXPECT_EQ(lag(), std::nullopt);  // what KEDA sees before the repair
  ASSERT_OK(server_->Restart());
  EXPECT_EQ(lag(), std::nullopt);

  JobQueue producer2 = Queue("producer");
  ASSERT_OK(producer2.Enqueue(testing::ExampleJob("after")).status());
  EXPECT_EQ(lag(), 3);  // j2, j4 and "after"

  // The counter survives reads and another restart: the claim script
  // writes it out with each read.
  JobQueue agent2 = Queue("agent-b");
  ASSERT_OK_AND_ASSIGN(ClaimedJob claim, agent2.Claim(absl::Seconds(1)));
  EXPECT_EQ(claim.job.job_id, "j2");
  EXPECT_EQ(lag(), 2);
  ASSERT_OK(server_->Restart());
  EXPECT_EQ(lag(), 2);
  ASSERT_OK(Queue("producer").Enqueue(testing::ExampleJob("last")).status());
  EXPECT_EQ(lag(), 3);
}

TEST_F(JobQueueTest, RedisThatGoesAwayDuringTheWaitIsWaitedForPastIt) {
  StartServer({.persistence = true});
  QueueOptions options = Options("agent-a");
  options.create_group = true;
  options.outage_grace = absl::Seconds(10);
  JobQueue queue(redis_, options);
  ASSERT_OK(queue.EnsureGroup());
  // Down from 0.3 s into a 1 s wait until 2 s: a failover, as agents see it.
  std::thread outage([&] {
    absl::SleepFor(absl::Milliseconds(300));
    server_->Kill();
    absl::SleepFor(absl::Milliseconds(1700));
    ASSERT_OK(server_->StartAgain());
  });
  const absl::Time start = absl::Now();
  EXPECT_THAT(queue.Claim(absl::Seconds(1)),
              StatusIs(absl::StatusCode::kDeadlineExceeded));
  EXPECT_GE(absl::Now() - start, absl::Seconds(2));
  outage.join();
}

TEST_F(JobQueueTest, RedisGoneForLongerThanTheOutageGraceIsUnavailable) {
  QueueOptions options = Options("agent-a");
  options.create_group = true;
  options.outage_grace = absl::Milliseconds(500);
  JobQueue queue(redis_, options);
  ASSERT_OK(queue.EnsureGroup());
  std::thread outage([&] {
    absl::SleepFor(absl::Milliseconds(300));
    server_->Kill();
  });
  EXPECT_THAT(queue.Claim(absl::Seconds(1)),
              StatusIs(absl::StatusCode::kUnavailable,
                       HasSubstr("longer than the outage grace")));
  outage.join();
}

TEST_F(JobQueueTest, RedisUnreachableForTheWholeWaitIsUnavailable) {
  JobQueue queue = Queue("agent-a");
  server_->Kill();
  const absl::Time start = absl::Now();
  EXPECT_THAT(queue.Claim(absl::Seconds(1)),
              StatusIs(absl::StatusCode::kUnavailable));
  EXPECT_GE(absl::Now() - start, absl::Seconds(1));
}

TEST_F(JobQueueTest, PasswordAuthWorksAndThePasswordIsNeverLogged) {
  server_.reset();
  const std::string password = "pa55-w0rd-for-tests";
  StartServer({.password = password});
  std::vector<std::string> lines;
  SetLogSinkForTesting([&](absl::string_view line) { lines.emplace_back(line); });
  ASSERT_OK_AND_ASSIGN(
      RedisOptions with_url_password,
      RedisOptionsFromUrl(absl::StrCat("redis://:", password, "@127.0.0.1:",
                                       server_->port())));
  JobQueue queue(with_url_password, Options("agent-a"));
  ASSERT_OK(queue.Enqueue(testing::ExampleJob("j1")).status());
  ASSERT_OK(queue.Claim(absl::Seconds(1)).status());

  RedisOptions wrong = redis_;
  wrong.password = "not-the-password";
  JobQueue rejected(wrong, Options("agent-b"));
  absl::StatusOr<ClaimedJob> claim = rejected.Claim(absl::Seconds(1));
  EXPECT_THAT(claim, StatusIs(absl::StatusCode::kUnauthenticated));
  LogError("claim failed", {{"error", claim.status()},
                            {"url", RedactedRedisUrl(with_url_password)}});
  SetLogSinkForTesting(nullptr);
  EXPECT_THAT(claim.status().message(), Not(HasSubstr(password)));
  ASSERT_FALSE(lines.empty());
  for (const std::string& line : lines) {
    EXPECT_THAT(line, Not(HasSubstr(password)));
  }
}

TEST_F(JobQueueTest, JobLogAppendsNumberedLinesWithAttempt) {
  JobQueue queue = Queue("agent-a");
  ASSERT_OK(queue.Enqueue(testing::ExampleJob("j1")).status());
  ASSERT_OK_AND_ASSIGN(ClaimedJob claim, queue.Claim(absl::Seconds(1)));
  JobLog log(&queue.redis(), queue.options(), claim);
  ASSERT_OK(log.Append({{"check", "stderr", "   Compiling app v0.1.0"},
                        {"check", "stdout", "done"}}));
  ASSERT_OK(log.Append({{"test", "stdout", "test result: ok"}}));
  EXPECT_EQ(log.next_seq(), 4);
  RedisClient client(redis_);
  ASSERT_OK_AND_ASSIGN(RedisReply entries,
                       client.Command({"XRANGE", "ci:job:{j1}:log", "-", "+"}));
  ASSERT_EQ(entries.elements.size(), 3u);
  const auto& first = entries.elements[0].elements[1].elements;
  std::vector<std::string> flat;
  for (const auto& e : first) flat.push_back(e.str);
  EXPECT_EQ(flat, (std::vector<std::string>{"seq", "1", "attempt", "1", "step",
                                            "check", "stream", "stderr", "line",
                                            "   Compiling app v0.1.0"}));
}

// ci-consume's fetch lines and ci-build's lines are one attempt's log: the
// second writer goes on from the first one's last `seq`; a new attempt
// starts again at 1.
TEST_F(JobQueueTest, JobLogWritersOfOneAttemptShareItsSequence) {
  JobQueue queue = Queue("agent-a");
  ASSERT_OK(queue.Enqueue(testing::ExampleJob("j1")).status());
  ASSERT_OK_AND_ASSIGN(ClaimedJob claim, queue.Claim(absl::Seconds(1)));
  {
    JobLog intake(&queue.redis(), queue.options(), claim);
    ASSERT_OK(intake.Append({{"fetch", "agent", "a"}, {"fetch", "agent", "b"}}));
  }
  JobLog build(&queue.redis(), queue.options(), claim);
  ASSERT_OK(build.Append({{"check", "stdout", "c"}}));
  EXPECT_EQ(build.next_seq(), 4);

  ClaimedJob next_attempt = claim;
  next_attempt.attempt = 2;
  JobLog retry(&queue.redis(), queue.options(), next_attempt);
  ASSERT_OK(retry.Append({{"fetch", "agent", "d"}}));
  EXPECT_EQ(retry.next_seq(), 2);
}

}  // namespace
}  // namespace ciagent
