// Redis Sentinel against real servers: one master, two replicas, three
// sentinels (down-after-milliseconds 1000). How the client finds the
// master, the errors that tell a wrong address from a wrong master name,
// and a claimed job carried through the three failovers operators see:
// SENTINEL FAILOVER, a SIGKILLed master, and a master frozen (SIGSTOP) that
// comes back believing it is still the master (the READONLY path).
#include <functional>
#include <map>
#include <string>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "ciagent/base/backoff.h"
#include "ciagent/queue/job_log.h"
#include "ciagent/queue/job_queue.h"
#include "ciagent/queue/lease_renewer.h"
#include "ciagent/queue/redis_client.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "testing/queue_fixtures.h"
#include "testing/redis_sentinel.h"
#include "testing/redis_server.h"
#include "testing/status_matchers.h"

namespace ciagent {
namespace {

using ::ciagent::testing::StatusIs;
using ::testing::AllOf;
using ::testing::HasSubstr;

// As the agent writes what it must not lose (agent/queued_build.cc):
// retried while transient, for up to `budget`.
absl::Status RetryTransient(const std::function<absl::Status()>& write,
                            absl::Duration budget = absl::Seconds(30)) {
  Backoff backoff;
  const absl::Time deadline = absl::Now() + budget;
  for (;;) {
    absl::Status status = write();
    if (status.ok() || status.code() != absl::StatusCode::kUnavailable ||
        absl::Now() >= deadline) {
      return status;
    }
    absl::SleepFor(backoff.Next());
  }
}

class RedisSentinelTest : public ::testing::Test {
 protected:
  void SetUp() override {
    testing::SentinelGroupOptions options;
    options.password = "data-password";
    options.sentinel_password = "sentinel-password";
    CIAGENT_START_SENTINEL_GROUP(started, options);
    group_ = std::move(started);
    redis_ = group_->options();
    // A frozen server is noticed within two seconds, not ten.
    redis_.command_timeout = absl::Seconds(2);
  }

  QueueOptions Queue(absl::string_view consumer) const {
    QueueOptions options;
    options.consumer = std::string(consumer);
    // Longer than any failover here: none may cost the lease.
    options.lease = absl::Seconds(20);
    options.renew_interval = absl::Milliseconds(200);
    return options;
  }

  std::string Status(absl::string_view job_id) {
    RedisClient client(redis_);
    absl::StatusOr<RedisReply> status = RetryValue(client, {"HGET",
        QueueOptions().StatusKey(job_id), "status"});
    return status.ok() ? status->str : status.status().ToString();
  }

  int64_t Pending() {
    RedisClient client(redis_);
    absl::StatusOr<RedisReply> pending =
        RetryValue(client, {"XPENDING", "ci-jobs", "ci-workers"});
    return pending.ok() ? pending->elements[0].integer : -1;
  }

  static absl::StatusOr<RedisReply> RetryValue(
      RedisClient& client, std::initializer_list<absl::string_view> command) {
    absl::StatusOr<RedisReply> reply;
    absl::Status done = RetryTransient([&] {
      reply = client.Command(command);
      return reply.status();
    });
    return reply;
  }

  // Enqueues job `id` and claims it as agent-1, renewing in the background.
  void EnqueueAndClaim(absl::string_view id) {
    JobQueue producer(redis_, QueueOptions{});
    ASSERT_OK(producer.Enqueue(testing::ExampleJob(id)).status());
    agent_ = std::make_unique<JobQueue>(redis_, Queue("agent-1"));
    ASSERT_OK_AND_ASSIGN(claim_, agent_->Claim(absl::Seconds(1)));
    ASSERT_EQ(claim_.job.job_id, id);
    renewer_ = std::make_unique<LeaseRenewer>(redis_, Queue("agent-1"), claim_);
  }

  // Renewals go on on the new master; then the job is finalized once, with
  // one terminal status.
  void ExpectRenewedAndFinalized(absl::string_view id) {
    const int before = renewer_->renewals();
    const absl::Time deadline = absl::Now() + absl::Seconds(15);
    while (renewer_->renewals() < before + 3 && absl::Now() < deadline) {
      absl::SleepFor(absl::Milliseconds(50));
    }
    EXPECT_GE(renewer_->renewals(), before + 3) << "renewals stopped";
    EXPECT_FALSE(renewer_->lease_lost());
    renewer_->Stop();
    EXPECT_OK(RetryTransient(
        [&] { return agent_->Finalize(claim_, {JobStatus::kSuccess}); }));
    EXPECT_EQ(Status(id), "success");
    EXPECT_EQ(Pending(), 0);
  }

  std::unique_ptr<testing::SentinelGroup> group_;
  RedisOptions redis_;
  std::unique_ptr<JobQueue> agent_;
  ClaimedJob claim_;
  std::unique_ptr<LeaseRenewer> renewer_;
};

TEST_F(RedisSentinelTest, ConnectsToTheMasterTheSentinelsName) {
  RedisClient client(redis_);
  ASSERT_OK_AND_ASSIGN(RedisReply role, client.Command({"ROLE"}));
  EXPECT_EQ(role.elements[0].str, "master");
  ASSERT_OK_AND_ASSIGN(int master, group_->MasterPort());
  EXPECT_EQ(client.server(), absl::StrCat("127.0.0.1:", master));
  EXPECT_EQ(RedactedRedisUrl(redis_), group_->url() + "/0");
}

TEST_F(RedisSentinelTest, ADeadSentinelIsSkipped) {
  group_->sentinels()[0]->Kill();
  RedisClient client(redis_);
  EXPECT_OK(client.Command({"SET", "k", "v"}).status());
}

TEST_F(RedisSentinelTest, NoSentinelReachableIsUnavailableAndSaysSo) {
  ASSERT_OK_AND_ASSIGN(int closed_a, testing::PickFreePort());
  ASSERT_OK_AND_ASSIGN(int closed_b, testing::PickFreePort());
  ASSERT_OK_AND_ASSIGN(
      RedisOptions options,
      RedisOptionsFromUrl(absl::StrCat("redis+sentinel://127.0.0.1:", closed_a,
                                       ",127.0.0.1:", closed_b, "/mymaster")));
  RedisClient client(options);
  EXPECT_THAT(client.Command({"PING"}),
              StatusIs(absl::StatusCode::kUnavailable,
                       AllOf(HasSubstr("no sentinel reachable for master "
                                       "\"mymaster\""),
                             HasSubstr(absl::StrCat(closed_a)),
                             HasSubstr(absl::StrCat(closed_b)))));
}

TEST_F(RedisSentinelTest, UnknownMasterNameIsAConfigurationError) {
  RedisOptions options = redis_;
  options.master_name = "mymastr";
  RedisClient client(options);
  EXPECT_THAT(client.Command({"PING"}),
              StatusIs(absl::StatusCode::kFailedPrecondition,
                       HasSubstr("do not know a master \"mymastr\"")));
}

TEST_F(RedisSentinelTest, WrongSentinelPasswordIsUnauthenticated) {
  RedisOptions options = redis_;
  options.sentinel_password = "not-the-password";
  RedisClient client(options);
  absl::StatusOr<RedisReply> reply = client.Command({"PING"});
  EXPECT_THAT(reply, StatusIs(absl::StatusCode::kUnauthenticated,
                              HasSubstr("no sentinel gave the address")));
  EXPECT_THAT(reply.status().message(),
              ::testing::Not(HasSubstr("not-the-password")));
}

TEST_F(RedisSentinelTest, SentinelPasswordFromTheEnvironment) {
  ASSERT_OK_AND_ASSIGN(RedisOptions options, RedisOptionsFromUrl(group_->url()));
  setenv("REDIS_SENTINEL_PASSWORD", "sentinel-password", 1);
  setenv("REDIS_PASSWORD", "data-password", 1);
  absl::Status applied = ApplyRedisEnvironment(&options);
  unsetenv("REDIS_SENTINEL_PASSWORD");
  unsetenv("REDIS_PASSWORD");
  ASSERT_OK(applied);
  RedisClient client(options);
  EXPECT_OK(client.Command({"PING"}).status());
}

TEST_F(RedisSentinelTest, ClaimRenewFinalizeAcrossSentinelFailover) {
  EnqueueAndClaim("failover-1");
  ASSERT_OK_AND_ASSIGN(int old_master, group_->MasterPort());
  ASSERT_OK(group_->Failover());
  // Until the sentinels reconfigure it, the old master still takes writes
  // that the failover then discards (Redis replication is asynchronous:
  // docs/reliability.md). The job's writes come after.
  ASSERT_OK(group_->WaitUntilReplica(old_master, absl::Seconds(30)));
  ExpectRenewedAndFinalized("failover-1");
}

TEST_F(RedisSentinelTest, ClaimRenewFinalizeAcrossAKilledMaster) {
  EnqueueAndClaim("killed-1");
  ASSERT_OK_AND_ASSIGN(int old_master, group_->MasterPort());
  // WAIT: the claim is on the replicas before the master dies.
  RedisClient client(redis_);
  ASSERT_OK_AND_ASSIGN(RedisReply acknowledged,
                       client.Command({"WAIT", "2", "2000"}));
  ASSERT_EQ(acknowledged.integer, 2);
  group_->server(old_master)->Kill();
  ASSERT_OK(group_->WaitForNewMaster(old_master, absl::Seconds(30)));
  ExpectRenewedAndFinalized("killed-1");
}

TEST_F(RedisSentinelTest, AFrozenMasterThatComesBackRefusesWritesAndIsLeft) {
  EnqueueAndClaim("frozen-1");
  ASSERT_OK_AND_ASSIGN(int old_master, group_->MasterPort());
  RedisClient client(redis_);
  ASSERT_OK(client.Command({"WAIT", "2", "2000"}).status());
  // `idle` stays connected to the old master through all of it.
  RedisClient idle(redis_);
  ASSERT_OK(idle.Command({"SET", "before", "1"}).status());
  testing::RedisServer* frozen = group_->server(old_master);
  frozen->Pause();
  ASSERT_OK(group_->WaitForNewMaster(old_master, absl::Seconds(30)));
  frozen->Resume();
  // The sentinels turn it into a replica of the new master, closing its
  // clients' connections; a write that slips in first gets READONLY.
  ASSERT_OK(group_->WaitUntilReplica(old_master, absl::Seconds(30)));
  ASSERT_EQ(idle.server(), absl::StrCat("127.0.0.1:", old_master));
  EXPECT_THAT(idle.Command({"SET", "after", "1"}),
              StatusIs(absl::StatusCode::kUnavailable));
  EXPECT_FALSE(idle.connected());
  ASSERT_OK(idle.Command({"SET", "after", "1"}).status());
  EXPECT_NE(idle.server(), absl::StrCat("127.0.0.1:", old_master));
  ExpectRenewedAndFinalized("frozen-1");
}

TEST_F(RedisSentinelTest, AReadonlyReplyDropsTheConnectionAndTheNextResolves) {
  // A connection that outlives its server's demotion (no sentinel closed
  // it): its writes are refused with READONLY, from a command or a script.
  ASSERT_OK_AND_ASSIGN(int master, group_->MasterPort());
  RedisClient client(redis_);
  ASSERT_OK(client.Command({"PING"}).status());
  for (testing::RedisServer* sentinel : group_->sentinels()) sentinel->Pause();
  RedisOptions direct;
  direct.port = master;
  direct.password = "data-password";
  RedisClient admin(direct);
  ASSERT_OK_AND_ASSIGN(RedisReply replicas, admin.Command({"ROLE"}));
  const int replica = std::stoi(replicas.elements[2].elements[0].elements[1].str);
  ASSERT_OK(admin.Command({"REPLICAOF", "127.0.0.1", absl::StrCat(replica)})
                .status());
  EXPECT_THAT(client.Eval(RedisScript("return redis.call('SET', KEYS[1], 'x')"),
                          {"k"}, {}),
              StatusIs(absl::StatusCode::kUnavailable, HasSubstr("READONLY")));
  EXPECT_FALSE(client.connected());
  ASSERT_OK(admin.Command({"REPLICAOF", "NO", "ONE"}).status());
  for (testing::RedisServer* sentinel : group_->sentinels()) sentinel->Resume();
  EXPECT_OK(client.Command({"SET", "k", "y"}).status());
}

TEST_F(RedisSentinelTest, LogLinesTheNewMasterLacksAreSentAgainWithTheirSeq) {
  ClaimedJob claim;
  claim.job = testing::ExampleJob("log-1");
  claim.attempt = 1;
  RedisClient writer(redis_);
  JobLog log(&writer, QueueOptions{}, claim);
  ASSERT_OK(log.Append({{"test", "stdout", "one"}, {"test", "stdout", "two"},
                        {"test", "stdout", "three"}, {"test", "stdout", "four"}}));
  ASSERT_OK_AND_ASSIGN(int old_master, group_->MasterPort());
  RedisClient check(redis_);
  ASSERT_OK(check.Command({"WAIT", "2", "2000"}).status());
  ASSERT_OK(group_->Failover());
  ASSERT_OK(group_->WaitUntilReplica(old_master, absl::Seconds(30)));
  // What a write to the old master in the failover window looks like on
  // the new one: the last lines are not there.
  const std::string key = QueueOptions().LogKey("log-1");
  ASSERT_OK_AND_ASSIGN(RedisReply stored,
                       RetryValue(check, {"XRANGE", key, "-", "+"}));
  ASSERT_EQ(stored.elements.size(), 4u);
  ASSERT_OK(check.Command({"XDEL", key, stored.elements[2].elements[0].str,
                           stored.elements[3].elements[0].str})
                .status());

  ASSERT_OK(log.ConfirmOnCurrentMaster());
  ASSERT_OK_AND_ASSIGN(RedisReply after, check.Command({"XRANGE", key, "-", "+"}));
  std::vector<std::string> seqs, lines;
  for (const RedisReply& entry : after.elements) {
    const auto& kv = entry.elements[1].elements;
    for (size_t i = 0; i + 1 < kv.size(); i += 2) {
      if (kv[i].str == "seq") seqs.push_back(kv[i + 1].str);
      if (kv[i].str == "line") lines.push_back(kv[i + 1].str);
    }
  }
  EXPECT_THAT(seqs, ::testing::ElementsAre("1", "2", "3", "4"));
  EXPECT_THAT(lines, ::testing::ElementsAre("one", "two", "three", "four"));
  // Later lines go on from there.
  ASSERT_OK(log.Append({{"test", "stdout", "five"}}));
  EXPECT_EQ(log.next_seq(), 6);
}

TEST(RedisSentinelWithoutPasswordsTest, NeitherSentinelsNorServersAskForOne) {
  CIAGENT_START_SENTINEL_GROUP(group, testing::SentinelGroupOptions{});
  ASSERT_OK_AND_ASSIGN(RedisOptions options, RedisOptionsFromUrl(group->url()));
  RedisClient client(options);
  ASSERT_OK(client.Command({"SET", "k", "v"}).status());
  ASSERT_OK_AND_ASSIGN(int master, group->MasterPort());
  EXPECT_EQ(client.server(), absl::StrCat("127.0.0.1:", master));
}

TEST_F(RedisSentinelTest, DurableWritesWaitForReplicas) {
  RedisOptions durable = redis_;
  durable.min_replicas = 2;
  JobQueue producer(durable, QueueOptions{});
  const int64_t before = UnconfirmedRedisWrites();
  ASSERT_OK(producer.Enqueue(testing::ExampleJob("durable-1")).status());
  EXPECT_EQ(UnconfirmedRedisWrites(), before);
  // Three replicas cannot confirm: a warning and a count, not an error.
  durable.min_replicas = 3;
  durable.replica_timeout = absl::Milliseconds(200);
  JobQueue wanting(durable, QueueOptions{});
  ASSERT_OK(wanting.Enqueue(testing::ExampleJob("durable-2")).status());
  EXPECT_EQ(UnconfirmedRedisWrites(), before + 1);
}

}  // namespace
}  // namespace ciagent
