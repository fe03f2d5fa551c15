#include "ciagent/base/comma_list.h"

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace ciagent {
namespace {

using ::testing::ElementsAre;
using ::testing::IsEmpty;

TEST(SplitCommaListTest, TrimsItemsAndDropsEmptyOnes) {
  EXPECT_THAT(SplitCommaList(" a, b,,c "), ElementsAre("a", "b", "c"));
  EXPECT_THAT(SplitCommaList("release/*"), ElementsAre("release/*"));
  EXPECT_THAT(SplitCommaList(""), IsEmpty());
  EXPECT_THAT(SplitCommaList(" , ,"), IsEmpty());
}

TEST(SplitCommaListTest, KeepsInnerSpacesAndOrder) {
  EXPECT_THAT(SplitCommaList("b,a c,b"), ElementsAre("b", "a c", "b"));
}

}  // namespace
}  // namespace ciagent
