#include "ciagent/base/cpus.h"

#include <thread>

#include "gtest/gtest.h"

namespace ciagent {
namespace {

TEST(CpuQuotaFromCpuMaxTest, WholeCpusOfAQuota) {
  EXPECT_EQ(CpuQuotaFromCpuMax("200000 100000\n"), 2);
  EXPECT_EQ(CpuQuotaFromCpuMax("400000 100000"), 4);
}

TEST(CpuQuotaFromCpuMaxTest, PartialCpusRoundUp) {
  EXPECT_EQ(CpuQuotaFromCpuMax("150000 100000"), 2);
  EXPECT_EQ(CpuQuotaFromCpuMax("50000 100000"), 1);
}

TEST(CpuQuotaFromCpuMaxTest, NoQuotaIsNoLimit) {
  EXPECT_EQ(CpuQuotaFromCpuMax("max 100000"), std::nullopt);
}

TEST(CpuQuotaFromCpuMaxTest, UnreadableLinesAreNoLimit) {
  EXPECT_EQ(CpuQuotaFromCpuMax(""), std::nullopt);
  EXPECT_EQ(CpuQuotaFromCpuMax("lots 100000"), std::nullopt);
  EXPECT_EQ(CpuQuotaFromCpuMax("-1 100000"), std::nullopt);
  EXPECT_EQ(CpuQuotaFromCpuMax("100000 0"), std::nullopt);
}

TEST(UsableCpusTest, AtLeastOneAndNoMoreThanTheMachineHas) {
  const int cpus = UsableCpus();
  EXPECT_GE(cpus, 1);
  EXPECT_LE(cpus, static_cast<int>(std::thread::hardware_concurrency()));
}

}  // namespace
}  // namespace ciagent
