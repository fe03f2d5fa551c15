// The repository's pipeline configuration, from Cargo.toml bytes: every key,
// every refusal rule (a table), precedence, and the checks on the checkout.
#include "ciagent/pipeline/pipeline_config.h"

#include <sys/stat.h>
#include <unistd.h>

#include <fstream>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "ciagent/job/env_rules.h"
#include "ciagent/job/job.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "testing/status_matchers.h"
#include "testing/redis_server.h"

namespace ciagent {
namespace {

using ::ciagent::testing::StatusIs;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::Pair;

constexpr char kWorkspace[] = "[workspace]\nmembers = []\n";

std::string Workspace(const std::string& body) {
  return absl::StrCat(kWorkspace, "[workspace.metadata.ciagent]\n", body);
}

TEST(PipelineConfigTest, ManifestWithoutTableGivesTheDefaults) {
  ASSERT_OK_AND_ASSIGN(
      PipelineConfig config,
      ParsePipelineConfig("[package]\nname = \"a\"\nversion = \"0.1.0\"\n"));
  EXPECT_EQ(config, PipelineConfig{});
  EXPECT_EQ(config.source, "");
  EXPECT_EQ(config.image.dockerfile, "Dockerfile");
  EXPECT_EQ(config.image.context, ".");
}

TEST(PipelineConfigTest, ReadsEveryKeyOfTheContract) {
  ASSERT_OK_AND_ASSIGN(PipelineConfig config, ParsePipelineConfig(Workspace(R"(
steps = ["check", "build", "test", "clippy", "audit", "image"]
features = ["tls", "serde/derive"]
no-default-features = true
exclude = ["xtask"]
env = { RUST_LOG = "debug", RUST_BACKTRACE = "1" }
timeout = "45m"

[workspace.metadata.ciagent.clippy]
args = ["--", "-D", "warnings"]
allow-failure = true
timeout = "10m"

[workspace.metadata.ciagent.test]
runner = "cargo"
args = ["--", "--test-threads", "1"]
timeout = 600

[workspace.metadata.ciagent.image]
dockerfile = "docker/Dockerfile"
context = "."
name = "team/app"
build-args = { PROFILE = "release" }
)")));
  EXPECT_EQ(config.source, "workspace.metadata.ciagent");
  EXPECT_THAT(config.steps, ElementsAre("check", "build", "test", "clippy",
                                        "audit", "image"));
  EXPECT_THAT(config.features, ElementsAre("tls", "serde/derive"));
  EXPECT_FALSE(config.all_features);
  EXPECT_TRUE(config.no_default_features);
  EXPECT_THAT(config.packages, IsEmpty());
  EXPECT_THAT(config.exclude, ElementsAre("xtask"));
  EXPECT_THAT(config.env, ElementsAre(Pair("RUST_LOG", "debug"),
                                      Pair("RUST_BACKTRACE", "1")));
  EXPECT_EQ(config.timeout, absl::Minutes(45));
  EXPECT_THAT(config.clippy.args, ElementsAre("--", "-D", "warnings"));
  EXPECT_TRUE(config.clippy.allow_failure);
  EXPECT_EQ(config.clippy.timeout, absl::Minutes(10));
  EXPECT_EQ(config.test_runner, TestRunner::kCargo);
  EXPECT_EQ(config.test.timeout, absl::Seconds(600));
  EXPECT_FALSE(config.check.allow_failure);
  EXPECT_EQ(config.image.dockerfile, "docker/Dockerfile");
  EXPECT_EQ(config.image.name, "team/app");
  EXPECT_THAT(config.image.build_args, ElementsAre(Pair("PROFILE", "release")));
  EXPECT_THAT(config.warnings, IsEmpty());
}

TEST(PipelineConfigTest, SingleCrateUsesThePackageTable) {
  ASSERT_OK_AND_ASSIGN(PipelineConfig config, ParsePipelineConfig(R"(
[package]
name = "app"
version = "0.1.0"
[package.metadata.ciagent]
all-features = true
packages = ["app"]
)"));
  EXPECT_EQ(config.source, "package.metadata.ciagent");
  EXPECT_TRUE(config.all_features);
  EXPECT_THAT(config.packages, ElementsAre("app"));
}

TEST(PipelineConfigTest, DottedKeysAndInlineTablesMeanTheSame) {
  ASSERT_OK_AND_ASSIGN(PipelineConfig config, ParsePipelineConfig(R"(
[workspace]
metadata.ciagent.clippy = { allow-failure = true }
metadata.ciagent.env.RUST_LOG = "info"
)"));
  EXPECT_TRUE(config.clippy.allow_failure);
  EXPECT_THAT(config.env, ElementsAre(Pair("RUST_LOG", "info")));
}

TEST(PipelineConfigTest, UnknownKeysWarnWithTheKeyMeant) {
  ASSERT_OK_AND_ASSIGN(PipelineConfig config, ParsePipelineConfig(Workspace(R"(
feature = ["x"]
colour = "never"
[workspace.metadata.ciagent.clippy]
allow_failure = true
[workspace.metadata.ciagent.image]
dockerfil = "Dockerfile"
)")));
  EXPECT_THAT(
      config.warnings,
      ElementsAre(
          "workspace.metadata.ciagent.feature: unknown key, ignored (did you "
          "mean \"features\"?)",
          "workspace.metadata.ciagent.colour: unknown key, ignored",
          "workspace.metadata.ciagent.clippy.allow_failure: unknown key, "
          "ignored (did you mean \"allow-failure\"?)",
          "workspace.metadata.ciagent.image.dockerfil: unknown key, ignored "
          "(did you mean \"dockerfile\"?)"));
  EXPECT_FALSE(config.clippy.allow_failure);
}

TEST(PipelineConfigTest, TimeoutsAreCutToTheAgentsMaximum) {
  ASSERT_OK_AND_ASSIGN(
      PipelineConfig config,
      ParsePipelineConfig(Workspace("timeout = \"48h\"\n"
                                    "build.timeout = \"2h\"\n"),
                          {.max_timeout = absl::Hours(1)}));
  EXPECT_EQ(config.timeout, absl::Hours(1));
  EXPECT_EQ(config.build.timeout, absl::Hours(1));
  EXPECT_THAT(config.warnings,
              ElementsAre(HasSubstr("timeout: 48h is more than the agent's "
                                    "maximum, cut to 1h"),
                          HasSubstr("build.timeout: 2h is more")));
}

// Every refusal: the body of [workspace.metadata.ciagent] (or a whole
// manifest when it starts with '['), and the exact message.
struct Refusal {
  const char* name;
  const char* toml;
  const char* message;
};

class RefusalTest : public ::testing::TestWithParam<Refusal> {};

TEST_P(RefusalTest, EndsTheJobWithTheKeysPathAndTheRule) {
  const Refusal& refusal = GetParam();
  const std::string toml = refusal.toml[0] == '['
                               ? std::string(refusal.toml)
                               : Workspace(refusal.toml);
  EXPECT_THAT(ParsePipelineConfig(toml, {.max_timeout = absl::Hours(24)}),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr(refusal.message)))
      << toml;
}

constexpr char kP[] = "workspace.metadata.ciagent";

const Refusal kRefusals[] = {
    {"TooManyRetries", "test.retries = 11",
     "workspace.metadata.ciagent.test.retries: must be in 0..10 (got 11)"},
    {"NegativeRetries", "test.retries = -1",
     "workspace.metadata.ciagent.test.retries: must be in 0..10 (got -1)"},
    {"RetriesNotInteger", "test.retries = \"2\"",
     "workspace.metadata.ciagent.test.retries: expected an integer, got \"2\""},
    {"UnknownFlakyPolicy", "test.flaky = \"retry\"",
     "workspace.metadata.ciagent.test.flaky: expected pass or fail, got "
     "\"retry\""},
    {"QuarantineEmptyName", "test.quarantine = [\"\"]",
     "workspace.metadata.ciagent.test.quarantine[0]: \"\" is empty"},
    {"QuarantineNotArray", "test.quarantine = \"a\"",
     "workspace.metadata.ciagent.test.quarantine: expected an array of "
     "strings"},
    {"AllowFailureNotBoolean", "clippy.allow-failure = \"yes\"",
     "workspace.metadata.ciagent.clippy.allow-failure: expected a boolean, "
     "got \"yes\""},
    {"StepsNotArray", "steps = \"check\"",
     "workspace.metadata.ciagent.steps: expected an array of strings, got "
     "\"check\""},
    {"StepsItemNotString", "steps = [1]",
     "workspace.metadata.ciagent.steps[0]: expected a string, got 1"},
    {"UnknownStep", "steps = [\"check\", \"lint\"]",
     "workspace.metadata.ciagent.steps[1]: \"lint\" is not a step (known: "
     "check, build, test, clippy, audit, image)"},
    {"StepTwice", "steps = [\"test\", \"test\"]",
     "workspace.metadata.ciagent.steps[1]: \"test\" is listed twice"},
    {"NoSteps", "steps = []",
     "workspace.metadata.ciagent.steps: must name at least one step (leave "
     "it out for all)"},
    {"FeatureLikeAFlag", "features = [\"--config=x\"]",
     "workspace.metadata.ciagent.features[0]: \"--config=x\" must not start "
     "with '-'"},
    {"FeatureWithSpace", "features = [\"a b\"]",
     "workspace.metadata.ciagent.features[0]: \"a b\" may hold only letters, "
     "digits, '_', '-', '/', '+', '.'"},
    {"FeaturesAndAllFeatures", "features = [\"a\"]\nall-features = true",
     "workspace.metadata.ciagent.features: give features or all-features = "
     "true, not both"},
    {"NoDefaultFeaturesNotBoolean", "no-default-features = 1",
     "workspace.metadata.ciagent.no-default-features: expected a boolean, "
     "got 1"},
    {"PackageLikeAFlag", "packages = [\"-Zbuild-std\"]",
     "workspace.metadata.ciagent.packages[0]: \"-Zbuild-std\" must not start "
     "with '-'"},
    {"PackagesAndExclude", "packages = [\"a\"]\nexclude = [\"b\"]",
     "workspace.metadata.ciagent.exclude: applies to the whole workspace: "
     "give packages or exclude, not both"},
    {"EnvNotTable", "env = [\"A=1\"]",
     "workspace.metadata.ciagent.env: expected a table of strings, got an "
     "array"},
    {"EnvValueNotString", "env = { N = 3 }",
     "workspace.metadata.ciagent.env.N: expected a string, got 3"},
    {"EnvBadName", "env = { \"A.B\" = \"1\" }",
     "workspace.metadata.ciagent.env.\"A.B\": names must match "
     "^[A-Za-z_][A-Za-z0-9_]{0,127}$"},
    {"EnvRustcWrapper", "env = { RUSTC_WRAPPER = \"/bin/sh\" }",
     "workspace.metadata.ciagent.env.RUSTC_WRAPPER: reserved by the agent"},
    {"EnvRustc", "env = { RUSTC = \"x\" }",
     "workspace.metadata.ciagent.env.RUSTC: reserved by the agent"},
    {"EnvCargoHome", "env = { CARGO_HOME = \"/tmp\" }",
     "workspace.metadata.ciagent.env.CARGO_HOME: reserved by the agent"},
    {"EnvTargetDir", "env = { CARGO_TARGET_DIR = \"/tmp\" }",
     "workspace.metadata.ciagent.env.CARGO_TARGET_DIR: reserved by the agent"},
    {"EnvPath", "env = { PATH = \"/tmp\" }",
     "workspace.metadata.ciagent.env.PATH: reserved by the agent"},
    {"EnvHome", "env = { HOME = \"/tmp\" }",
     "workspace.metadata.ciagent.env.HOME: reserved by the agent"},
    {"EnvLdPreload", "env = { LD_PRELOAD = \"/x.so\" }",
     "workspace.metadata.ciagent.env.LD_PRELOAD: reserved by the agent"},
    {"TimeoutNotDuration", "timeout = \"soon\"",
     "workspace.metadata.ciagent.timeout: expected a positive duration like "
     "\"45m\", \"1h30m\" or \"90s\", got \"soon\""},
    {"TimeoutNegative", "timeout = \"-5m\"",
     "workspace.metadata.ciagent.timeout: expected a positive duration"},
    {"TimeoutZeroSeconds", "test.timeout = 0",
     "workspace.metadata.ciagent.test.timeout: must be a positive number of "
     "seconds"},
    {"TimeoutBoolean", "timeout = true",
     "workspace.metadata.ciagent.timeout: expected a duration like \"45m\", "
     "got true"},
    {"StepNotTable", "clippy = true",
     "workspace.metadata.ciagent.clippy: expected a table, got true"},
    {"ArgsNotArray", "test.args = \"--nocapture\"",
     "workspace.metadata.ciagent.test.args: expected an array of strings"},
    {"ArgTargetDir", "build.args = [\"--target-dir\", \"/tmp/x\"]",
     "workspace.metadata.ciagent.build.args[0]: \"--target-dir\" is refused: "
     "the agent chooses the target directory"},
    {"ArgTargetDirJoined", "check.args = [\"--target-dir=/tmp\"]",
     "workspace.metadata.ciagent.check.args[0]: \"--target-dir=/tmp\" is "
     "refused"},
    {"ArgManifestPath", "test.args = [\"--manifest-path\", \"x/Cargo.toml\"]",
     "workspace.metadata.ciagent.test.args[0]: \"--manifest-path\" is "
     "refused: the agent builds the checkout's root Cargo.toml"},
    {"ArgConfig", "check.args = [\"--config\", \"build.rustc-wrapper='x'\"]",
     "workspace.metadata.ciagent.check.args[0]: \"--config\" is refused"},
    {"ArgUnstable", "build.args = [\"-Zbuild-std\"]",
     "workspace.metadata.ciagent.build.args[0]: \"-Zbuild-std\" is refused"},
    {"ArgMessageFormatBuild", "build.args = [\"--message-format=short\"]",
     "workspace.metadata.ciagent.build.args[0]: \"--message-format=short\" is "
     "refused: the agent reads cargo's JSON messages of this step"},
    {"ArgMessageFormatClippy", "clippy.args = [\"--message-format\", \"human\"]",
     "workspace.metadata.ciagent.clippy.args[0]: \"--message-format\" is "
     "refused"},
    {"ArgColor", "check.args = [\"--color\", \"always\"]",
     "workspace.metadata.ciagent.check.args[0]: \"--color\" is refused"},
    {"ArgOffline", "check.args = [\"--offline\"]",
     "workspace.metadata.ciagent.check.args[0]: \"--offline\" is refused"},
    {"ArgFrozen", "test.args = [\"--frozen\"]",
     "workspace.metadata.ciagent.test.args[0]: \"--frozen\" is refused"},
    {"HarnessColor", "test.args = [\"--\", \"--color=always\"]",
     "workspace.metadata.ciagent.test.args[1]: \"--color=always\" is refused"},
    {"HarnessFormat", "test.args = [\"--\", \"--format\", \"terse\"]",
     "workspace.metadata.ciagent.test.args[1]: \"--format\" is refused"},
    {"RunnerUnknown", "test.runner = \"bazel\"",
     "workspace.metadata.ciagent.test.runner: expected auto, nextest or "
     "cargo, got \"bazel\""},
    {"DockerfileAbsolute", "image.dockerfile = \"/etc/Dockerfile\"",
     "workspace.metadata.ciagent.image.dockerfile: \"/etc/Dockerfile\" must "
     "be relative to the checkout"},
    {"DockerfileDotDot", "image.dockerfile = \"docker/../../Dockerfile\"",
     "workspace.metadata.ciagent.image.dockerfile: "
     "\"docker/../../Dockerfile\" must not contain '..'"},
    {"ContextDotDot", "image.context = \"..\"",
     "workspace.metadata.ciagent.image.context: \"..\" must not contain '..'"},
    {"DockerfileOutsideContext",
     "image = { context = \"app\", dockerfile = \"docker/Dockerfile\" }",
     "workspace.metadata.ciagent.image.dockerfile: \"docker/Dockerfile\" must "
     "lie inside the context \"app\""},
    {"ImageNameUppercase", "image.name = \"Team/App\"",
     "workspace.metadata.ciagent.image.name: \"Team/App\" is not a "
     "repository name"},
    {"BuildArgNotString", "image.build-args = { N = 1 }",
     "workspace.metadata.ciagent.image.build-args.N: expected a string, got 1"},
    {"BaseWithDockerfile",
     "image = { base = \"reg.io/base:1\", dockerfile = \"Dockerfile\" }",
     "workspace.metadata.ciagent.image.dockerfile: image.base assembles the "
     "image without a Dockerfile; give one of base and dockerfile"},
    {"BaseDigestInvalid", "image.base = \"reg.io/base@sha256:abc\"",
     "workspace.metadata.ciagent.image.base: image reference "
     "\"reg.io/base@sha256:abc\": invalid digest"},
    {"AssemblyKeyWithoutBase", "image.entrypoint = [\"/app\"]",
     "workspace.metadata.ciagent.image.entrypoint: applies to image assembly "
     "only: set image.base too"},
    {"PathRelative", "image = { base = \"reg.io/b:1\", path = \"usr/bin\" }",
     "workspace.metadata.ciagent.image.path: \"usr/bin\" must be absolute "
     "(inside /)"},
    {"PathLeavesRoot",
     "image = { base = \"reg.io/b:1\", path = \"/usr/../../etc\" }",
     "workspace.metadata.ciagent.image.path: \"/usr/../../etc\" must not "
     "contain '..': it must stay inside /"},
    {"BinaryWithSlash",
     "image = { base = \"reg.io/b:1\", binaries = [\"bin/app\"] }",
     "workspace.metadata.ciagent.image.binaries[0]: \"bin/app\" is not an "
     "executable's file name"},
    {"BinaryTwice",
     "image = { base = \"reg.io/b:1\", binaries = [\"app\", \"app\"] }",
     "workspace.metadata.ciagent.image.binaries[1]: \"app\" is listed twice"},
    {"PortOutOfRange", "image = { base = \"reg.io/b:1\", ports = [70000] }",
     "workspace.metadata.ciagent.image.ports[0]: \"70000\" is not a port"},
    {"PortProtocol",
     "image = { base = \"reg.io/b:1\", ports = [\"53/icmp\"] }",
     "workspace.metadata.ciagent.image.ports[0]: \"53/icmp\" is not a port"},
    {"WorkdirRelative",
     "image = { base = \"reg.io/b:1\", workdir = \"data\" }",
     "workspace.metadata.ciagent.image.workdir: \"data\" must be absolute"},
    {"LabelNotString",
     "image = { base = \"reg.io/b:1\", labels = { team = 1 } }",
     "workspace.metadata.ciagent.image.labels.team: expected a string, got 1"},
    {"CiagentNotTable", "[workspace]\nmetadata.ciagent = 1\n",
     "workspace.metadata.ciagent: expected a table, got 1"},
    {"BothTables",
     "[workspace]\n[workspace.metadata.ciagent]\n[package]\nname = \"a\"\n"
     "[package.metadata.ciagent]\n",
     "workspace.metadata.ciagent and package.metadata.ciagent: give one, not "
     "both"},
    {"MalformedToml", "[workspace\n", "Cargo.toml:1:"},
};

INSTANTIATE_TEST_SUITE_P(
    Rules, RefusalTest, ::testing::ValuesIn(kRefusals),
    [](const ::testing::TestParamInfo<Refusal>& info) {
      return std::string(info.param.name);
    });

TEST(PipelineConfigTest, BaseSelectsAssemblyWithItsSettings) {
  ASSERT_OK_AND_ASSIGN(PipelineConfig config, ParsePipelineConfig(Workspace(R"(
[workspace.metadata.ciagent.image]
base = "registry.example.com/base/debian@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
binaries = ["server", "migrate"]
path = "//opt/./app/"
entrypoint = "/opt/app/server"
cmd = ["--port", "8080"]
env = { RUST_LOG = "info", MODE = "prod" }
workdir = "/srv"
user = "1000:1000"
ports = [8080, "9090/udp"]
labels = { team = "payments" }
)")));
  const ImageConfig& image = config.image;
  EXPECT_TRUE(image.assembled());
  EXPECT_EQ(image.base,
            "registry.example.com/base/debian@sha256:0123456789abcdef0123456789"
            "abcdef0123456789abcdef0123456789abcdef");
  EXPECT_THAT(image.binaries, ElementsAre("server", "migrate"));
  EXPECT_EQ(image.path, "/opt/app");
  EXPECT_THAT(image.entrypoint, ElementsAre("/opt/app/server"));
  EXPECT_THAT(image.cmd, ElementsAre("--port", "8080"));
  EXPECT_THAT(image.env, ElementsAre(Pair("RUST_LOG", "info"),
                                     Pair("MODE", "prod")));
  EXPECT_EQ(image.workdir, "/srv");
  EXPECT_EQ(image.user, "1000:1000");
  EXPECT_THAT(image.ports, ElementsAre("8080/tcp", "9090/udp"));
  EXPECT_THAT(image.labels, ElementsAre(Pair("team", "payments")));
  EXPECT_THAT(PipelineConfigJson(config),
              HasSubstr(R"("path":"/opt/app","entrypoint":["/opt/app/server"])"));
}

TEST(PipelineConfigTest, AssemblyDefaultsToEveryBinaryInUsrLocalBinAsNonRoot) {
  ASSERT_OK_AND_ASSIGN(PipelineConfig config,
                       ParsePipelineConfig(Workspace(
                           "image.base = \"reg.example.com/base:12\"\n")));
  EXPECT_TRUE(config.image.assembled());
  EXPECT_THAT(config.image.binaries, ::testing::IsEmpty());
  EXPECT_EQ(config.image.path, "/usr/local/bin");
  EXPECT_EQ(config.image.user, "65532");
  EXPECT_THAT(config.image.entrypoint, ::testing::IsEmpty());
  EXPECT_FALSE(PipelineConfig{}.image.assembled());
}

// The table above matches substrings, so long rules stay readable; this
// checks the whole text of one message.
TEST(PipelineConfigTest, MessageNamesFullPathAndRule) {
  absl::StatusOr<PipelineConfig> config =
      ParsePipelineConfig(Workspace("clippy.allow-failure = \"yes\"\n"));
  EXPECT_EQ(config.status().message(),
            absl::StrCat(kP, ".clippy.allow-failure: expected a boolean, got "
                             "\"yes\""));
}

TEST(PipelineConfigTest, ArgumentsAfterTheSeparatorGoToTheHarness) {
  ASSERT_OK_AND_ASSIGN(
      PipelineConfig config,
      ParsePipelineConfig(Workspace(
          "test.args = [\"--\", \"--test-threads\", \"1\", \"--offline\"]\n")));
  EXPECT_THAT(config.test.args,
              ElementsAre("--", "--test-threads", "1", "--offline"));
}

TEST(PipelineConfigTest, JobWinsOverRepository) {
  ASSERT_OK_AND_ASSIGN(PipelineConfig repository,
                       ParsePipelineConfig(Workspace(R"(
steps = ["check", "test"]
timeout = "45m"
env = { RUST_LOG = "debug", KEEP = "yes" }
image.name = "team/app"
)")));
  Job job;
  job.steps = {"check"};
  job.timeout = absl::Minutes(5);
  job.env = {{"RUST_LOG", "trace"}};
  job.image = ImageSpec{.name = "acme/override", .tag = ""};
  const PipelineConfig effective = EffectiveConfig(repository, job);
  EXPECT_THAT(effective.steps, ElementsAre("check"));
  EXPECT_EQ(effective.timeout, absl::Minutes(5));
  EXPECT_THAT(effective.env,
              ElementsAre(Pair("KEEP", "yes"), Pair("RUST_LOG", "trace")));
  EXPECT_EQ(effective.image.name, "acme/override");

  // A job that says nothing keeps the repository's settings.
  EXPECT_EQ(EffectiveConfig(repository, Job{}), repository);
}

TEST(PipelineConfigTest, ReadsTheTestPolicyAndTheJobOverridesItsRetries) {
  ASSERT_OK_AND_ASSIGN(PipelineConfig config, ParsePipelineConfig(Workspace(R"(
[workspace.metadata.ciagent.test]
retries = 3
flaky = "fail"
quarantine = ["net::tests::live", "api::slow"]
)")));
  EXPECT_EQ(config.test_retries, 3);
  EXPECT_EQ(config.flaky, FlakyPolicy::kFail);
  EXPECT_THAT(config.quarantine, ElementsAre("net::tests::live", "api::slow"));
  EXPECT_THAT(config.warnings, IsEmpty());
  EXPECT_THAT(PipelineConfigJson(config),
              HasSubstr(R"("test_retries":3,"test_flaky":"fail",)"
                        R"("test_quarantine":["net::tests::live","api::slow"])"));

  Job job;
  EXPECT_EQ(EffectiveConfig(config, job).test_retries, 3);
  job.test_retries = 0;
  EXPECT_EQ(EffectiveConfig(config, job).test_retries, 0);

  ASSERT_OK_AND_ASSIGN(PipelineConfig defaults,
                       ParsePipelineConfig(Workspace("")));
  EXPECT_EQ(defaults.test_retries, std::nullopt);
  EXPECT_EQ(defaults.flaky, FlakyPolicy::kPass);
}

TEST(PipelineConfigTest, JsonHoldsEveryKeyAndNoWarnings) {
  ASSERT_OK_AND_ASSIGN(PipelineConfig config,
                       ParsePipelineConfig(Workspace(
                           "clippy.allow-failure = true\nfeatur = 1\n")));
  EXPECT_EQ(
      PipelineConfigJson(config),
      R"({"source":"workspace.metadata.ciagent","steps":[],"features":[],)"
      R"("all_features":false,"no_default_features":false,"packages":[],)"
      R"("exclude":[],"env":{},"timeout_s":null,)"
      R"("check":{"args":[],"allow_failure":false,"timeout_s":null},)"
      R"("build":{"args":[],"allow_failure":false,"timeout_s":null},)"
      R"("test":{"args":[],"allow_failure":false,"timeout_s":null},)"
      R"("clippy":{"args":[],"allow_failure":true,"timeout_s":null},)"
      R"("audit":{"args":[],"allow_failure":false,"timeout_s":null},)"
      R"("test_runner":"auto","test_retries":null,"test_flaky":"pass",)"
      R"("test_quarantine":[],"image":{"dockerfile":"Dockerfile",)"
      R"("context":".","name":"","build_args":{}}})");
  EXPECT_THAT(PipelineConfigLine(config),
              HasSubstr("config (from workspace.metadata.ciagent): {"));
}

class ReadPipelineConfigTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_OK_AND_ASSIGN(tmp_, testing::MakeTempDir("pipeline-config"));
    src_ = tmp_ + "/src";
    ASSERT_EQ(mkdir(src_.c_str(), 0755), 0);
  }
  void TearDown() override {
    if (!tmp_.empty()) testing::RemoveTree(tmp_);
  }
  void WriteManifest(const std::string& body) {
    std::ofstream(src_ + "/Cargo.toml") << Workspace(body);
  }
  std::string tmp_, src_;
};

TEST_F(ReadPipelineConfigTest, NoManifestGivesTheDefaults) {
  ASSERT_OK_AND_ASSIGN(PipelineConfig config, ReadPipelineConfig(src_));
  EXPECT_EQ(config, PipelineConfig{});
}

TEST_F(ReadPipelineConfigTest, DockerfileSymlinkLeavingTheCheckoutIsRefused) {
  WriteManifest("image.dockerfile = \"docker/Dockerfile\"\n");
  std::ofstream(tmp_ + "/Dockerfile.outside") << "FROM scratch\n";
  ASSERT_EQ(mkdir((src_ + "/docker").c_str(), 0755), 0);
  ASSERT_EQ(symlink((tmp_ + "/Dockerfile.outside").c_str(),
                    (src_ + "/docker/Dockerfile").c_str()),
            0);
  EXPECT_THAT(ReadPipelineConfig(src_),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       "workspace.metadata.ciagent.image.dockerfile: "
                       "\"docker/Dockerfile\" leaves the checkout through a "
                       "symbolic link"));
}

TEST_F(ReadPipelineConfigTest, ContextDirectorySymlinkLeavingIsRefused) {
  WriteManifest("image = { context = \"app\", dockerfile = \"app/Dockerfile\" }\n");
  ASSERT_EQ(symlink(tmp_.c_str(), (src_ + "/app").c_str()), 0);
  EXPECT_THAT(ReadPipelineConfig(src_),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("image.context: \"app\" leaves the checkout")));
}

TEST_F(ReadPipelineConfigTest, SymlinkInsideTheCheckoutIsAccepted) {
  WriteManifest("image.dockerfile = \"Dockerfile.link\"\n");
  std::ofstream(src_ + "/Dockerfile.real") << "FROM scratch\n";
  ASSERT_EQ(symlink("Dockerfile.real", (src_ + "/Dockerfile.link").c_str()), 0);
  ASSERT_OK_AND_ASSIGN(PipelineConfig config, ReadPipelineConfig(src_));
  EXPECT_EQ(config.image.dockerfile, "Dockerfile.link");
}

// Each name the repository may not set, a job may not set either, and the
// other way round: there is one list.
TEST(EnvRulesTest, JobAndRepositoryConfigurationRefuseTheSameNames) {
  for (const char* name :
       {"RUST_LOG", "PATH", "CI", "CI_CACHE_DIR", "SCCACHE_DIR", "GIT_DIR",
        "REDIS_PASSWORD", "CARGO_TERM_COLOR", "CARGO_HTTP_PROXY", "LDX"}) {
    const absl::StatusOr<Job> job = ParseJob(absl::StrCat(
        R"({"job_id": "j", "repo": "https://git.example/a.git",)",
        R"( "branch": "main", "commit": ")", std::string(40, 'a'),
        R"(", "env": {")", name, R"(": "x"}})"));
    const absl::StatusOr<PipelineConfig> config = ParsePipelineConfig(
        absl::StrCat("[package]\nname = \"a\"\n[package.metadata.ciagent]\n",
                     "env = { ", name, " = \"x\" }\n"),
        {});
    EXPECT_EQ(job.ok(), !IsReservedEnvName(name)) << name << job.status();
    EXPECT_EQ(config.ok(), !IsReservedEnvName(name))
        << name << config.status();
  }
}

}  // namespace
}  // namespace ciagent
