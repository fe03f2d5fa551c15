// LogShipper against a real redis-server: what a reader of the job's log
// stream sees (order, numbering, caps, masking, gaps) and how the shipper
// behaves when Redis goes away and comes back.
#include "ciagent/agent/log_shipper.h"

#include <signal.h>

#include <map>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "ciagent/queue/job_queue.h"
#include "ciagent/queue/redis_client.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "testing/redis_server.h"
#include "testing/status_matchers.h"

namespace ciagent {
namespace {

using ::ciagent::testing::StatusIs;
using ::testing::HasSubstr;
using ::testing::Not;
using ::testing::StartsWith;

// One entry of the log stream, as a reader sees it.
struct LogEntry {
  int64_t seq = 0;
  std::string attempt;
  std::string step;
  std::string stream;
  std::string line;
};

ClaimedJob Claim() {
  ClaimedJob claim;
  claim.job.job_id = "push-42";
  claim.job.repo = "https://git.example.com/acme/app.git";
  claim.job.branch = "main";
  claim.job.commit = std::string(40, 'a');
  claim.attempt = 2;
  claim.consumer = "agent-a";
  return claim;
}

int64_t Sum(const std::vector<int64_t>& values) {
  int64_t sum = 0;
  for (int64_t v : values) sum += v;
  return sum;
}

class LogShipperTest : public ::testing::Test {
 protected:
  void SetUp() override {
    // A write to a connection whose server was killed must come back as
    // EPIPE, not end the test binary; the agent's main does the same.
    ::signal(SIGPIPE, SIG_IGN);
    StartServer({});
  }

  void StartServer(::ciagent::testing::RedisServerOptions server_options) {
    CIAGENT_START_REDIS_WITH(started, server_options);
    server_ = std::move(started);
    ASSERT_OK_AND_ASSIGN(redis_, RedisOptionsFromUrl(server_->url()));
  }

  std::unique_ptr<LogShipper> Shipper(LogShipperOptions options = {}) {
    return std::make_unique<LogShipper>(redis_, queue_, Claim(),
                                        std::move(options));
  }

  std::string Key() const { return queue_.LogKey("push-42"); }

  std::vector<LogEntry> ReadLog() {
    RedisClient client(redis_);
    std::vector<LogEntry> out;
    absl::StatusOr<RedisReply> reply =
        client.Command({"XRANGE", Key(), "-", "+"});
    EXPECT_OK(reply.status());
    if (!reply.ok()) return out;
    for (const RedisReply& entry : reply->elements) {
      std::map<std::string, std::string> fields;
      const auto& kv = entry.elements[1].elements;
      for (size_t i = 0; i + 1 < kv.size(); i += 2) {
        fields[kv[i].str] = kv[i + 1].str;
      }
      LogEntry e;
      EXPECT_TRUE(absl::SimpleAtoi(fields["seq"], &e.seq)) << fields["seq"];
      e.attempt = fields["attempt"];
      e.step = fields["step"];
      e.stream = fields["stream"];
      e.line = fields["line"];
      out.push_back(std::move(e));
    }
    return out;
  }

  std::vector<std::string> Lines() {
    std::vector<std::string> lines;
    for (const LogEntry& e : ReadLog()) lines.push_back(e.line);
    return lines;
  }

  int64_t StreamLength() {
    RedisClient client(redis_);
    absl::StatusOr<RedisReply> reply = client.Command({"XLEN", Key()});
    return reply.ok() ? reply->integer : -1;
  }

  static void ExpectStatsAddUp(const LogShipperStats& s) {
    EXPECT_EQ(s.lines_appended + s.markers,
              s.lines_sent + s.buffered + s.truncated + s.dropped);
  }

  std::unique_ptr<::ciagent::testing::RedisServer> server_;
  RedisOptions redis_;
  QueueOptions queue_;
};

TEST_F(LogShipperTest, LinesArriveInOrderWithSeqAttemptStepAndStream) {
  auto shipper = Shipper();
  // More than two batches' worth, over two steps and both streams.
  for (int i = 0; i < 1200; ++i) {
    shipper->Append(i < 600 ? "check" : "build",
                    i % 3 == 0 ? "stderr" : "stdout",
                    absl::StrCat("   Compiling crate-", i, " v0.1.0"));
  }
  ASSERT_OK(shipper->Flush());

  const std::vector<LogEntry> log = ReadLog();
  ASSERT_EQ(log.size(), 1200u);
  for (int i = 0; i < 1200; ++i) {
    SCOPED_TRACE(i);
    EXPECT_EQ(log[i].seq, i + 1);
    EXPECT_EQ(log[i].attempt, "2");
    EXPECT_EQ(log[i].step, i < 600 ? "check" : "build");
    EXPECT_EQ(log[i].stream, i % 3 == 0 ? "stderr" : "stdout");
    EXPECT_EQ(log[i].line, absl::StrCat("   Compiling crate-", i, " v0.1.0"));
  }
  ASSERT_OK(shipper->Close());
  const LogShipperStats stats = shipper->stats();
  EXPECT_EQ(stats.lines_appended, 1200);
  EXPECT_EQ(stats.lines_sent, 1200);
  EXPECT_EQ(stats.buffered, 0);
  EXPECT_EQ(stats.markers, 0);
  ExpectStatsAddUp(stats);
}

TEST_F(LogShipperTest, FlushReturnsOnlyOnceTheLinesAreReadable) {
  // With a long interval and large batches only Flush() sends anything.
  auto shipper =
      Shipper({.batch_lines = 1000, .flush_interval = absl::Hours(1)});
  shipper->Append("test", "stdout", "running 3 tests");
  shipper->Append("test", "stdout", "test tests::it_works ... ok");
  shipper->Append("test", "stderr", "warning: unused variable");
  EXPECT_EQ(StreamLength(), 0);
  ASSERT_OK(shipper->Flush());
  EXPECT_THAT(Lines(), ::testing::ElementsAre("running 3 tests",
                                              "test tests::it_works ... ok",
                                              "warning: unused variable"));
  // Nothing new: returns at once.
  ASSERT_OK(shipper->Flush());
}

TEST_F(LogShipperTest, QuietOutputIsSentWithinTheFlushIntervalWithoutFlush) {
  auto shipper = Shipper({.flush_interval = absl::Milliseconds(50)});
  shipper->Append("build", "stdout", "   Finished release [optimized]");
  const absl::Time deadline = absl::Now() + absl::Seconds(20);
  while (StreamLength() < 1 && absl::Now() < deadline) {
    absl::SleepFor(absl::Milliseconds(10));
  }
  EXPECT_EQ(StreamLength(), 1);
}

TEST_F(LogShipperTest, CapStoresAPrefixThenExactlyOneTruncationMarker) {
  auto shipper = Shipper({.max_bytes = 1000});
  const std::string fifty(50, 'x');
  for (int i = 0; i < 100; ++i) {
    shipper->Append(
        i < 50 ? "build" : "test", "stdout",
        absl::StrCat(fifty.substr(0, 46), absl::Dec(i, absl::kZeroPad4)));
    // A Flush in the middle must not write a marker of its own.
    if (i == 60) {
      ASSERT_OK(shipper->Flush());
    }
  }
  ASSERT_OK(shipper->Close());

  const std::vector<LogEntry> log = ReadLog();
  ASSERT_EQ(log.size(), 21u);  // 20 lines of 50 bytes, then the marker
  int64_t line_bytes = 0;
  for (int i = 0; i < 20; ++i) {
    EXPECT_EQ(log[i].line,
              absl::StrCat(fifty.substr(0, 46), absl::Dec(i, absl::kZeroPad4)));
    EXPECT_EQ(log[i].stream, "stdout");
    line_bytes += static_cast<int64_t>(log[i].line.size());
  }
  EXPECT_LE(line_bytes, 1000);
  const LogEntry& marker = log.back();
  EXPECT_EQ(marker.seq, 21);
  EXPECT_EQ(marker.stream, "agent");
  EXPECT_EQ(marker.step, "build");  // where the truncation began
  EXPECT_EQ(marker.line,
            "log truncated: the limit of 1000 bytes was reached; 80 more "
            "lines (4000 bytes) were not stored");

  const LogShipperStats stats = shipper->stats();
  EXPECT_EQ(stats.truncated, 80);
  EXPECT_EQ(stats.truncated_bytes, 4000);
  EXPECT_EQ(stats.markers, 1);
  EXPECT_EQ(stats.bytes, 1000 + static_cast<int64_t>(marker.line.size()));
  ExpectStatsAddUp(stats);
}

TEST_F(LogShipperTest, CapOnLinesKeepsMaxLenFromTrimmingTheHeadOfTheLog) {
  queue_.log_max_len = 10;
  auto shipper = Shipper();
  for (int i = 0; i < 25; ++i) {
    shipper->Append("test", "stdout", absl::StrCat("line ", i));
  }
  ASSERT_OK(shipper->Close());
  const std::vector<std::string> lines = Lines();
  ASSERT_EQ(lines.size(), 10u);
  EXPECT_EQ(lines.front(), "line 0");
  EXPECT_EQ(lines[8], "line 8");
  EXPECT_EQ(lines.back(),
            "log truncated: the limit of 9 lines was reached; 16 more lines "
            "(111 bytes) were not stored");
}

TEST_F(LogShipperTest, MasksSecretsAndHidesTheLongerOfTwoOverlappingOnes) {
  // "hunter2" is a prefix of the token; "ab" is too short to mask.
  auto shipper =
      Shipper({.secrets = {"hunter2", "hunter2-registry-token", "ab", ""}});
  shipper->Append("image", "stderr",
                  "login -p hunter2-registry-token registry.local");
  shipper->Append("image", "stdout", "password hunter2 accepted");
  shipper->Append("image", "stdout", "about to push");
  ASSERT_OK(shipper->Close());
  EXPECT_THAT(Lines(), ::testing::ElementsAre(
                           "login -p [MASKED] registry.local",
                           "password [MASKED] accepted", "about to push"));
  for (const std::string& line : Lines()) {
    EXPECT_THAT(line, Not(HasSubstr("hunter2")));
    EXPECT_THAT(line, Not(HasSubstr("token")));
  }
}

TEST_F(LogShipperTest, CapCountsMaskedBytes) {
  auto shipper = Shipper({.max_bytes = 8, .secrets = {"a-very-long-secret"}});
  shipper->Append("build", "stdout", "a-very-long-secret");  // 8 once masked
  shipper->Append("build", "stdout", "x");
  ASSERT_OK(shipper->Close());
  const std::vector<std::string> lines = Lines();
  ASSERT_EQ(lines.size(), 2u);
  EXPECT_EQ(lines[0], "[MASKED]");
  EXPECT_THAT(lines[1], StartsWith("log truncated: the limit of 8 bytes"));
}

TEST_F(LogShipperTest, LinesAppendedWhileRedisIsDownArriveAfterItRestarts) {
  server_.reset();
  StartServer({.persistence = true});
  auto shipper = Shipper({.retry = {.initial = absl::Milliseconds(20),
                                    .max = absl::Milliseconds(200)}});
  for (int i = 0; i < 10; ++i) {
    shipper->Append("test", "stdout", absl::StrCat("before ", i));
  }
  ASSERT_OK(shipper->Flush());

  server_->Kill();
  for (int i = 0; i < 10; ++i) {
    shipper->Append("test", "stdout", absl::StrCat("during ", i));
  }
  EXPECT_THAT(shipper->Flush(), StatusIs(absl::StatusCode::kUnavailable,
                                         HasSubstr("lines not stored yet")));
  EXPECT_EQ(shipper->stats().buffered, 10);

  ASSERT_OK(server_->StartAgain());
  shipper->Append("test", "stdout", "after");
  ASSERT_OK(shipper->Flush());
  ASSERT_OK(shipper->Close());

  const std::vector<LogEntry> log = ReadLog();
  std::vector<std::string> expected;
  for (int i = 0; i < 10; ++i) expected.push_back(absl::StrCat("before ", i));
  for (int i = 0; i < 10; ++i) expected.push_back(absl::StrCat("during ", i));
  expected.push_back("after");
  ASSERT_EQ(log.size(), expected.size());
  for (size_t i = 0; i < log.size(); ++i) {
    EXPECT_EQ(log[i].line, expected[i]);
    EXPECT_EQ(log[i].seq, static_cast<int64_t>(i + 1));
  }
  const LogShipperStats stats = shipper->stats();
  EXPECT_GE(stats.failed_batches, 1);
  EXPECT_EQ(stats.dropped, 0);
  ExpectStatsAddUp(stats);
}

TEST_F(LogShipperTest, FullBufferWhileRedisIsDownDropsLinesAndMarksTheGap) {
  server_->Kill();
  // Room for about ten queued lines; a long allowed wait, which must not be
  // spent while Redis is known to be down.
  auto shipper = Shipper({.max_buffered_bytes = 10 * 150,
                          .max_append_wait = absl::Seconds(30),
                          .retry = {.initial = absl::Milliseconds(20),
                                    .max = absl::Milliseconds(200)}});
  const absl::Time start = absl::Now();
  for (int i = 0; i < 200; ++i) {
    shipper->Append("test", "stdout", absl::StrCat("queued or lost ", i));
  }
  // Not a throughput figure: 200 waits of 30 s would be hours.
  EXPECT_LT(absl::Now() - start, absl::Seconds(25));

  LogShipperStats stats = shipper->stats();
  EXPECT_GT(stats.dropped, 0);
  EXPECT_GT(stats.buffered, 0);
  EXPECT_EQ(stats.buffered + stats.dropped, 200);
  EXPECT_THAT(shipper->Flush(), StatusIs(absl::StatusCode::kUnavailable));

  ASSERT_OK(server_->StartAgain());
  ASSERT_OK(shipper->Flush());
  shipper->Append("test", "stdout", "after restart");
  ASSERT_OK(shipper->Close());

  const std::vector<std::string> lines = Lines();
  const int64_t kept = stats.buffered;
  ASSERT_EQ(static_cast<int64_t>(lines.size()), kept + 2);
  for (int64_t i = 0; i < kept; ++i) {
    EXPECT_EQ(lines[i], absl::StrCat("queued or lost ", i));
  }
  EXPECT_THAT(lines[kept],
              StartsWith(absl::StrCat("log gap: ", stats.dropped, " lines (")));
  EXPECT_EQ(lines[kept + 1], "after restart");
  stats = shipper->stats();
  EXPECT_EQ(stats.markers, 1);
  ExpectStatsAddUp(stats);
}

TEST_F(LogShipperTest, CloseReportsLinesLostAtTheEndInOneGapMarker) {
  server_->Kill();
  auto shipper = Shipper({.max_buffered_bytes = 5 * 150,
                          .retry = {.initial = absl::Milliseconds(20),
                                    .max = absl::Milliseconds(200)}});
  for (int i = 0; i < 50; ++i) {
    shipper->Append("test", "stdout", absl::StrCat("line ", i));
  }
  const LogShipperStats before = shipper->stats();
  ASSERT_GT(before.dropped, 0);
  ASSERT_OK(server_->StartAgain());
  ASSERT_OK(shipper->Close());

  const std::vector<LogEntry> log = ReadLog();
  ASSERT_EQ(static_cast<int64_t>(log.size()), before.buffered + 1);
  EXPECT_EQ(log.back().stream, "agent");
  EXPECT_EQ(log.back().step, "test");
  EXPECT_THAT(log.back().line, StartsWith(absl::StrCat(
                                   "log gap: ", before.dropped, " lines (")));
  EXPECT_THAT(log.back().line, HasSubstr("lost at the end"));
}

TEST_F(LogShipperTest, FullBufferWhileRedisAcceptsSlowsTheProducerInstead) {
  auto shipper = Shipper({.batch_lines = 50, .max_buffered_bytes = 4096});
  for (int i = 0; i < 5000; ++i) {
    shipper->Append("test", "stdout", absl::StrCat("test case ", i, " ... ok"));
  }
  ASSERT_OK(shipper->Close());
  EXPECT_EQ(shipper->stats().dropped, 0);
  EXPECT_EQ(StreamLength(), 5000);
}

TEST_F(LogShipperTest, CloseGivesUpAfterCloseTimeoutWhenRedisStaysDown) {
  auto shipper = Shipper({.close_timeout = absl::Milliseconds(300),
                          .retry = {.initial = absl::Milliseconds(20),
                                    .max = absl::Milliseconds(100)}});
  server_->Kill();
  for (int i = 0; i < 5; ++i) shipper->Append("test", "stdout", "lost");
  const absl::Status closed = shipper->Close();
  EXPECT_THAT(closed, StatusIs(absl::StatusCode::kUnavailable,
                               HasSubstr("gave up on 5 lines")));
  EXPECT_EQ(shipper->Close(), closed);
  EXPECT_EQ(shipper->Flush(), closed);
  const LogShipperStats stats = shipper->stats();
  EXPECT_EQ(stats.dropped, 5);
  EXPECT_EQ(stats.buffered, 0);
  ExpectStatsAddUp(stats);
}

TEST_F(LogShipperTest, CloseIsIdempotentAndLaterLinesAreDropped) {
  auto shipper = Shipper();
  shipper->Append("check", "stdout", "checked");
  ASSERT_OK(shipper->Close());
  ASSERT_OK(shipper->Close());
  shipper->Append("check", "stdout", "too late");
  ASSERT_OK(shipper->Flush());
  EXPECT_THAT(Lines(), ::testing::ElementsAre("checked"));
  EXPECT_EQ(shipper->stats().dropped, 1);
  ExpectStatsAddUp(shipper->stats());
}

TEST_F(LogShipperTest, DestructorShipsWhatIsQueued) {
  {
    auto shipper = Shipper({.flush_interval = absl::Hours(1)});
    shipper->Append("build", "stdout", "last words");
  }
  EXPECT_THAT(Lines(), ::testing::ElementsAre("last words"));
}

TEST_F(LogShipperTest, AppendsFromTwoThreadsAllArriveEachThreadInOrder) {
  auto shipper = Shipper();
  constexpr int kPerThread = 5000;
  std::vector<std::thread> threads;
  for (int t = 0; t < 2; ++t) {
    threads.emplace_back([&shipper, t] {
      for (int i = 0; i < kPerThread; ++i) {
        shipper->Append(absl::StrCat("t", t), t == 0 ? "stdout" : "stderr",
                        absl::StrCat(i));
      }
    });
  }
  for (std::thread& thread : threads) thread.join();
  ASSERT_OK(shipper->Close());

  const std::vector<LogEntry> log = ReadLog();
  ASSERT_EQ(log.size(), 2u * kPerThread);
  std::vector<int64_t> next = {0, 0};
  for (size_t i = 0; i < log.size(); ++i) {
    EXPECT_EQ(log[i].seq, static_cast<int64_t>(i + 1));
    const int t = log[i].step == "t0" ? 0 : 1;
    EXPECT_EQ(log[i].stream, t == 0 ? "stdout" : "stderr");
    EXPECT_EQ(log[i].line, absl::StrCat(next[t]++));
  }
  EXPECT_EQ(Sum(next), 2 * kPerThread);
  ExpectStatsAddUp(shipper->stats());
}

}  // namespace
}  // namespace ciagent
