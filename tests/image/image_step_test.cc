// The image step inside the pipeline: the fixture crate with a FROM-scratch
// Dockerfile is built by cargo, its image by buildah, and pushed to a real
// registry; skopeo reads it back. The repository's configuration chooses
// the Dockerfile and the image name.
#include "ciagent/image/image_step.h"

#include <sys/stat.h>

#include <filesystem>
#include <fstream>

#include "absl/strings/str_cat.h"
#include "ciagent/base/process_runner.h"
#include "ciagent/pipeline/pipeline.h"
#include "ciagent/pipeline/pipeline_config.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "testing/buildah.h"
#include "testing/cargo_fixture.h"
#include "testing/oci_layout.h"
#include "testing/redis_server.h"
#include "testing/registry_server.h"
#include "testing/status_matchers.h"

namespace ciagent {
namespace {

using ::ciagent::testing::InspectDigest;
using ::ciagent::testing::IsOkAndHolds;
using ::ciagent::testing::RegistryServerOptions;
using ::ciagent::testing::StatusIs;
using ::testing::ElementsAre;
using ::testing::HasSubstr;

const StepRecord* FindStep(const PipelineResult& result,
                           absl::string_view name) {
  for (const StepRecord& step : result.steps) {
    if (step.name == name) return &step;
  }
  return nullptr;
}

class ImageStepTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_OK(BecomeChildSubreaper());
    ASSERT_OK_AND_ASSIGN(tmp_, testing::MakeTempDir("image-step"));
  }
  void TearDown() override {
    if (!tmp_.empty()) testing::RemoveTree(tmp_);
  }

  // The fixture `name` through the build and image steps, pushing to
  // `registry` as acme/app with the tags of a job on branch feature/login.
  PipelineOptions Options(const std::string& name, const std::string& path,
                          oci::RegistryOptions registry) {
    absl::StatusOr<std::string> src = testing::CopyFixture(name, tmp_);
    EXPECT_OK(src.status());
    PipelineOptions options;
    options.source_dir = src.value_or("");
    options.work_dir = tmp_;
    options.target_dir = tmp_ + "/target";  // outside the checkout
    options.cargo_home = tmp_ + "/cargo-home";
    options.path = path;
    options.grace = absl::Seconds(2);
    options.steps = {"build", "image"};
    registry.backoff = {.initial = absl::Milliseconds(50),
                        .max = absl::Milliseconds(200)};
    registry.max_attempts = 2;
    Job job{.repo = "https://git.example.com/Acme/App.git",
            .branch = "feature/login",
            .commit = std::string(40, 'c')};
    options.image_step =
        MakeImageStep({.builder = "buildah",
                       .storage_dir = tmp_ + "/buildah",
                       .path = path,
                       .registry = std::move(registry),
                       .repository = ImageRepositoryFor(job.repo),
                       .tags = ImageTagsFor(job)});
    return options;
  }

  std::string tmp_;
};

TEST_F(ImageStepTest, BuildsAndPushesTheCratesImageWithCommitAndBranchTags) {
  CIAGENT_REQUIRE_CARGO(path);
  CIAGENT_REQUIRE_BUILDAH(buildah_path);
  CIAGENT_START_REGISTRY(registry,
                         {.auth = RegistryServerOptions::Auth::kToken});
  PipelineOptions options = Options("with_dockerfile", path,
                                    {.registry = registry->url(),
                                     .username = "ci",
                                     .password = registry->options().password});
  ASSERT_OK_AND_ASSIGN(PipelineResult result, RunPipeline(options, nullptr));
  ASSERT_EQ(result.status, JobStatus::kSuccess) << result.reason;
  const StepRecord* image = FindStep(result, "image");
  ASSERT_NE(image, nullptr);
  EXPECT_EQ(image->status, StepStatus::kOk) << image->reason;
  EXPECT_EQ(result.image.reference,
            absl::StrCat(registry->host(), "/acme/app:", std::string(40, 'c')));
  EXPECT_THAT(result.image.tags,
              ElementsAre(std::string(40, 'c'), "feature-login"));
  EXPECT_EQ(result.image.builder, "buildah");
  EXPECT_GT(result.image.bytes_uploaded, 0);
  const testing::InspectOptions creds{.username = "ci",
                                      .password = registry->options().password};
  EXPECT_THAT(InspectDigest(result.image.reference, creds),
              IsOkAndHolds(result.image.digest));
  EXPECT_THAT(
      InspectDigest(registry->host() + "/acme/app:feature-login", creds),
      IsOkAndHolds(result.image.digest));
  // The kept buildah storage is a cache entry the pruner sees as used.
  EXPECT_TRUE(std::filesystem::exists(tmp_ + "/buildah/ciagent-last-use"));
}

// The image config of `image` (host:port/repo:tag) on a registry without
// auth, according to `skopeo inspect --config`.
std::string InspectConfig(const std::string& image) {
  ProcessOptions skopeo;
  skopeo.argv = {"/usr/bin/skopeo", "inspect", "--config", "--tls-verify=false",
                 "docker://" + image};
  skopeo.timeout = absl::Minutes(1);
  std::string out;
  absl::StatusOr<ProcessResult> run =
      RunProcess(skopeo, [&out](StreamKind kind, absl::string_view line) {
        if (kind == StreamKind::kStdout) absl::StrAppend(&out, line, "\n");
      });
  EXPECT_OK(run.status());
  return out;
}

// The repository's [package.metadata.ciagent.image] names the Dockerfile
// and the image: the image is built from docker/Dockerfile (the root one,
// which cannot build, stays unused) and pushed as team/app, not as the
// repository URL's acme/app.
TEST_F(ImageStepTest, ConfiguredDockerfileAndImageNameAreUsed) {
  CIAGENT_REQUIRE_CARGO(path);
  CIAGENT_REQUIRE_BUILDAH(buildah_path);
  CIAGENT_START_REGISTRY(registry);
  PipelineOptions options =
      Options("with_dockerfile", path, {.registry = registry->url()});
  const std::string src = options.source_dir;
  ASSERT_EQ(mkdir((src + "/docker").c_str(), 0755), 0);
  ASSERT_EQ(rename((src + "/Dockerfile").c_str(),
                   (src + "/docker/Dockerfile").c_str()),
            0);
  std::ofstream(src + "/docker/Dockerfile", std::ios::app)
      << "LABEL dev.ciagent.test.dockerfile=\"docker/Dockerfile\"\n";
  std::ofstream(src + "/Dockerfile")
      << "FROM scratch\nCOPY not-in-the-checkout /nothing\n";
  std::ofstream(src + "/Cargo.toml", std::ios::app)
      << "\n[package.metadata.ciagent.image]\n"
         "dockerfile = \"docker/Dockerfile\"\n"
         "name = \"team/app\"\n";
  ASSERT_OK_AND_ASSIGN(PipelineConfig config, ReadPipelineConfig(src));
  ApplyPipelineConfig(std::move(config), &options);
  options.steps = {"build", "image"};

  ASSERT_OK_AND_ASSIGN(PipelineResult result, RunPipeline(options, nullptr));

  ASSERT_EQ(result.status, JobStatus::kSuccess) << result.reason;
  const StepRecord* image = FindStep(result, "image");
  ASSERT_NE(image, nullptr);
  EXPECT_EQ(image->status, StepStatus::kOk) << image->reason;
  const std::string pushed =
      absl::StrCat(registry->host(), "/team/app:", std::string(40, 'c'));
  EXPECT_EQ(result.image.reference, pushed);
  EXPECT_THAT(InspectDigest(pushed, {}), IsOkAndHolds(result.image.digest));
  EXPECT_FALSE(
      InspectDigest(registry->host() + "/acme/app:feature-login", {}).ok());
  EXPECT_THAT(InspectConfig(pushed),
              HasSubstr(R"("dev.ciagent.test.dockerfile": "docker/Dockerfile")"));
}

TEST_F(ImageStepTest, CrateWithoutDockerfileSkipsTheStep) {
  CIAGENT_REQUIRE_CARGO(path);
  PipelineOptions options =
      Options("passing", path, {.registry = "127.0.0.1:1"});
  ASSERT_OK_AND_ASSIGN(PipelineResult result, RunPipeline(options, nullptr));
  EXPECT_EQ(result.status, JobStatus::kSuccess);
  const StepRecord* image = FindStep(result, "image");
  ASSERT_NE(image, nullptr);
  EXPECT_EQ(image->status, StepStatus::kSkipped);
  EXPECT_EQ(image->reason, "no Dockerfile");
  EXPECT_EQ(result.image.digest, "");
}

TEST_F(ImageStepTest, RejectedCredentialsFailTheStepSayingWhy) {
  CIAGENT_REQUIRE_CARGO(path);
  CIAGENT_REQUIRE_BUILDAH(buildah_path);
  CIAGENT_START_REGISTRY(registry,
                         {.auth = RegistryServerOptions::Auth::kBasic});
  PipelineOptions options = Options("with_dockerfile", path,
                                    {.registry = registry->url(),
                                     .username = "ci",
                                     .password = "wrong-1234"});
  ASSERT_OK_AND_ASSIGN(PipelineResult result, RunPipeline(options, nullptr));
  EXPECT_EQ(result.status, JobStatus::kFailed);
  const StepRecord* image = FindStep(result, "image");
  ASSERT_NE(image, nullptr);
  EXPECT_EQ(image->status, StepStatus::kFailed);
  EXPECT_THAT(image->reason, HasSubstr("rejected the credentials"));
  EXPECT_THAT(image->reason, ::testing::Not(HasSubstr("wrong-1234")));
}

TEST_F(ImageStepTest, UnreachableRegistryIsTheAgentsFailure) {
  CIAGENT_REQUIRE_CARGO(path);
  CIAGENT_REQUIRE_BUILDAH(buildah_path);
  CIAGENT_START_REGISTRY(registry);
  const std::string url = registry->url();
  ASSERT_OK(registry->Stop());
  PipelineOptions options = Options("with_dockerfile", path, {.registry = url});
  // The job is requeued rather than failed: another agent may reach it.
  EXPECT_THAT(RunPipeline(options, nullptr),
              StatusIs(absl::StatusCode::kUnavailable, HasSubstr("ping")));
}

TEST(ImageNamingTest, RepositoryComesFromTheRepoUrlPath) {
  EXPECT_EQ(ImageRepositoryFor("https://git.example.com/Acme/App.git"),
            "acme/app");
  EXPECT_EQ(ImageRepositoryFor("http://127.0.0.1:3000/team/sub/svc"),
            "team/sub/svc");
  EXPECT_EQ(ImageRepositoryFor("https://h/o/we!rd name.git"), "o/we-rd-name");
}

TEST(ImageNamingTest, TagsAreTheCommitOrJobTagThenTheBranch) {
  Job job{.branch = "main", .commit = std::string(40, 'a')};
  EXPECT_THAT(ImageTagsFor(job), ElementsAre(std::string(40, 'a'), "main"));
  job.image = ImageSpec{.name = "acme/app", .tag = "v1.2"};
  EXPECT_THAT(ImageTagsFor(job), ElementsAre("v1.2", "main"));
  job.branch = "v1.2";
  EXPECT_THAT(ImageTagsFor(job), ElementsAre("v1.2"));
}

}  // namespace
}  // namespace ciagent
