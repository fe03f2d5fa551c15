// The image builder: its commands and checks from values, then real buildah
// builds of the with_dockerfile fixture (tests/fixtures/README.md), whose
// binary real cargo builds into a target dir outside the checkout, as the
// pipeline's shared cache does.
#include "ciagent/image/image_builder.h"

#include <openssl/evp.h>
#include <simdjson.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <iostream>
#include <sstream>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/time/clock.h"
#include "ciagent/base/process_runner.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "testing/buildah.h"
#include "testing/cargo_fixture.h"
#include "testing/redis_server.h"
#include "testing/status_matchers.h"
#include "testing/subprocess.h"

namespace ciagent {
namespace {

namespace fs = std::filesystem;

using ::ciagent::testing::StatusIs;
using ::testing::AllOf;
using ::testing::Contains;
using ::testing::ElementsAre;
using ::testing::ElementsAreArray;
using ::testing::HasSubstr;
using ::testing::IsEmpty;

constexpr char kBinary[] = "with_dockerfile";
constexpr char kImageName[] = "localhost/ciagent-image-test:v1";

}  // namespace
}  // namespace ciagent

namespace ciagent {
namespace {

std::string Sha256Of(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream data;
  data << in.rdbuf();
  const std::string bytes = data.str();
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int size = 0;
  EVP_Digest(bytes.data(), bytes.size(), digest, &size, EVP_sha256(), nullptr);
  std::string hex = "sha256:";
  for (unsigned int i = 0; i < size; ++i) {
    absl::StrAppend(&hex, absl::Hex(digest[i], absl::kZeroPad2));
  }
  return hex;
}

std::string BlobPath(const std::string& layout, std::string_view digest) {
  if (digest.substr(0, 7) == "sha256:") digest.remove_prefix(7);
  return absl::StrCat(layout, "/blobs/sha256/",
                      absl::string_view(digest.data(), digest.size()));
}

// stdout lines of a command, or the failure.
absl::StatusOr<std::vector<std::string>> RunForOutput(
    const std::vector<std::string>& argv, const std::string& path,
    const std::string& working_dir = "") {
  ProcessOptions process;
  process.argv = argv;
  process.working_dir = working_dir;
  process.env = {{"PATH", path}, {"HOME", std::getenv("HOME")}};
  if (const char* rustup = std::getenv("RUSTUP_HOME")) {
    process.env.emplace_back("RUSTUP_HOME", rustup);
  }
  process.timeout = absl::Minutes(2);
  std::vector<std::string> lines;
  std::string errors;
  absl::StatusOr<ProcessResult> result =
      RunProcess(process, [&](StreamKind kind, absl::string_view line) {
        if (kind == StreamKind::kStdout) {
          lines.emplace_back(line);
        } else {
          absl::StrAppend(&errors, line, "\n");
        }
      });
  if (!result.ok()) return result.status();
  if (result->exit_code != 0) {
    return absl::InternalError(absl::StrCat(absl::StrJoin(argv, " "),
                                            " exited with code ",
                                            result->exit_code, ": ", errors));
  }
  return lines;
}

ImageBuildOptions PlanOptions() {
  ImageBuildOptions options;
  options.context_dir = "/ci/job/src";
  options.layout_dir = "/ci/job/image";
  options.tag = "v1";
  return options;
}

// --- Commands and checks, from values --------------------------------------

TEST(PlanImageBuildTest, BuildahUsesVfsChrootAndATemporaryStorageOfItsOwn) {
  ImageBuildOptions options = PlanOptions();
  options.platform = "linux/arm64";
  options.build_args = {{"GREETING", "hello world"}, {"EMPTY", ""}};
  options.cache_ref = "registry.local/cache:app";  // docker only

  ASSERT_OK_AND_ASSIGN(ImageBuildCommands plan,
                       PlanImageBuild(options, "buildah", kImageName));

  const std::vector<std::string> global = {"buildah",
                                           "--root",
                                           "/ci/job/image.work/storage",
                                           "--runroot",
                                           "/ci/job/image.work/run",
                                           "--storage-driver",
                                           "vfs"};
  std::vector<std::string> build = global;
  build.insert(
      build.end(),
      {"bud", "--isolation", "chroot", "-f", "/ci/job/src/Dockerfile", "-t",
       kImageName, "--platform", "linux/arm64", "--build-arg",
       "GREETING=hello world", "--build-arg", "EMPTY=", "/ci/job/src"});
  EXPECT_THAT(plan.build, ElementsAreArray(build));
  std::vector<std::string> push = global;
  push.insert(push.end(),
              {"push", kImageName, "oci:/ci/job/image.work/layout:v1"});
  EXPECT_THAT(plan.export_layout, ElementsAreArray(push));
  // The temporary storage goes with the work dir; no rmi needed.
  EXPECT_THAT(plan.remove_image, IsEmpty());
  EXPECT_EQ(plan.work_dir, "/ci/job/image.work");
  EXPECT_EQ(plan.staging_dir, "/ci/job/image.work/layout");
  EXPECT_EQ(plan.tmp_dir, "/ci/job/image.work/tmp");
}

TEST(PlanImageBuildTest, BuildahKeepsAPersistentStorageButRemovesTheImage) {
  ImageBuildOptions options = PlanOptions();
  options.storage_dir = "/cache/buildah";
  options.layout_dir = "/ci/job/image/";
  options.dockerfile = "docker/Dockerfile.release";

  ASSERT_OK_AND_ASSIGN(ImageBuildCommands plan,
                       PlanImageBuild(options, "buildah", kImageName));

  EXPECT_EQ(plan.storage_dir, "/cache/buildah");
  EXPECT_THAT(plan.build, Contains("/cache/buildah"));
  EXPECT_THAT(plan.build, Contains("/ci/job/src/docker/Dockerfile.release"));
  EXPECT_EQ(plan.runroot_dir, "/ci/job/image.work/run");
  EXPECT_THAT(plan.remove_image,
              ElementsAre("buildah", "--root", "/cache/buildah", "--runroot",
                          "/ci/job/image.work/run", "--storage-driver", "vfs",
                          "rmi", kImageName));
}

TEST(PlanImageBuildTest, DockerExportsAnOciLayoutDirectoryWithRegistryCache) {
  ImageBuildOptions options = PlanOptions();
  options.build_args = {{"A", "1"}};
  options.cache_ref = "registry.local/cache:app";
  options.storage_dir = "/cache/buildah";  // buildah only

  ASSERT_OK_AND_ASSIGN(ImageBuildCommands plan,
                       PlanImageBuild(options, "docker", kImageName));

  EXPECT_THAT(
      plan.build,
      ElementsAre("docker", "buildx", "build", "--file",
                  "/ci/job/src/Dockerfile", "--output",
                  "type=oci,dest=/ci/job/image.work/layout,tar=false,"
                  "name=localhost/ciagent-image-test:v1",
                  "--provenance=false", "--build-arg", "A=1", "--cache-from",
                  "type=registry,ref=registry.local/cache:app", "--cache-to",
                  "type=registry,ref=registry.local/cache:app,mode=max",
                  "/ci/job/src"));
  EXPECT_THAT(plan.export_layout, IsEmpty());
  EXPECT_THAT(plan.remove_image, IsEmpty());
  EXPECT_EQ(plan.storage_dir, "");
}

TEST(PlanImageBuildTest, RejectsOptionsThatCannotMakeASafeBuild) {
  const auto with = [](auto change) {
    ImageBuildOptions options = PlanOptions();
    change(options);
    return PlanImageBuild(options, "buildah", kImageName).status();
  };
  const auto kInvalid = absl::StatusCode::kInvalidArgument;
  EXPECT_THAT(with([](auto& o) { o.dockerfile = "/etc/Dockerfile"; }),
              StatusIs(kInvalid, HasSubstr("must be relative")));
  EXPECT_THAT(with([](auto& o) { o.dockerfile = "../other/Dockerfile"; }),
              StatusIs(kInvalid, HasSubstr("without '..'")));
  EXPECT_THAT(with([](auto& o) { o.dockerfile = "a/../../Dockerfile"; }),
              StatusIs(kInvalid));
  EXPECT_THAT(with([](auto& o) { o.dockerfile = ""; }), StatusIs(kInvalid));
  EXPECT_THAT(with([](auto& o) { o.context_dir = ""; }),
              StatusIs(kInvalid, HasSubstr("context_dir")));
  EXPECT_THAT(with([](auto& o) { o.layout_dir = ""; }),
              StatusIs(kInvalid, HasSubstr("layout_dir")));
  EXPECT_THAT(with([](auto& o) { o.layout_dir = "/ci/a:b"; }),
              StatusIs(kInvalid, HasSubstr("':'")));
  EXPECT_THAT(with([](auto& o) { o.tag = "has space"; }),
              StatusIs(kInvalid, HasSubstr("not a valid tag")));
  EXPECT_THAT(with([](auto& o) { o.tag = ".hidden"; }), StatusIs(kInvalid));
  EXPECT_THAT(with([](auto& o) { o.tag = std::string(129, 'a'); }),
              StatusIs(kInvalid));
  EXPECT_THAT(with([](auto& o) {
                o.build_args = {{"A=B", "1"}};
              }),
              StatusIs(kInvalid, HasSubstr("build arg")));
  EXPECT_THAT(with([](auto& o) {
                o.release_executables = {{"../app", "/bin/true"}};
              }),
              StatusIs(kInvalid, HasSubstr("release executable")));
  EXPECT_THAT(with([](auto& o) { o.timeout = absl::ZeroDuration(); }),
              StatusIs(kInvalid, HasSubstr("timeout")));
  EXPECT_THAT(PlanImageBuild(PlanOptions(), "kaniko", kImageName),
              StatusIs(kInvalid, HasSubstr("unknown builder")));
  EXPECT_OK(with([](auto& o) { o.tag = "1.2.3_rc-1"; }));
  EXPECT_OK(with([](auto& o) { o.dockerfile = "ops/..hidden/Dockerfile"; }));
}

TEST(FindTaggedManifestTest, ReadsTheEntryNamedByTheTag) {
  const std::string digest = absl::StrCat("sha256:", std::string(64, 'a'));
  const std::string index = absl::StrCat(
      R"({"schemaVersion":2,"manifests":[)",
      R"({"mediaType":"application/vnd.oci.image.manifest.v1+json",)",
      R"("digest":"sha256:)", std::string(64, 'b'),
      R"(","size":10,"annotations":{"org.opencontainers.image.ref.name":"old"}},)",
      R"({"mediaType":"application/vnd.oci.image.manifest.v1+json",)",
      R"("digest":")", digest,
      R"(","size":499,"annotations":{"org.opencontainers.image.ref.name":"v1"}}]})");

  ASSERT_OK_AND_ASSIGN(LayoutManifest manifest,
                       FindTaggedManifest(index, "v1"));

  EXPECT_EQ(manifest.digest, digest);
  EXPECT_EQ(manifest.media_type, "application/vnd.oci.image.manifest.v1+json");
  EXPECT_EQ(manifest.size, 499);
  EXPECT_THAT(FindTaggedManifest(index, "v2"),
              StatusIs(absl::StatusCode::kNotFound, HasSubstr("v2")));
  EXPECT_THAT(FindTaggedManifest("{\"schemaVersion\":2}", "v1"),
              StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(FindTaggedManifest("not json", "v1"),
              StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(
      FindTaggedManifest(R"({"schemaVersion":2,"manifests":[{"digest":"md5:x","annotations":)"
                         R"({"org.opencontainers.image.ref.name":"v1"}}]})",
                         "v1"),
      StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("sha256")));
}

class ImageBuilderTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_OK(BecomeChildSubreaper());
    ASSERT_OK_AND_ASSIGN(tmp_, testing::MakeTempDir("ciagent-image-builder-"));
  }
  void TearDown() override {
    if (!tmp_.empty()) testing::RemoveTree(tmp_);
  }

  // Options for a fresh copy of the fixture, and an output line recorder.
  ImageBuildOptions FixtureOptions(const std::string& path) {
    absl::StatusOr<std::string> src =
        testing::CopyFixture("with_dockerfile", tmp_);
    EXPECT_OK(src.status());
    ImageBuildOptions options;
    options.context_dir = src.value_or("");
    options.layout_dir = tmp_ + "/image";
    options.tag = "v1";
    options.builder = "buildah";
    options.path = path;
    options.grace = absl::Seconds(2);
    options.timeout = absl::Minutes(2);
    options.output = [this](absl::string_view stream, absl::string_view line) {
      lines_.push_back(absl::StrCat(stream, "|", line));
    };
    return options;
  }

  // `cargo build --release` of the fixture copy into <tmp>/target, outside
  // the checkout; the binary's path.
  absl::StatusOr<std::string> BuildRelease(const std::string& src,
                                           const std::string& cargo_path) {
    absl::StatusOr<std::vector<std::string>> built =
        RunForOutput({"cargo", "build", "--release", "--locked", "--quiet",
                      "--target-dir", tmp_ + "/target"},
                     cargo_path, src);
    if (!built.ok()) return built.status();
    return tmp_ + "/target/release/" + kBinary;
  }

  bool Saw(absl::string_view needle) const {
    for (const std::string& line : lines_) {
      if (absl::StrContains(line, needle)) return true;
    }
    return false;
  }

  std::string tmp_;
  std::vector<std::string> lines_;
};

TEST_F(ImageBuilderTest, HasDockerfileOnlyInsideTheCheckout) {
  std::ofstream(tmp_ + "/Dockerfile") << "FROM scratch\n";
  fs::create_directories(tmp_ + "/ops");
  std::ofstream(tmp_ + "/ops/Dockerfile.app") << "FROM scratch\n";

  EXPECT_TRUE(HasDockerfile(tmp_));
  EXPECT_TRUE(HasDockerfile(tmp_, "ops/Dockerfile.app"));
  EXPECT_FALSE(HasDockerfile(tmp_, "ops"));  // a directory
  EXPECT_FALSE(HasDockerfile(tmp_, "Containerfile"));
  EXPECT_FALSE(HasDockerfile(tmp_ + "/ops", "../Dockerfile"));
  EXPECT_FALSE(HasDockerfile(tmp_, tmp_ + "/Dockerfile"));
  EXPECT_FALSE(HasDockerfile("", "Dockerfile"));
}

TEST_F(ImageBuilderTest, MissingDockerfileIsTheCheckoutsFault) {
  fs::create_directories(tmp_ + "/src");
  ImageBuildOptions options;
  options.context_dir = tmp_ + "/src";
  options.layout_dir = tmp_ + "/image";

  EXPECT_THAT(BuildImage(options),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("no Dockerfile in " + tmp_ + "/src")));
  options.dockerfile = "../Dockerfile";
  EXPECT_THAT(BuildImage(options), StatusIs(absl::StatusCode::kInvalidArgument,
                                            HasSubstr("without '..'")));
  EXPECT_FALSE(fs::exists(tmp_ + "/image"));
}

TEST_F(ImageBuilderTest, LayoutDirThatWouldDeleteTheCheckoutIsRefused) {
  fs::create_directories(tmp_ + "/job/src");
  std::ofstream(tmp_ + "/job/src/Dockerfile") << "FROM scratch\n";
  ImageBuildOptions options;
  options.context_dir = tmp_ + "/job/src";
  options.layout_dir = tmp_ + "/job/";

  EXPECT_THAT(BuildImage(options),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("would hold " + tmp_ + "/job/src")));
  options.layout_dir = tmp_ + "/image";
  options.storage_dir = tmp_ + "/image.work/storage";
  EXPECT_THAT(BuildImage(options),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("would hold " + tmp_ + "/image.work")));
  EXPECT_TRUE(fs::exists(tmp_ + "/job/src/Dockerfile"));
}

TEST_F(ImageBuilderTest, NoBuilderInstalledIsAFailedPrecondition) {
  fs::create_directories(tmp_ + "/src");
  fs::create_directories(tmp_ + "/empty-bin");
  std::ofstream(tmp_ + "/src/Dockerfile") << "FROM scratch\n";
  ImageBuildOptions options;
  options.context_dir = tmp_ + "/src";
  options.layout_dir = tmp_ + "/image";
  options.path = tmp_ + "/empty-bin";

  EXPECT_THAT(BuildImage(options),
              StatusIs(absl::StatusCode::kFailedPrecondition,
                       HasSubstr("no image builder: install buildah")));
  options.builder = "buildah";
  EXPECT_THAT(BuildImage(options),
              StatusIs(absl::StatusCode::kFailedPrecondition,
                       HasSubstr("buildah is not in PATH")));
}

// A docker client for the docker flow, which needs a daemon this suite does
// not have: `info` and `buildx version` succeed; `buildx build` records its
// arguments one per line in <dir>/docker-args and then, when `fail` is
// empty, writes a layout as buildkit's OCI exporter does (the image named
// by the tag of the exporter's name=), else prints `fail` and exits 1.
void WriteFakeDocker(const std::string& dir, const std::string& fail) {
  fs::create_directories(dir);
  std::ofstream(dir + "/docker") << R"(#!/bin/sh
case "$1 $2" in
  info*) echo 24.0.7; exit 0 ;;
  "buildx version") echo "github.com/docker/buildx v0.11.2"; exit 0 ;;
  "buildx build") ;;
  *) exit 2 ;;
esac
printf '%s\n' "$@" > ")" + dir + R"(/docker-args"
if [ -n ")" + fail + R"(" ]; then echo ")" +
                                        fail + R"(" >&2; exit 1; fi
while [ $# -gt 0 ]; do
  if [ "$1" = --output ]; then output=$2; fi
  shift
done
dest=$(echo "$output" | sed 's/.*dest=\([^,]*\).*/\1/')
tag=$(echo "$output" | sed 's/.*name=[^,]*:\([^,:]*\).*/\1/')
mkdir -p "$dest/blobs/sha256"
echo '{"imageLayoutVersion":"1.0.0"}' > "$dest/oci-layout"
m='{"schemaVersion":2,"layers":[]}'
d=$(printf '%s' "$m" | sha256sum | cut -d' ' -f1)
printf '%s' "$m" > "$dest/blobs/sha256/$d"
printf '{"schemaVersion":2,"manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:%s","size":%d,"annotations":{"org.opencontainers.image.ref.name":"%s"}}]}' "$d" ${#m} "$tag" > "$dest/index.json"
)";
  fs::permissions(dir + "/docker", fs::perms::owner_all);
}

TEST_F(ImageBuilderTest, AutoPicksDockerWhenADaemonAnswers) {
  WriteFakeDocker(tmp_ + "/bin", "");
  fs::create_directories(tmp_ + "/src");
  std::ofstream(tmp_ + "/src/Dockerfile") << "FROM scratch\n";
  ImageBuildOptions options;
  options.context_dir = tmp_ + "/src";
  options.layout_dir = tmp_ + "/image";
  options.tag = "v2";
  options.cache_ref = "registry.local/cache:app";
  options.path = tmp_ + "/bin:/usr/bin:/bin";

  ASSERT_OK_AND_ASSIGN(ImageBuildResult result, BuildImage(options));

  EXPECT_EQ(result.builder, "docker");
  EXPECT_EQ(result.manifest_digest,
            Sha256Of(BlobPath(result.layout_dir, result.manifest_digest)));
  EXPECT_FALSE(fs::exists(tmp_ + "/image.work"));
  const std::string args = testing::ReadFileOrEmpty(tmp_ + "/bin/docker-args");
  EXPECT_THAT(args, HasSubstr("--output\ntype=oci,dest=" + tmp_ +
                              "/image.work/layout,tar=false,name=localhost/"
                              "ciagent-image-"));
  EXPECT_THAT(args, HasSubstr("--cache-to\ntype=registry,ref=registry.local/"
                              "cache:app,mode=max\n"));
}

TEST_F(ImageBuilderTest, DockerDriverWithoutOciExportIsTheAgentsSetup) {
  WriteFakeDocker(tmp_ + "/bin",
                  "ERROR: OCI exporter is not supported for the docker "
                  "driver.");
  fs::create_directories(tmp_ + "/src");
  std::ofstream(tmp_ + "/src/Dockerfile") << "FROM scratch\n";
  ImageBuildOptions options;
  options.context_dir = tmp_ + "/src";
  options.layout_dir = tmp_ + "/image";
  options.builder = "docker";
  options.path = tmp_ + "/bin:/usr/bin:/bin";

  EXPECT_THAT(BuildImage(options),
              StatusIs(absl::StatusCode::kFailedPrecondition,
                       HasSubstr("docker exited with code 1: ERROR: OCI "
                                 "exporter is not supported")));
}

// --- Real builds -------------------------------------------------------------

TEST_F(ImageBuilderTest, BuildsTheFixtureIntoAnOciLayoutHoldingItsBinary) {
  CIAGENT_REQUIRE_CARGO(cargo_path);
  CIAGENT_REQUIRE_BUILDAH(path);
  ImageBuildOptions options = FixtureOptions(path);
  ASSERT_OK_AND_ASSIGN(const std::string binary,
                       BuildRelease(options.context_dir, cargo_path));
  options.release_executables = {{kBinary, binary}};
  // A stale layout from an earlier run is replaced.
  fs::create_directories(options.layout_dir + "/blobs/sha256");
  std::ofstream(options.layout_dir + "/stale") << "old";

  const absl::Time start = absl::Now();
  ASSERT_OK_AND_ASSIGN(ImageBuildResult result, BuildImage(options));
  std::cerr << "BuildImage took " << absl::Now() - start << "\n";

  EXPECT_EQ(result.builder, "buildah");
  EXPECT_EQ(result.layout_dir, options.layout_dir);
  EXPECT_GT(result.duration, absl::ZeroDuration());
  EXPECT_EQ(result.manifest_media_type,
            "application/vnd.oci.image.manifest.v1+json");
  const std::string& layout = result.layout_dir;
  EXPECT_FALSE(fs::exists(layout + "/stale"));
  // Everything temporary is gone, the storage included.
  EXPECT_FALSE(fs::exists(layout + ".work"));
  // The binary went into the checkout as a hard link to the cached one.
  struct stat cached {
  }, placed{};
  ASSERT_EQ(::stat(binary.c_str(), &cached), 0);
  ASSERT_EQ(::stat((options.context_dir + "/target/release/" + kBinary).c_str(),
                   &placed),
            0);
  EXPECT_EQ(cached.st_ino, placed.st_ino);
  EXPECT_TRUE(Saw("agent|$ buildah --root"));
  EXPECT_TRUE(Saw("stdout|STEP 2/4: COPY target/release/with_dockerfile"));

  // The layout: oci-layout, index.json naming the manifest by the tag, and
  // every blob present under its digest.
  EXPECT_THAT(testing::ReadFileOrEmpty(layout + "/oci-layout"),
              HasSubstr("\"imageLayoutVersion\""));
  ASSERT_OK_AND_ASSIGN(
      LayoutManifest named,
      FindTaggedManifest(testing::ReadFileOrEmpty(layout + "/index.json"),
                         "v1"));
  EXPECT_EQ(named.digest, result.manifest_digest);
  const std::string manifest_path = BlobPath(layout, result.manifest_digest);
  EXPECT_EQ(Sha256Of(manifest_path), result.manifest_digest);
  EXPECT_EQ(named.size, static_cast<int64_t>(fs::file_size(manifest_path)));

  const std::string manifest_json = testing::ReadFileOrEmpty(manifest_path);
  simdjson::dom::parser parser;
  simdjson::dom::element manifest;
  ASSERT_EQ(parser.parse(manifest_json).get(manifest), simdjson::SUCCESS);
  std::string_view config_digest;
  ASSERT_EQ(manifest["config"]["digest"].get_string().get(config_digest),
            simdjson::SUCCESS);
  const std::string config_path = BlobPath(layout, config_digest);
  EXPECT_EQ(Sha256Of(config_path), config_digest);
  const std::string config = testing::ReadFileOrEmpty(config_path);
  EXPECT_THAT(config, HasSubstr(R"("Entrypoint":["/with_dockerfile"])"));
  EXPECT_THAT(config, HasSubstr(R"("User":"65534:65534")"));
  simdjson::dom::array layers;
  ASSERT_EQ(manifest["layers"].get_array().get(layers), simdjson::SUCCESS);
  ASSERT_EQ(layers.size(), 1u);
  std::string_view layer_digest;
  ASSERT_EQ(layers.at(0)["digest"].get_string().get(layer_digest),
            simdjson::SUCCESS);
  const std::string layer_path = BlobPath(layout, layer_digest);
  EXPECT_EQ(Sha256Of(layer_path), layer_digest);

  // Another OCI implementation reads the same manifest through the tag.
  if (!FindExecutable("skopeo", path).empty()) {
    EXPECT_THAT(RunForOutput({"skopeo", "inspect", "--raw",
                              absl::StrCat("oci:", layout, ":v1")},
                             path),
                testing::IsOkAndHolds(ElementsAre(manifest_json)));
  }

  // The layer holds the binary, and it runs from there (statically linked).
  ASSERT_OK_AND_ASSIGN(
      std::vector<std::string> entries,
      RunForOutput({"tar", "-tf", layer_path}, "/usr/bin:/bin"));
  EXPECT_THAT(entries, Contains(kBinary));
  fs::create_directories(tmp_ + "/unpacked");
  ASSERT_OK(RunForOutput(
                {"tar", "-xf", layer_path, "-C", tmp_ + "/unpacked", kBinary},
                "/usr/bin:/bin")
                .status());
  EXPECT_THAT(
      RunForOutput({tmp_ + "/unpacked/" + kBinary, "CI"}, "/usr/bin:/bin"),
      testing::IsOkAndHolds(ElementsAre("Hello from the image, CI!")));
}

TEST_F(ImageBuilderTest, AutoPicksBuildahWhenNoDockerDaemonAnswers) {
  CIAGENT_REQUIRE_CARGO(cargo_path);
  CIAGENT_REQUIRE_BUILDAH(path);
  // A docker client whose daemon is down, first in PATH.
  fs::create_directories(tmp_ + "/bin");
  std::ofstream(tmp_ + "/bin/docker")
      << "#!/bin/sh\necho 'Cannot connect to the Docker daemon' >&2\nexit 1\n";
  fs::permissions(tmp_ + "/bin/docker", fs::perms::owner_all);
  ImageBuildOptions options = FixtureOptions(tmp_ + "/bin:" + path);
  options.builder = "auto";
  options.storage_dir = tmp_ + "/storage";  // persistent
  ASSERT_OK_AND_ASSIGN(const std::string binary,
                       BuildRelease(options.context_dir, cargo_path));
  options.release_executables = {{kBinary, binary}};

  ASSERT_OK_AND_ASSIGN(ImageBuildResult result, BuildImage(options));

  EXPECT_EQ(result.builder, "buildah");
  EXPECT_TRUE(Saw("agent|image builder: buildah (`docker info` failed)"));
  // The persistent storage stays, without the built image in it.
  EXPECT_TRUE(fs::exists(tmp_ + "/storage"));
  EXPECT_TRUE(Saw("agent|$ buildah --root " + tmp_ + "/storage"));
  ASSERT_OK_AND_ASSIGN(
      std::vector<std::string> images,
      RunForOutput(
          {"buildah", "--root", tmp_ + "/storage", "--runroot", tmp_ + "/run",
           "--storage-driver", "vfs", "images", "--noheading", "--quiet"},
          path));
  EXPECT_THAT(images, IsEmpty());
}

TEST_F(ImageBuilderTest, FailingDockerfileIsReportedWithBuildahsMessage) {
  CIAGENT_REQUIRE_BUILDAH(path);
  ImageBuildOptions options = FixtureOptions(path);
  options.dockerfile = "Dockerfile.broken";
  std::ofstream(options.context_dir + "/Dockerfile.broken")
      << "FROM scratch\nCOPY no-such-file /app\n";

  absl::StatusOr<ImageBuildResult> result = BuildImage(options);

  EXPECT_THAT(result,
              StatusIs(absl::StatusCode::kInvalidArgument,
                       AllOf(HasSubstr("image build failed on "
                                       "Dockerfile.broken: buildah exited "
                                       "with code 125: Error: building at "
                                       "STEP \"COPY no-such-file /app\""),
                             HasSubstr("no such file or directory"))));
  EXPECT_TRUE(Saw("stderr|Error: building at STEP"));
  EXPECT_FALSE(fs::exists(options.layout_dir));
  EXPECT_FALSE(fs::exists(options.layout_dir + ".work"));
}

TEST_F(ImageBuilderTest, UnreachableBaseImageRegistryIsWorthARetry) {
  CIAGENT_REQUIRE_BUILDAH(path);
  ImageBuildOptions options = FixtureOptions(path);
  options.dockerfile = "Dockerfile.pull";
  // Nothing listens on port 1: buildah retries for about 6 s, then fails.
  std::ofstream(options.context_dir + "/Dockerfile.pull")
      << "FROM 127.0.0.1:1/base:latest\n";

  EXPECT_THAT(BuildImage(options),
              StatusIs(absl::StatusCode::kUnavailable,
                       AllOf(HasSubstr("buildah exited with code 125"),
                             HasSubstr("pinging container registry"))));
}

TEST_F(ImageBuilderTest, ExecutableAlreadyInTheCheckoutIsLeftInPlace) {
  CIAGENT_REQUIRE_BUILDAH(path);
  ImageBuildOptions options = FixtureOptions(path);
  const std::string in_checkout =
      options.context_dir + "/target/release/" + kBinary;
  fs::create_directories(options.context_dir + "/target/release");
  std::ofstream(in_checkout) << "built in the checkout";
  options.release_executables = {{kBinary, in_checkout}};

  EXPECT_OK(BuildImage(options).status());
  EXPECT_EQ(testing::ReadFileOrEmpty(in_checkout), "built in the checkout");

  options.release_executables = {{kBinary, tmp_ + "/missing"}};
  EXPECT_THAT(BuildImage(options),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("release executable with_dockerfile: no "
                                 "file at " +
                                 tmp_ + "/missing")));
}

TEST_F(ImageBuilderTest, StopEndsTheBuildAndLeavesNoBuildahBehind) {
  CIAGENT_REQUIRE_BUILDAH(path);
  ImageBuildOptions options = FixtureOptions(path);
  // Anything to copy will do: the stop comes as the build starts.
  fs::create_directories(options.context_dir + "/target/release");
  std::ofstream(options.context_dir + "/target/release/" + kBinary) << "x";
  bool started = false;
  options.output = [&](absl::string_view, absl::string_view line) {
    if (absl::StartsWith(line, "STEP 1/")) started = true;
  };
  options.should_stop = [&] { return started; };

  EXPECT_THAT(BuildImage(options), StatusIs(absl::StatusCode::kCancelled));
  EXPECT_TRUE(started);
  // The storage path is in every buildah command line of this build.
  EXPECT_EQ(testing::ProcessesWithMarker(options.layout_dir + ".work"), 0);
  EXPECT_FALSE(fs::exists(options.layout_dir));
  EXPECT_FALSE(fs::exists(options.layout_dir + ".work"));
}

TEST_F(ImageBuilderTest, TimeoutEndsTheBuild) {
  CIAGENT_REQUIRE_BUILDAH(path);
  ImageBuildOptions options = FixtureOptions(path);
  // With its executable in place the build would succeed, in about ten
  // times the timeout; without it, buildah could fail on the missing file
  // before the timeout came.
  fs::create_directories(options.context_dir + "/target/release");
  std::ofstream(options.context_dir + "/target/release/" + kBinary) << "x";
  options.timeout = absl::Milliseconds(50);

  EXPECT_THAT(BuildImage(options), StatusIs(absl::StatusCode::kDeadlineExceeded,
                                            HasSubstr("timed out after 50ms")));
  EXPECT_EQ(testing::ProcessesWithMarker(options.layout_dir + ".work"), 0);
  EXPECT_FALSE(fs::exists(options.layout_dir + ".work"));
}

}  // namespace
}  // namespace ciagent
