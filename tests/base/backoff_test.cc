#include "ciagent/base/backoff.h"

#include <set>

#include "gtest/gtest.h"

namespace ciagent {
namespace {

constexpr BackoffOptions kSmall = {.initial = absl::Milliseconds(10),
                                   .max = absl::Milliseconds(80),
                                   .multiplier = 2.0};

TEST(BackoffTest, DefaultsStartAt100MillisecondsUpTo5Seconds) {
  const BackoffOptions defaults;
  EXPECT_EQ(defaults.initial, absl::Milliseconds(100));
  EXPECT_EQ(defaults.max, absl::Seconds(5));
  EXPECT_EQ(defaults.multiplier, 2.0);
  EXPECT_EQ(Backoff().ceiling(), absl::Milliseconds(100));
}

TEST(BackoffTest, CeilingGrowsByMultiplierUntilMax) {
  Backoff backoff(kSmall);
  EXPECT_EQ(backoff.ceiling(), absl::Milliseconds(10));
  backoff.Next();
  EXPECT_EQ(backoff.ceiling(), absl::Milliseconds(20));
  backoff.Next();
  EXPECT_EQ(backoff.ceiling(), absl::Milliseconds(40));
  backoff.Next();
  EXPECT_EQ(backoff.ceiling(), absl::Milliseconds(80));
  backoff.Next();
  EXPECT_EQ(backoff.ceiling(), absl::Milliseconds(80));
}

TEST(BackoffTest, CeilingStopsAtMaxWhenMultiplierOvershoots) {
  Backoff backoff({.initial = absl::Milliseconds(30),
                   .max = absl::Milliseconds(100),
                   .multiplier = 3.0});
  backoff.Next();
  EXPECT_EQ(backoff.ceiling(), absl::Milliseconds(90));
  backoff.Next();
  EXPECT_EQ(backoff.ceiling(), absl::Milliseconds(100));
}

TEST(BackoffTest, DelaysStayWithinTheCeilingTheyWereDrawnUnder) {
  Backoff backoff(kSmall);
  for (int i = 0; i < 1000; ++i) {
    const absl::Duration ceiling = backoff.ceiling();
    const absl::Duration delay = backoff.Next();
    EXPECT_GE(delay, absl::ZeroDuration()) << "draw " << i;
    EXPECT_LE(delay, ceiling) << "draw " << i;
    EXPECT_LE(delay, kSmall.max) << "draw " << i;
  }
}

TEST(BackoffTest, DelaysNeverExceedMaxEvenWhenInitialDoes) {
  Backoff backoff({.initial = absl::Seconds(10),
                   .max = absl::Seconds(1),
                   .multiplier = 2.0});
  for (int i = 0; i < 100; ++i) {
    EXPECT_LE(backoff.Next(), absl::Seconds(1)) << "draw " << i;
  }
}

TEST(BackoffTest, DelaysAreJittered) {
  Backoff backoff({.initial = absl::Seconds(1),
                   .max = absl::Seconds(1),
                   .multiplier = 2.0});
  std::set<absl::Duration> distinct;
  for (int i = 0; i < 20; ++i) distinct.insert(backoff.Next());
  // Full jitter: 20 uniform draws with nanosecond resolution never coincide
  // in practice; equal values would mean no jitter at all.
  EXPECT_GT(distinct.size(), 10u);
}

TEST(BackoffTest, ResetReturnsCeilingToInitial) {
  Backoff backoff(kSmall);
  for (int i = 0; i < 5; ++i) backoff.Next();
  ASSERT_EQ(backoff.ceiling(), absl::Milliseconds(80));
  backoff.Reset();
  EXPECT_EQ(backoff.ceiling(), absl::Milliseconds(10));
  EXPECT_LE(backoff.Next(), absl::Milliseconds(10));
  EXPECT_EQ(backoff.ceiling(), absl::Milliseconds(20));
}

}  // namespace
}  // namespace ciagent
