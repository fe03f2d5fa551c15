// sccache through the pipeline, against a real sccache server and real
// cargo: a rebuild of the same checkout after its target dir was removed
// (pruned, say) is served from <cache>/sccache.
#include "ciagent/cache/sccache.h"

#include <filesystem>
#include <string>
#include <system_error>

#include "ciagent/base/process_runner.h"
#include "ciagent/pipeline/pipeline.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "testing/cargo_fixture.h"
#include "testing/redis_server.h"
#include "testing/status_matchers.h"

namespace ciagent {
namespace {

using ::ciagent::testing::StatusIs;

TEST(ParseSccacheStatsTest, SumsHitsAndMissesOverLanguages) {
  ASSERT_OK_AND_ASSIGN(
      SccacheStats stats,
      ParseSccacheStats(
          R"({"stats":{"compile_requests":9,"cache_hits":{"counts":{"Rust":3,"C/C++":1}},)"
          R"("cache_misses":{"counts":{"Rust":2}},"cache_errors":{"counts":{}}},)"
          R"("cache_location":"Local disk","cache_size":6033})"));
  EXPECT_EQ(stats.compile_requests, 9);
  EXPECT_EQ(stats.hits, 4);
  EXPECT_EQ(stats.misses, 2);
}

TEST(ParseSccacheStatsTest, RefusesOtherDocuments) {
  EXPECT_THAT(ParseSccacheStats("Compile requests 9"),
              StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(ParseSccacheStats(R"({"cache_size":1})"),
              StatusIs(absl::StatusCode::kInvalidArgument));
}

class SccachePipelineTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_OK(BecomeChildSubreaper());
    ASSERT_OK_AND_ASSIGN(tmp_, testing::MakeTempDir("sccache"));
  }

  // One build of `passing` into an empty target dir, through sccache on the
  // shared cache dir. (sccache keys rustc runs on their absolute paths too:
  // checkout and target dir stay where they are, as in an agent's slot.)
  PipelineResult Build(const std::string& path) {
    std::error_code error;
    std::filesystem::remove_all(tmp_ + "/target", error);
    PipelineOptions options;
    options.source_dir = src_;
    options.target_dir = tmp_ + "/target";
    options.cache_dir = tmp_ + "/cache";
    options.sccache = true;
    options.path = path;
    options.steps = {"build"};
    absl::StatusOr<PipelineResult> result = RunPipeline(options, nullptr);
    EXPECT_OK(result.status());
    return result.value_or(PipelineResult{});
  }

  std::string tmp_;
  std::string src_;
};

TEST_F(SccachePipelineTest, RebuildAfterTheTargetDirIsGoneIsServedFromSccache) {
  CIAGENT_REQUIRE_CARGO(path);
  if (FindExecutable("sccache", path).empty()) {
    if (testing::RunningUnderCi()) FAIL() << "sccache is required under CI";
    GTEST_SKIP() << "sccache not installed (a failure under CI=true)";
  }
  ASSERT_OK_AND_ASSIGN(src_, testing::CopyFixture("passing", tmp_));

  PipelineResult first = Build(path);
  PipelineResult second = Build(path);

  EXPECT_EQ(first.status, JobStatus::kSuccess) << first.reason;
  EXPECT_TRUE(first.cache.sccache_used);
  EXPECT_EQ(first.cache.sccache_hits, 0);
  EXPECT_GT(first.cache.sccache_misses, 0);
  EXPECT_EQ(second.status, JobStatus::kSuccess) << second.reason;
  EXPECT_TRUE(second.cache.sccache_used);
  EXPECT_GT(second.cache.sccache_hits, 0);
  EXPECT_EQ(second.cache.sccache_misses, 0);
  // The pruner sees the entry used.
  EXPECT_THAT(testing::ReadFileOrEmpty(tmp_ + "/cache/sccache/ciagent-last-use"),
              ::testing::StartsWith("20"));
  // Each run's private server is gone with it.
  EXPECT_EQ(testing::ProcessesWithMarker(tmp_ + "/cache/sccache"), 0);
}

}  // namespace
}  // namespace ciagent
