// Image assembly against real distribution registries. Base images are made
// here (a small root filesystem, umoci, skopeo); what the agent pushes is
// read back with skopeo, unpacked with umoci, and its binary run from the
// unpacked root filesystem.
#include <simdjson.h>
#include <stdlib.h>
#include <sys/stat.h>

#include <filesystem>

#include "absl/strings/str_cat.h"
#include "ciagent/base/sha256.h"
#include "ciagent/image/assembly.h"
#include "ciagent/image/image_step.h"
#include "ciagent/oci/manifest.h"
#include "ciagent/pipeline/pipeline.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "testing/base_image.h"
#include "testing/oci_layout.h"
#include "testing/redis_server.h"  // MakeTempDir, RemoveTree
#include "testing/registry_server.h"
#include "testing/status_matchers.h"
#include "testing/subprocess.h"

namespace ciagent {
namespace {

using ::ciagent::testing::BaseImage;
using ::ciagent::testing::ReadBack;
using ::ciagent::testing::RegistryServerOptions;
using ::ciagent::testing::StatusIs;
using ::testing::ElementsAre;
using ::testing::HasSubstr;

// The commit of the images below: 2023-11-14T22:13:20Z.
const absl::Time kCommitTime = absl::FromUnixSeconds(1700000000);

std::string ConfigString(const std::string& config, const char* pointer) {
  simdjson::dom::parser parser;
  std::string_view value;
  if (parser.parse(config).at_pointer(pointer).get_string().get(value) !=
      simdjson::SUCCESS) {
    return "";
  }
  return std::string(value);
}

class AssemblyRegistryTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_OK_AND_ASSIGN(tmp_, testing::MakeTempDir("assembly-registry"));
    absl::StatusOr<std::string> binary =
        testing::BuildHelloBinary(tmp_, "hello");
    if (binary.status().code() == absl::StatusCode::kNotFound &&
        !testing::RunningUnderCi()) {
      GTEST_SKIP() << binary.status().message();
    }
    ASSERT_OK(binary.status());
    binary_ = *binary;
  }
  void TearDown() override {
    if (!tmp_.empty()) testing::RemoveTree(tmp_);
  }

  // A scratch directory of its own for each use.
  std::string Dir(const std::string& name) {
    const std::string dir = absl::StrCat(tmp_, "/", name);
    std::filesystem::create_directories(dir);
    return dir;
  }

  absl::StatusOr<BaseImage> PushBase(testing::BaseImageSpec spec) {
    spec.work_dir = Dir(absl::StrCat("base-", ++bases_));
    absl::StatusOr<BaseImage> base = testing::PushBaseImage(spec);
    return base;
  }

  // Assembly of `binary_` as "hello" on `base`, pushed to `registry`.
  AssemblyOptions Options(const std::string& base,
                          oci::RegistryOptions registry,
                          const std::string& repository = "acme/hello") {
    AssemblyOptions options;
    options.image.base = base;
    options.executables = {{"hello", binary_}};
    options.created = kCommitTime;
    options.source = "https://git.example.com/acme/hello";
    options.revision = "0123456789abcdef0123456789abcdef01234567";
    options.registry = std::move(registry);
    options.repository = repository;
    options.tags = {"0123456789abcdef0123456789abcdef01234567", "main"};
    options.work_dir = absl::StrCat(tmp_, "/work-", ++works_);
    return options;
  }

  std::string tmp_;
  std::string binary_;
  int bases_ = 0;
  int works_ = 0;
};

#define START_BASE(var, ...)                                              \
  BaseImage var;                                                          \
  do {                                                                    \
    absl::StatusOr<BaseImage> pushed_ = PushBase(__VA_ARGS__);            \
    if (pushed_.status().code() == absl::StatusCode::kNotFound &&         \
        !testing::RunningUnderCi()) {                                     \
      GTEST_SKIP() << pushed_.status().message();                         \
    }                                                                     \
    ASSERT_OK(pushed_.status());                                          \
    var = *std::move(pushed_);                                            \
  } while (0)

TEST_F(AssemblyRegistryTest, AssembledImageRunsFromTheUnpackedRootFilesystem) {
  CIAGENT_START_REGISTRY(registry);
  START_BASE(base, {.registry = registry->host()});
  AssemblyOptions options = Options(base.reference, {.registry = registry->url()});
  options.image.env = {{"RUST_LOG", "info"}};
  options.image.ports = {"8080/tcp"};
  options.image.labels = {{"team", "payments"}};
  ASSERT_OK_AND_ASSIGN(AssemblyResult image, AssembleImage(options));

  EXPECT_EQ(image.reference,
            registry->host() +
                "/acme/hello:0123456789abcdef0123456789abcdef01234567");
  EXPECT_EQ(image.base_manifest_digest, base.digest);
  EXPECT_EQ(image.platform, oci::HostPlatform());
  // Same registry: the base's layer is mounted, only the new one and the
  // config are uploaded.
  EXPECT_EQ(image.push.blobs_mounted, base.layers);
  EXPECT_EQ(image.push.blobs_uploaded, 2);
  EXPECT_EQ(image.push.blobs_copied, 0);
  EXPECT_THAT(image.push.tags,
              ElementsAre("0123456789abcdef0123456789abcdef01234567", "main"));
  EXPECT_FALSE(std::filesystem::exists(options.work_dir));

  ASSERT_OK_AND_ASSIGN(ReadBack back,
                       testing::ReadBackImage(registry->host() + "/acme/hello:main",
                                              {.work_dir = Dir("read")}));
  EXPECT_EQ("sha256:" + Sha256Hex(back.raw_manifest), image.digest);
  ASSERT_OK_AND_ASSIGN(oci::Manifest manifest,
                       oci::ParseManifest(back.raw_manifest));
  ASSERT_EQ(manifest.layers.size(), 2u);
  EXPECT_EQ(manifest.layers[1].digest, image.layer_digest);
  EXPECT_EQ(ConfigString(back.config, "/config/User"), "65532");
  EXPECT_EQ(ConfigString(back.config, "/config/Entrypoint/0"),
            "/usr/local/bin/hello");
  EXPECT_EQ(ConfigString(back.config, "/config/Env/1"), "RUST_LOG=info");
  EXPECT_EQ(ConfigString(back.config, "/config/WorkingDir"), "/home/nonroot");
  EXPECT_EQ(ConfigString(back.config, "/config/Labels/team"), "payments");
  EXPECT_EQ(ConfigString(back.config,
                         "/config/Labels/org.opencontainers.image.revision"),
            "0123456789abcdef0123456789abcdef01234567");
  EXPECT_EQ(ConfigString(back.config, "/created"), "2023-11-14T22:13:20Z");
  simdjson::dom::parser parser;
  simdjson::dom::element port;
  EXPECT_EQ(parser.parse(back.config)
                .at_pointer("/config/ExposedPorts/8080~1tcp")
                .get(port),
            simdjson::SUCCESS);
  EXPECT_THAT(back.config, ::testing::Not(HasSubstr("/bin/sh")));  // base Cmd

  struct stat st {};
  ASSERT_EQ(stat((back.rootfs + "/usr/local/bin/hello").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 07777, 0755u);
  EXPECT_EQ(st.st_uid, geteuid() == 0 ? 0u : geteuid());
  EXPECT_EQ(st.st_mtime, absl::ToUnixSeconds(kCommitTime));
  EXPECT_TRUE(std::filesystem::exists(back.rootfs + "/etc/passwd"));  // base
  EXPECT_THAT(testing::RunFromRootfs(back.rootfs, "/usr/local/bin/hello",
                                     {"the image"}),
              testing::IsOkAndHolds("hello from the image\n"));
}

TEST_F(AssemblyRegistryTest, TwoAgentsAssembleTheSameDigest) {
  CIAGENT_START_REGISTRY(registry);
  START_BASE(base, {.registry = registry->host()});
  AssemblyOptions first = Options(base.reference, {.registry = registry->url()},
                                  "acme/first");
  ASSERT_OK_AND_ASSIGN(AssemblyResult one, AssembleImage(first));
  // Another agent: its own copy of the binary (another path, mode and
  // mtime), another work dir, another repository.
  const std::string copy = Dir("agent-2") + "/hello";
  std::filesystem::copy_file(binary_, copy);
  chmod(copy.c_str(), 0700);
  AssemblyOptions second = Options(base.reference, {.registry = registry->url()},
                                   "acme/second");
  second.executables = {{"hello", copy}};
  ASSERT_OK_AND_ASSIGN(AssemblyResult two, AssembleImage(second));
  EXPECT_EQ(one.digest, two.digest);
  EXPECT_EQ(one.layer_digest, two.layer_digest);
  EXPECT_EQ(one.config_digest, two.config_digest);
  // Another commit time is another image.
  AssemblyOptions later = Options(base.reference, {.registry = registry->url()},
                                  "acme/third");
  later.created = kCommitTime + absl::Seconds(1);
  ASSERT_OK_AND_ASSIGN(AssemblyResult three, AssembleImage(later));
  EXPECT_NE(three.digest, one.digest);
}

TEST_F(AssemblyRegistryTest, MultiPlatformBaseGivesTheManifestOfThePlatform) {
  CIAGENT_START_REGISTRY(registry);
  START_BASE(base, {.registry = registry->host(),
                    .platforms = {"linux/amd64", "linux/arm64"}});
  for (const std::string platform : {"linux/amd64", "linux/arm64"}) {
    AssemblyOptions options = Options(base.reference, {.registry = registry->url()});
    options.platform = platform;
    options.tags = {absl::StrCat("for-", platform.substr(6))};
    ASSERT_OK_AND_ASSIGN(AssemblyResult image, AssembleImage(options));
    EXPECT_EQ(image.base_manifest_digest, base.manifests[platform]) << platform;
    EXPECT_EQ(image.platform, platform);
    EXPECT_EQ(image.base, absl::StrCat(registry->host(), "/base/tiny@",
                                       base.digest));
    ASSERT_OK_AND_ASSIGN(
        ReadBack back,
        testing::ReadBackImage(
            absl::StrCat(registry->host(), "/acme/hello:", options.tags[0]),
            {.work_dir = Dir(absl::StrCat("read-", platform.substr(6)))}));
    EXPECT_EQ(ConfigString(back.config, "/architecture"), platform.substr(6));
  }
  AssemblyOptions s390x = Options(base.reference, {.registry = registry->url()});
  s390x.platform = "linux/s390x";
  EXPECT_THAT(AssembleImage(s390x),
              StatusIs(absl::StatusCode::kNotFound,
                       HasSubstr("no manifest for linux/s390x (the index has "
                                 "linux/amd64, linux/arm64)")));
}

TEST_F(AssemblyRegistryTest, BaseInAnotherRegistryIsCopiedWithAuthOnBoth) {
  CIAGENT_START_REGISTRY(bases, {.auth = RegistryServerOptions::Auth::kToken,
                                 .username = "reader",
                                 .password = "base-registry-secret"});
  CIAGENT_START_REGISTRY(target, {.auth = RegistryServerOptions::Auth::kBasic,
                                  .username = "pusher",
                                  .password = "target-registry-secret"});
  START_BASE(base, {.registry = bases->host(),
                    .username = "reader",
                    .password = "base-registry-secret",
                    .filler_bytes = 6 << 20});
  // The base registry's credentials come from REGISTRY_AUTH_FILE, as an
  // operator gives them; the target's are the agent's own.
  const std::string auth_file = Dir("auth") + "/auth.json";
  ASSERT_OK(testing::WriteAuthFile(
      auth_file, {{bases->host(), "reader", "base-registry-secret"},
                  {target->host(), "pusher", "target-registry-secret"}}));
  setenv("REGISTRY_AUTH_FILE", auth_file.c_str(), 1);
  AssemblyOptions options =
      Options(base.reference, {.registry = target->url(),
                               .username = "pusher",
                               .password = "target-registry-secret",
                               // Several ranges for the 6 MiB layer.
                               .download_range_bytes = 1 << 20});
  absl::StatusOr<AssemblyResult> image = AssembleImage(options);
  unsetenv("REGISTRY_AUTH_FILE");
  ASSERT_OK(image.status());
  EXPECT_EQ(image->push.blobs_copied, base.layers);
  EXPECT_EQ(image->push.blobs_mounted, 0);
  EXPECT_GT(bases->token_requests(), 0);
  ASSERT_OK_AND_ASSIGN(
      ReadBack back,
      testing::ReadBackImage(target->host() + "/acme/hello:main",
                             {.auth_file = auth_file, .work_dir = Dir("read")}));
  EXPECT_EQ("sha256:" + Sha256Hex(back.raw_manifest), image->digest);
  EXPECT_EQ(std::filesystem::file_size(back.rootfs + "/data/filler-5"),
            1u << 20);
  EXPECT_THAT(testing::RunFromRootfs(back.rootfs, "/usr/local/bin/hello",
                                     {"a copied base"}),
              testing::IsOkAndHolds("hello from a copied base\n"));
  // Without the auth file the base registry refuses: no anonymous pulls.
  EXPECT_THAT(AssembleImage(Options(base.reference, {.registry = target->url(),
                                                     .username = "pusher",
                                                     .password =
                                                         "target-registry-secret"})),
              StatusIs(absl::StatusCode::kUnauthenticated,
                       HasSubstr("credentials for " + bases->host() +
                                 " come from REGISTRY_AUTH_FILE")));
}

TEST_F(AssemblyRegistryTest, BadInputFailsWithTheReason) {
  CIAGENT_START_REGISTRY(registry);
  START_BASE(base, {.registry = registry->host()});
  const oci::RegistryOptions to{.registry = registry->url()};
  EXPECT_THAT(AssembleImage(Options(registry->host() + "/base/missing:1", to)),
              StatusIs(absl::StatusCode::kNotFound,
                       HasSubstr("base image " + registry->host() +
                                 "/base/missing:1 not found")));
  EXPECT_THAT(
      AssembleImage(Options(registry->host() + "/base/tiny:no-such-tag", to)),
      StatusIs(absl::StatusCode::kNotFound, HasSubstr("not found")));

  AssemblyOptions missing = Options(base.reference, to);
  missing.image.binaries = {"server"};
  EXPECT_THAT(AssembleImage(missing),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("image.binaries: \"server\" is not a release "
                                 "executable of this build (built: hello)")));
  AssemblyOptions gone = Options(base.reference, to);
  gone.executables = {{"hello", tmp_ + "/deleted"}};
  EXPECT_THAT(AssembleImage(gone),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("binary hello: " + tmp_ + "/deleted")));
  AssemblyOptions outside = Options(base.reference, to);
  outside.image.path = "/usr/../../opt";
  EXPECT_THAT(AssembleImage(outside),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("leaves / through \"..\"")));
  AssemblyOptions two = Options(base.reference, to);
  two.executables.push_back({"other", binary_});
  EXPECT_THAT(AssembleImage(two),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("2 binaries (hello, other) and no "
                                 "image.entrypoint")));
  AssemblyOptions wrong_arch = Options(base.reference, to);
  wrong_arch.platform = "linux/arm64";  // a single-platform amd64 base
  if (oci::HostPlatform() == "linux/amd64") {
    EXPECT_THAT(AssembleImage(wrong_arch),
                StatusIs(absl::StatusCode::kFailedPrecondition,
                         HasSubstr("is for linux/amd64, this agent builds "
                                   "for linux/arm64")));
  }

  // An unreachable registry is the agent's trouble: retry later.
  ASSERT_OK(registry->Stop());
  AssemblyOptions down = Options(base.reference, {.registry = registry->url(),
                                                  .max_attempts = 2});
  EXPECT_THAT(AssembleImage(down), StatusIs(absl::StatusCode::kUnavailable));
}

// The image step chooses assembly when the configuration names a base; no
// Dockerfile, builder or root is involved.
TEST_F(AssemblyRegistryTest, ImageStepAssemblesWhenTheConfigurationNamesABase) {
  CIAGENT_START_REGISTRY(registry);
  START_BASE(base, {.registry = registry->host()});
  ImageStepOptions step_options{.builder = "buildah"};  // never run
  step_options.registry = {.registry = registry->url()};
  step_options.repository = "acme/hello";
  step_options.tags = {"0123456789abcdef0123456789abcdef01234567"};
  step_options.revision = "0123456789abcdef0123456789abcdef01234567";
  step_options.source = "https://git.example.com/acme/hello";
  ImageStep step = MakeImageStep(step_options);

  PipelineResult so_far;
  so_far.artifacts.push_back({.name = "hello", .path = binary_});
  ImageConfig config;
  config.base = base.reference;
  const std::string source_dir = Dir("checkout");  // no Dockerfile, no .git
  const std::string work_dir = Dir("job");
  std::vector<std::string> lines;
  setenv("SOURCE_DATE_EPOCH", "1700000000", 1);
  ImageStepContext context{
      .so_far = so_far,
      .source_dir = source_dir,
      .work_dir = work_dir,
      .time_left = absl::Minutes(5),
      .should_stop = [] { return false; },
      .output = [&lines](absl::string_view, absl::string_view line) {
        lines.emplace_back(line);
      },
      .image = &config};
  ImageRecord record;
  absl::StatusOr<StepRecord> done = step(context, &record);
  unsetenv("SOURCE_DATE_EPOCH");
  ASSERT_OK(done.status());
  EXPECT_EQ(done->status, StepStatus::kOk) << done->reason;
  EXPECT_EQ(record.builder, "assembly");
  EXPECT_EQ(record.reference,
            registry->host() +
                "/acme/hello:0123456789abcdef0123456789abcdef01234567");
  ASSERT_OK_AND_ASSIGN(
      std::string digest,
      testing::InspectDigest(record.reference, {}));
  EXPECT_EQ(record.digest, digest);
  EXPECT_THAT(lines, ::testing::Contains(HasSubstr(
                         "created at 2023-11-14T22:13:20+00:00 "
                         "(SOURCE_DATE_EPOCH")));

  // A binary the build did not make: the step fails with the reason.
  config.binaries = {"server"};
  ASSERT_OK_AND_ASSIGN(StepRecord failed, step(context, &record));
  EXPECT_EQ(failed.status, StepStatus::kFailed);
  EXPECT_THAT(failed.reason, HasSubstr("\"server\" is not a release executable"));

  // The registry gone: an error, so the job is requeued.
  config.binaries.clear();
  ASSERT_OK(registry->Stop());
  step_options.registry.max_attempts = 1;
  EXPECT_THAT(MakeImageStep(step_options)(context, &record),
              StatusIs(absl::StatusCode::kUnavailable));
}

// An agent without root has no Dockerfile builder: a repository that still
// has only a Dockerfile learns why its image step failed.
TEST_F(AssemblyRegistryTest, AssemblyOnlyAgentFailsADockerfileWithTheReason) {
  const std::string source_dir = Dir("dockerfile-checkout");
  ASSERT_OK(testing::WriteText(source_dir + "/Dockerfile",
                               "FROM scratch\nCOPY target/release/hello /\n",
                               0644));
  ImageStepOptions step_options{.builder = "assembly"};
  step_options.registry = {.registry = "127.0.0.1:1"};  // never reached
  step_options.repository = "acme/hello";
  step_options.tags = {"v1"};
  PipelineResult so_far;
  const std::string work_dir = Dir("dockerfile-job");
  const ImageConfig config;  // no base
  ImageStepContext context{.so_far = so_far,
                           .source_dir = source_dir,
                           .work_dir = work_dir,
                           .time_left = absl::Minutes(1),
                           .should_stop = [] { return false; },
                           .output = [](absl::string_view, absl::string_view) {},
                           .image = &config};
  ImageRecord record;
  ASSERT_OK_AND_ASSIGN(StepRecord done,
                       MakeImageStep(step_options)(context, &record));
  EXPECT_EQ(done.status, StepStatus::kFailed);
  EXPECT_THAT(done.reason, HasSubstr("this agent assembles images only"));
  EXPECT_THAT(done.reason, HasSubstr("set image.base"));
}

}  // namespace
}  // namespace ciagent
