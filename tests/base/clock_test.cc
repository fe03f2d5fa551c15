#include "ciagent/base/clock.h"

#include "gtest/gtest.h"

namespace ciagent {
namespace {

TEST(TimestampTest, ParsesWhatFormatTimestampWrites) {
  const absl::Time time = absl::FromUnixMillis(1795757890706);
  const std::string stamp = FormatTimestamp(time);
  EXPECT_EQ(stamp, "2026-11-27T05:38:10.706Z");
  EXPECT_EQ(ParseTimestamp(stamp), time);
}

TEST(TimestampTest, RefusesWhatIsNoTimestamp) {
  EXPECT_EQ(ParseTimestamp(""), std::nullopt);
  EXPECT_EQ(ParseTimestamp("yesterday"), std::nullopt);
  EXPECT_EQ(ParseTimestamp("2026-11-27"), std::nullopt);
}

}  // namespace
}  // namespace ciagent
