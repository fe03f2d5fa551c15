#include "ciagent/base/stop_signal.h"

#include <signal.h>

#include <thread>

#include "absl/time/clock.h"
#include "gtest/gtest.h"
#include "testing/status_matchers.h"

namespace ciagent {
namespace {

// How late a sleeper may notice a stop and still count as prompt.
constexpr absl::Duration kPrompt = absl::Milliseconds(200);

class StopSignalTest : public ::testing::Test {
 protected:
  void SetUp() override { ResetStopForTesting(); }
  void TearDown() override { ResetStopForTesting(); }
};

TEST_F(StopSignalTest, NoStopIsRequestedInitially) {
  EXPECT_FALSE(StopRequested());
  EXPECT_EQ(StopSignalNumber(), 0);
}

TEST_F(StopSignalTest, SleepsFullDurationWithoutStop) {
  const absl::Time start = absl::Now();
  EXPECT_TRUE(SleepUnlessStopped(absl::Milliseconds(150)));
  const absl::Duration elapsed = absl::Now() - start;
  EXPECT_GE(elapsed, absl::Milliseconds(150));
  EXPECT_LT(elapsed, absl::Seconds(2));  // generous: only catches a hang
}

TEST_F(StopSignalTest, ZeroSleepReturnsTrueAtOnce) {
  EXPECT_TRUE(SleepUnlessStopped(absl::ZeroDuration()));
}

TEST_F(StopSignalTest, RequestStopFromAnotherThreadEndsLongSleepPromptly) {
  absl::Time requested_at;
  std::thread stopper([&] {
    absl::SleepFor(absl::Milliseconds(50));
    requested_at = absl::Now();
    RequestStop();
  });
  const absl::Time start = absl::Now();
  const bool slept_fully = SleepUnlessStopped(absl::Seconds(10));
  const absl::Time woke_at = absl::Now();
  stopper.join();

  EXPECT_FALSE(slept_fully);
  EXPECT_LT(woke_at - requested_at, kPrompt);
  EXPECT_LT(woke_at - start, absl::Seconds(1));
  EXPECT_TRUE(StopRequested());
  EXPECT_EQ(StopSignalNumber(), 0);
}

TEST_F(StopSignalTest, StopWakesEverySleeper) {
  bool first = true;
  bool second = true;
  std::thread a([&] { first = SleepUnlessStopped(absl::Seconds(10)); });
  std::thread b([&] { second = SleepUnlessStopped(absl::Seconds(10)); });
  absl::SleepFor(absl::Milliseconds(50));
  const absl::Time requested_at = absl::Now();
  RequestStop();
  a.join();
  b.join();

  EXPECT_LT(absl::Now() - requested_at, kPrompt);
  EXPECT_FALSE(first);
  EXPECT_FALSE(second);
}

TEST_F(StopSignalTest, SleepAfterStopReturnsFalseImmediately) {
  RequestStop();
  const absl::Time start = absl::Now();
  EXPECT_FALSE(SleepUnlessStopped(absl::Seconds(10)));
  EXPECT_LT(absl::Now() - start, kPrompt);
}

TEST_F(StopSignalTest, ResetClearsStop) {
  RequestStop();
  ASSERT_TRUE(StopRequested());
  ResetStopForTesting();
  EXPECT_FALSE(StopRequested());
  EXPECT_TRUE(SleepUnlessStopped(absl::Milliseconds(20)));
}

TEST_F(StopSignalTest, InstallIsIdempotent) {
  EXPECT_OK(InstallStopHandlers());
  EXPECT_OK(InstallStopHandlers());
}

TEST_F(StopSignalTest, SigtermRequestsStopAndRecordsSignal) {
  ASSERT_OK(InstallStopHandlers());
  ASSERT_EQ(raise(SIGTERM), 0);
  EXPECT_TRUE(StopRequested());
  EXPECT_EQ(StopSignalNumber(), SIGTERM);
  EXPECT_FALSE(SleepUnlessStopped(absl::Seconds(10)));
}

TEST_F(StopSignalTest, SigintRequestsStopAndRecordsSignal) {
  ASSERT_OK(InstallStopHandlers());
  ASSERT_EQ(raise(SIGINT), 0);
  EXPECT_TRUE(StopRequested());
  EXPECT_EQ(StopSignalNumber(), SIGINT);
}

TEST_F(StopSignalTest, SigtermEndsSleepInAnotherThreadPromptly) {
  ASSERT_OK(InstallStopHandlers());
  bool slept_fully = true;
  absl::Time woke_at;
  std::thread sleeper([&] {
    slept_fully = SleepUnlessStopped(absl::Seconds(10));
    woke_at = absl::Now();
  });
  absl::SleepFor(absl::Milliseconds(50));
  const absl::Time signalled_at = absl::Now();
  ASSERT_EQ(raise(SIGTERM), 0);
  sleeper.join();

  EXPECT_FALSE(slept_fully);
  EXPECT_LT(woke_at - signalled_at, kPrompt);
  EXPECT_EQ(StopSignalNumber(), SIGTERM);
}

TEST_F(StopSignalTest, ResetClearsSignalNumber) {
  ASSERT_OK(InstallStopHandlers());
  ASSERT_EQ(raise(SIGTERM), 0);
  ResetStopForTesting();
  EXPECT_FALSE(StopRequested());
  EXPECT_EQ(StopSignalNumber(), 0);
}

}  // namespace
}  // namespace ciagent
