// The build cache against real cargo: the `with_deps` fixture built offline
// from Debian's vendored crates (tests/fixtures/README.md) through the
// pipeline, with a cache root per test.
#include "ciagent/cache/build_cache.h"

#include <sys/stat.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "ciagent/base/file_lock.h"
#include "ciagent/base/process_runner.h"
#include "ciagent/pipeline/pipeline.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "testing/cargo_fixture.h"
#include "testing/redis_server.h"
#include "testing/status_matchers.h"
#include "testing/subprocess.h"

namespace ciagent {
namespace {

using ::ciagent::testing::StatusIs;
using ::testing::HasSubstr;
using ::testing::UnorderedElementsAre;

// with_deps: 6 registry units (itoa, csv-core, memchr, libc, and the build
// scripts of memchr and libc) and 2 workspace units (lib, bin).
constexpr int64_t kDependencyUnits = 6;
constexpr int64_t kWorkspaceUnits = 2;

bool Exists(const std::string& path) {
  struct stat st;
  return stat(path.c_str(), &st) == 0;
}

void WriteFile(const std::string& path, const std::string& contents) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out << contents;
}

class CollectingObserver : public PipelineObserver {
 public:
  void StepOutput(absl::string_view step, absl::string_view stream,
                  absl::string_view line) override {
    lines.push_back(absl::StrCat(step, "|", stream, "|", line));
  }
  bool Saw(absl::string_view needle) const {
    for (const std::string& line : lines) {
      if (absl::StrContains(line, needle)) return true;
    }
    return false;
  }
  std::vector<std::string> lines;
};

class BuildCacheTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_OK(BecomeChildSubreaper());
    ASSERT_OK_AND_ASSIGN(tmp_, testing::MakeTempDir("build-cache"));
    cache_ = tmp_ + "/cache";
    ASSERT_OK_AND_ASSIGN(std::string fixtures, testing::FixturesDir());
    cargo_config_ = fixtures + "/cargo-config-debian.toml";
  }

  // A fresh checkout of `fixture`: a copy in a directory of its own.
  std::string Checkout(const std::string& fixture = "with_deps") {
    const std::string dir = absl::StrCat(tmp_, "/checkout-", ++checkouts_);
    EXPECT_EQ(mkdir(dir.c_str(), 0755), 0);
    absl::StatusOr<std::string> src = testing::CopyFixture(fixture, dir);
    EXPECT_OK(src.status());
    return src.value_or("");
  }

  PipelineOptions Options(const std::string& src, const std::string& path) {
    PipelineOptions options;
    options.source_dir = src;
    options.cache_dir = cache_;
    options.cargo_config = cargo_config_;
    options.path = path;
    options.steps = {"build"};
    options.grace = absl::Seconds(2);
    return options;
  }

  std::string tmp_;
  std::string cache_;
  std::string cargo_config_;
  int checkouts_ = 0;
};

TEST_F(BuildCacheTest, ColdBuildThenFreshCheckoutFindsEveryDependencyFresh) {
  CIAGENT_REQUIRE_CARGO(path);
  CollectingObserver cold_log;
  ASSERT_OK_AND_ASSIGN(PipelineResult cold,
                       RunPipeline(Options(Checkout(), path), &cold_log));
  ASSERT_EQ(cold.status, JobStatus::kSuccess) << cold.reason;
  EXPECT_EQ(cold.cache.match, "none");
  EXPECT_EQ(cold.cache.key.size(), 64u);
  EXPECT_EQ(cold.cache.dependency_units, kDependencyUnits);
  EXPECT_EQ(cold.cache.fresh_dependency_units, 0);
  EXPECT_EQ(cold.cache.dependency_hit_rate, 0.0);
  EXPECT_EQ(cold.cache.units, kDependencyUnits + kWorkspaceUnits);
  EXPECT_TRUE(cold_log.Saw("cache|agent|cache: none match, key "));
  const std::string dir = absl::StrCat(cache_, "/target/", cold.cache.key);
  EXPECT_TRUE(Exists(dir + "/" + kCacheStampFile));
  EXPECT_TRUE(Exists(dir + "/" + kCacheKeyFile));
  EXPECT_TRUE(Exists(cache_ + "/cargo-home/config.toml"));
  ASSERT_EQ(cold.artifacts.size(), 1u);
  EXPECT_TRUE(absl::StartsWith(cold.artifacts[0].path, dir + "/release/"));

  // Another checkout of the same commit: every dependency unit is fresh,
  // the workspace's own units rebuild.
  CollectingObserver warm_log;
  ASSERT_OK_AND_ASSIGN(PipelineResult warm,
                       RunPipeline(Options(Checkout(), path), &warm_log));
  ASSERT_EQ(warm.status, JobStatus::kSuccess) << warm.reason;
  EXPECT_EQ(warm.cache.match, "exact");
  EXPECT_EQ(warm.cache.key, cold.cache.key);
  EXPECT_EQ(warm.cache.dependency_units, kDependencyUnits);
  EXPECT_EQ(warm.cache.fresh_dependency_units, kDependencyUnits);
  EXPECT_EQ(warm.cache.dependency_hit_rate, 1.0);
  EXPECT_EQ(warm.cache.fresh_units, kDependencyUnits);

  // A source change: the same key; only workspace units rebuild.
  const std::string changed = Checkout();
  std::ofstream(changed + "/src/lib.rs", std::ios::app)
      << "\npub fn added_by_test() -> u8 { 7 }\n";
  ASSERT_OK_AND_ASSIGN(PipelineResult edited,
                       RunPipeline(Options(changed, path), nullptr));
  ASSERT_EQ(edited.status, JobStatus::kSuccess) << edited.reason;
  EXPECT_EQ(edited.cache.key, cold.cache.key);
  EXPECT_EQ(edited.cache.fresh_dependency_units, kDependencyUnits);
  EXPECT_EQ(edited.cache.units - edited.cache.fresh_units, kWorkspaceUnits);
}

TEST_F(BuildCacheTest, DroppedWorkspaceArtifactsLeaveDependenciesFresh) {
  CIAGENT_REQUIRE_CARGO(path);
  PipelineOptions cold_options = Options(Checkout(), path);
  cold_options.cache_drop_workspace_artifacts = true;
  ASSERT_OK_AND_ASSIGN(PipelineResult cold, RunPipeline(cold_options, nullptr));
  ASSERT_EQ(cold.status, JobStatus::kSuccess) << cold.reason;
  const std::string release =
      absl::StrCat(cache_, "/target/", cold.cache.key, "/release");
  EXPECT_FALSE(Exists(release + "/with_deps"));
  EXPECT_FALSE(Exists(release + "/libwith_deps.rlib"));
  int64_t workspace_entries = 0, dependency_entries = 0;
  for (const char* sub : {"/deps", "/.fingerprint"}) {
    for (const auto& entry :
         std::filesystem::directory_iterator(release + sub)) {
      const std::string name = entry.path().filename().string();
      if (absl::StrContains(name, "with_deps")) ++workspace_entries;
      if (absl::StrContains(name, "memchr")) ++dependency_entries;
    }
  }
  EXPECT_EQ(workspace_entries, 0);
  EXPECT_GT(dependency_entries, 0);

  ASSERT_OK_AND_ASSIGN(PipelineResult warm,
                       RunPipeline(Options(Checkout(), path), nullptr));
  ASSERT_EQ(warm.status, JobStatus::kSuccess) << warm.reason;
  EXPECT_EQ(warm.cache.match, "exact");
  EXPECT_EQ(warm.cache.fresh_dependency_units, kDependencyUnits);
  EXPECT_EQ(warm.cache.dependency_hit_rate, 1.0);
}

TEST_F(BuildCacheTest, ChangedDependenciesStartFromTheFallbackDir) {
  CIAGENT_REQUIRE_CARGO(path);
  ASSERT_OK_AND_ASSIGN(PipelineResult cold,
                       RunPipeline(Options(Checkout(), path), nullptr));
  ASSERT_EQ(cold.status, JobStatus::kSuccess) << cold.reason;

  // A direct dependency on memchr, with the features csv-core already
  // asks for: a new manifest and lockfile, the same compiled units.
  const std::string src = Checkout();
  std::ofstream(src + "/Cargo.toml", std::ios::app)
      << "memchr = { version = \"2\", default-features = false }\n";
  const std::string lock = testing::ReadFileOrEmpty(src + "/Cargo.lock");
  WriteFile(src + "/Cargo.lock",
            absl::StrReplaceAll(
                lock, {{" \"itoa\",\n]", " \"itoa\",\n \"memchr\",\n]"}}));

  CollectingObserver log;
  ASSERT_OK_AND_ASSIGN(PipelineResult changed,
                       RunPipeline(Options(src, path), &log));
  ASSERT_EQ(changed.status, JobStatus::kSuccess) << changed.reason;
  EXPECT_EQ(changed.cache.match, "fallback");
  EXPECT_NE(changed.cache.key, cold.cache.key);
  EXPECT_TRUE(log.Saw(
      absl::StrCat("copied from ", cache_, "/target/", cold.cache.key)));
  EXPECT_EQ(changed.cache.dependency_units, kDependencyUnits);
  EXPECT_EQ(changed.cache.fresh_dependency_units, kDependencyUnits);
  // The original dir is still there, untouched, for its own key.
  EXPECT_TRUE(
      Exists(absl::StrCat(cache_, "/target/", cold.cache.key, "/release")));
  ASSERT_OK_AND_ASSIGN(PipelineResult again,
                       RunPipeline(Options(Checkout(), path), nullptr));
  EXPECT_EQ(again.cache.match, "exact");
  EXPECT_EQ(again.cache.fresh_dependency_units, kDependencyUnits);
}

TEST_F(BuildCacheTest, ConcurrentBuildsOfOneKeyTakeTurnsAndBothSucceed) {
  CIAGENT_REQUIRE_CARGO(path);
  ASSERT_OK_AND_ASSIGN(std::string tool,
                       testing::PathFromEnv("CIAGENT_CI_BUILD"));
  std::vector<std::unique_ptr<testing::Subprocess>> builds;
  for (int i = 0; i < 2; ++i) {
    testing::SubprocessOptions options;
    options.env["PATH"] = path;
    options.env["CI_CACHE_DIR"] = cache_;
    options.env["CI_CARGO_CONFIG"] = cargo_config_;
    options.unset_env = {"CI_TARGET_DIR", "CI_CARGO_HOME", "CARGO_TARGET_DIR"};
    options.stdout_path = absl::StrCat(tmp_, "/stdout-", i);
    options.stderr_path = absl::StrCat(tmp_, "/stderr-", i);
    ASSERT_OK_AND_ASSIGN(
        std::unique_ptr<testing::Subprocess> build,
        testing::Subprocess::Start(
            {tool, "--local", Checkout(), "--steps", "build", "--result",
             absl::StrCat(tmp_, "/result-", i, ".json")},
            options));
    builds.push_back(std::move(build));
  }
  std::vector<std::string> matches;
  for (int i = 0; i < 2; ++i) {
    ASSERT_OK_AND_ASSIGN(int code, builds[i]->Wait(absl::Minutes(4)));
    EXPECT_EQ(code, 0) << testing::ReadFileOrEmpty(
        absl::StrCat(tmp_, "/stderr-", i));
    const std::string result =
        testing::ReadFileOrEmpty(absl::StrCat(tmp_, "/result-", i, ".json"));
    if (absl::StrContains(result, R"("match":"exact")")) {
      matches.push_back("exact");
      // The second waited for the first and found everything built.
      EXPECT_THAT(result, HasSubstr(R"("fresh_dependency_units":6)"));
      EXPECT_THAT(result, HasSubstr(R"("dependency_hit_rate":1)"));
    } else if (absl::StrContains(result, R"("match":"none")")) {
      matches.push_back("none");
    } else {
      ADD_FAILURE() << result;
    }
  }
  EXPECT_THAT(matches, UnorderedElementsAre("none", "exact"));
}

TEST_F(BuildCacheTest, BuildsUncachedWhenTheKeyStaysLocked) {
  CIAGENT_REQUIRE_CARGO(path);
  const std::string src = Checkout("passing");
  BuildCacheOptions cache;
  cache.cache_dir = cache_;
  cache.source_dir = src;
  cache.env = {{"PATH", path}, {"HOME", getenv("HOME")}};
  ASSERT_OK_AND_ASSIGN(CachedTargetDir held, AcquireTargetDir(cache));

  cache.lock_timeout = absl::Milliseconds(300);
  EXPECT_THAT(AcquireTargetDir(cache).status(),
              StatusIs(absl::StatusCode::kUnavailable));

  PipelineOptions options = Options(src, path);
  options.cache_lock_timeout = absl::Milliseconds(300);
  CollectingObserver log;
  ASSERT_OK_AND_ASSIGN(PipelineResult result, RunPipeline(options, &log));
  EXPECT_EQ(result.status, JobStatus::kSuccess) << result.reason;
  EXPECT_EQ(result.cache.match, "none");
  EXPECT_EQ(result.cache.key, "");
  EXPECT_THAT(result.cache.uncached_reason, HasSubstr("busy"));
  EXPECT_TRUE(log.Saw("cache: none, building uncached"));
  ASSERT_EQ(result.artifacts.size(), 1u);
  EXPECT_TRUE(absl::StartsWith(result.artifacts[0].path, src + "/target/"));
}

TEST_F(BuildCacheTest, WithoutACacheDirTheRunSaysItIsUncached) {
  CIAGENT_REQUIRE_CARGO(path);
  const std::string src = Checkout("passing");
  PipelineOptions options = Options(src, path);
  options.cache_dir = "";
  options.cargo_home = tmp_ + "/cargo-home";
  CollectingObserver log;
  ASSERT_OK_AND_ASSIGN(PipelineResult result, RunPipeline(options, &log));
  EXPECT_EQ(result.status, JobStatus::kSuccess) << result.reason;
  EXPECT_EQ(result.cache.uncached_reason, "no cache dir");
  EXPECT_TRUE(log.Saw("cache: none, building uncached (no cache dir)"));
  EXPECT_EQ(result.cache.dependency_units, 0);
  EXPECT_EQ(result.cache.units, 2);  // lib and bin of `passing`
}

TEST_F(BuildCacheTest, KeyInputsComeFromTheCheckoutsRustcAndManifests) {
  CIAGENT_REQUIRE_CARGO(path);
  BuildCacheOptions cache;
  cache.cache_dir = cache_;
  cache.source_dir = Checkout();
  cache.env = {{"PATH", path}, {"HOME", getenv("HOME")}};
  ASSERT_OK_AND_ASSIGN(CacheKeyInputs real, ReadCacheKeyInputs(cache));
  EXPECT_THAT(real.rustc_version, HasSubstr("host: "));
  ASSERT_EQ(real.manifests.size(), 1u);
  EXPECT_EQ(real.manifests[0].first, "Cargo.toml");
  CacheKeyInputs other = real;
  other.rustc_version += "note: another build\n";
  EXPECT_NE(ComputeCacheKey(real).exact, ComputeCacheKey(other).exact);
}

}  // namespace
}  // namespace ciagent
