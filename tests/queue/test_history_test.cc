// TestHistoryStore against a real redis-server: outcomes per branch over
// several runs, the failing streak, one commit that both passed and failed,
// the bounds, the expiry, and one Cluster slot per repository.
#include "ciagent/queue/test_history.h"

#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "testing/redis_server.h"
#include "testing/status_matchers.h"

namespace ciagent {
namespace {

using ::ciagent::testing::StatusIs;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;

constexpr char kRepo[] = "https://git.example.com/acme/app.git";
constexpr char kCommitA[] = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
constexpr char kCommitB[] = "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";
constexpr char kCommitC[] = "cccccccccccccccccccccccccccccccccccccccc";

using Outcome = TestRun::Outcome;

class TestHistoryTest : public ::testing::Test {
 protected:
  void SetUp() override {
    CIAGENT_START_REDIS(started);
    server_ = std::move(started);
    ASSERT_OK_AND_ASSIGN(redis_, RedisOptionsFromUrl(server_->url()));
  }

  RedisReply Command(std::initializer_list<absl::string_view> argv) {
    RedisClient client(redis_);
    absl::StatusOr<RedisReply> reply = client.Command(argv);
    EXPECT_OK(reply.status());
    return reply.value_or(RedisReply{});
  }

  std::unique_ptr<::ciagent::testing::RedisServer> server_;
  RedisOptions redis_;
};

TEST_F(TestHistoryTest, KeysOfOneRepositoryShareAHashTag) {
  const std::string id = TestHistoryRepoId(kRepo);
  EXPECT_EQ(id.size(), 16u);
  EXPECT_EQ(QuarantineKey(kRepo), absl::StrCat("ci:tests:{", id, "}:quarantine"));
  EXPECT_EQ(TestHistoryKey(kRepo, "feature/x"),
            absl::StrCat("ci:tests:{", id, "}:history:feature/x"));
}

TEST_F(TestHistoryTest, ReadsTheOperatorsQuarantineSorted) {
  TestHistoryStore store(redis_, {});
  ASSERT_OK_AND_ASSIGN(std::vector<std::string> none,
                       store.ReadQuarantine(kRepo));
  EXPECT_THAT(none, IsEmpty());
  Command({"SADD", QuarantineKey(kRepo), "tests::slow", "api::flaky one"});
  EXPECT_THAT(store.ReadQuarantine(kRepo),
              ::ciagent::testing::IsOkAndHolds(
                  ElementsAre("api::flaky one", "tests::slow")));
  EXPECT_THAT(store.ReadQuarantine("https://other.example.com/x.git"),
              ::ciagent::testing::IsOkAndHolds(IsEmpty()));
}

TEST_F(TestHistoryTest, CountsFailuresAndRemembersWhereTheStreakBegan) {
  TestHistoryStore store(redis_, {});
  const auto record = [&](const char* commit, Outcome outcome) {
    absl::StatusOr<std::vector<TestHistoryRecord>> records =
        store.Record(kRepo, "main", commit,
                     std::vector<TestRun>{{"tests::net", outcome},
                                          {"tests::ok", Outcome::kPassed}});
    EXPECT_OK(records.status());
    return records.value_or(std::vector<TestHistoryRecord>(2))[0];
  };
  TestHistoryRecord net = record(kCommitA, Outcome::kPassed);
  EXPECT_EQ(net.runs, 1);
  EXPECT_EQ(net.failed, 0);
  EXPECT_EQ(net.failing_since, "");

  net = record(kCommitB, Outcome::kFailed);
  EXPECT_EQ(net.runs, 2);
  EXPECT_EQ(net.failed, 1);
  EXPECT_EQ(net.failing_since, kCommitB);
  EXPECT_FALSE(net.passed_and_failed_on_commit);

  // Still failing on the next commit: the streak began on B.
  net = record(kCommitC, Outcome::kFlaky);
  EXPECT_EQ(net.failed, 2);
  EXPECT_EQ(net.failing_since, kCommitB);
  EXPECT_TRUE(net.passed_and_failed_on_commit);  // flaky: both, by itself

  net = record(kCommitC, Outcome::kPassed);
  EXPECT_EQ(net.runs, 4);
  EXPECT_EQ(net.failed, 2);
  EXPECT_EQ(net.failing_since, "");

  // Another branch has its own history.
  ASSERT_OK_AND_ASSIGN(
      std::vector<TestHistoryRecord> other,
      store.Record(kRepo, "release", kCommitA,
                   std::vector<TestRun>{{"tests::net", Outcome::kFailed}}));
  EXPECT_EQ(other[0].runs, 1);
  EXPECT_EQ(other[0].failing_since, kCommitA);
}

TEST_F(TestHistoryTest, OneCommitThatPassedThenFailedIsFlaky) {
  TestHistoryStore store(redis_, {});
  const std::vector<TestRun> passed = {{"tests::racy", Outcome::kPassed}};
  const std::vector<TestRun> failed = {{"tests::racy", Outcome::kFailed}};
  ASSERT_OK(store.Record(kRepo, "main", kCommitA, passed).status());
  ASSERT_OK(store.Record(kRepo, "main", kCommitB, failed).status());
  ASSERT_OK_AND_ASSIGN(std::vector<TestHistoryRecord> b_again,
                       store.Record(kRepo, "main", kCommitB, failed));
  EXPECT_FALSE(b_again[0].passed_and_failed_on_commit);  // failed twice on B
  ASSERT_OK_AND_ASSIGN(std::vector<TestHistoryRecord> a_again,
                       store.Record(kRepo, "main", kCommitA, failed));
  EXPECT_TRUE(a_again[0].passed_and_failed_on_commit);  // A passed before
  EXPECT_EQ(a_again[0].runs, 4);
  EXPECT_EQ(a_again[0].failed, 3);
}

TEST_F(TestHistoryTest, KeepsBoundedHistoryThatExpiresWhenUnused) {
  TestHistoryOptions options;
  options.max_outcomes = 5;
  options.max_commits = 2;
  options.max_tests = 3;
  options.ttl = absl::Hours(1);
  TestHistoryStore store(redis_, options);
  for (int i = 0; i < 8; ++i) {
    ASSERT_OK(store
                  .Record(kRepo, "main", absl::StrCat(kCommitA, i),
                          std::vector<TestRun>{{"a", Outcome::kFailed},
                                               {"b", Outcome::kPassed}})
                  .status());
  }
  const std::string key = TestHistoryKey(kRepo, "main", options);
  const RedisReply a = Command({"HGET", key, "a"});
  EXPECT_EQ(a.str, absl::StrCat("FFFFF ", kCommitA, "0 ", kCommitA, "7:2 ",
                                kCommitA, "6:2"));
  const RedisReply ttl = Command({"TTL", key});
  EXPECT_GT(ttl.integer, 3500);
  EXPECT_LE(ttl.integer, 3600);

  // Past max_tests, only the latest run's tests stay.
  ASSERT_OK(store
                .Record(kRepo, "main", kCommitB,
                        std::vector<TestRun>{{"c", Outcome::kPassed},
                                             {"d", Outcome::kPassed}})
                .status());
  EXPECT_EQ(Command({"HLEN", key}).integer, 2);
  EXPECT_EQ(Command({"HEXISTS", key, "c"}).integer, 1);
}

TEST_F(TestHistoryTest, RefusesMissingIdentityAndReportsAnUnreachableServer) {
  TestHistoryStore store(redis_, {});
  EXPECT_THAT(store.Record(kRepo, "", kCommitA, {}),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("branch")));
  ASSERT_OK(server_->Stop());
  EXPECT_THAT(store.ReadQuarantine(kRepo),
              StatusIs(absl::StatusCode::kUnavailable,
                       HasSubstr("read quarantine ci:tests:{")));
  EXPECT_THAT(store.Record(kRepo, "main", kCommitA,
                           std::vector<TestRun>{{"a", Outcome::kPassed}}),
              StatusIs(absl::StatusCode::kUnavailable,
                       HasSubstr("record test history")));
}

TEST_F(TestHistoryTest, ARetriedRecordOfOneRunCountsOnce) {
  TestHistoryStore store(redis_, {});
  const std::vector<TestRun> failed = {{"tests::flaky", TestRun::Outcome::kFailed}};
  ASSERT_OK_AND_ASSIGN(auto first, store.Record(kRepo, "main", kCommitA,
                                                  failed, "push-7#1"));
  ASSERT_OK_AND_ASSIGN(auto again, store.Record(kRepo, "main", kCommitA,
                                                  failed, "push-7#1"));
  EXPECT_EQ(first[0].runs, 1);
  EXPECT_EQ(again[0].runs, 1);
  EXPECT_EQ(again[0].failed, 1);
  EXPECT_EQ(again[0].failing_since, first[0].failing_since);
  // The next attempt is another run.
  ASSERT_OK_AND_ASSIGN(auto second, store.Record(kRepo, "main", kCommitA,
                                                   failed, "push-7#2"));
  EXPECT_EQ(second[0].runs, 2);
}

}  // namespace
}  // namespace ciagent
