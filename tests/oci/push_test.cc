// PushLayout against a real registry (CNCF distribution), checked with an
// independent client (skopeo) and by reading the registry's storage back.
#include "ciagent/oci/push.h"

#include <filesystem>
#include <fstream>
#include <sstream>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "ciagent/base/sha256.h"
#include "ciagent/oci/registry_client.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "testing/oci_layout.h"
#include "testing/registry_server.h"
#include "testing/status_matchers.h"

namespace ciagent::oci {
namespace {

using ::ciagent::testing::InspectDigest;
using ::ciagent::testing::LayoutSpec;
using ::ciagent::testing::MakeOciLayout;
using ::ciagent::testing::RegistryServer;
using ::ciagent::testing::StatusIs;
using ::ciagent::testing::TestLayout;
using ::testing::HasSubstr;

std::string ReadAll(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream out;
  out << in.rdbuf();
  return out.str();
}

// Lines of the registry's access log that upload blob bytes.
int BlobWrites(const std::string& request_log) {
  int writes = 0;
  for (absl::string_view line : absl::StrSplit(request_log, '\n')) {
    if ((absl::StartsWith(line, "PUT ") || absl::StartsWith(line, "PATCH ")) &&
        absl::StrContains(line, "/blobs/uploads/")) {
      ++writes;
    }
  }
  return writes;
}

class PushLayoutTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = ::testing::TempDir() + "/push-" +
           ::testing::UnitTest::GetInstance()->current_test_info()->name();
    std::filesystem::remove_all(dir_);
    std::filesystem::create_directories(dir_);
  }

  std::unique_ptr<RegistryClient> Client(const RegistryServer& registry) {
    auto client = RegistryClient::Create({.registry = registry.url()});
    EXPECT_TRUE(client.ok()) << client.status();
    return *std::move(client);
  }

  // Every blob of the layout is in the registry's storage, byte for byte.
  void ExpectStored(const RegistryServer& registry, const TestLayout& layout) {
    for (const std::string& digest : layout.blob_digests) {
      const std::string path = registry.BlobPath(digest);
      ASSERT_FALSE(path.empty()) << digest << " not in the registry";
      EXPECT_EQ("sha256:" + Sha256Hex(ReadAll(path)), digest);
    }
  }

  std::string dir_;
};

TEST_F(PushLayoutTest, PushesImageThatAnotherClientReadsBack) {
  CIAGENT_START_REGISTRY(registry);
  ASSERT_OK_AND_ASSIGN(TestLayout layout,
                       MakeOciLayout(dir_ + "/layout", {.layers = 3}));
  auto client = Client(*registry);
  ASSERT_OK_AND_ASSIGN(
      PushResult pushed,
      PushLayout(*client, layout.dir,
                 {.repository = "owner/app", .tags = {"1f2e3d", "main"}}));
  EXPECT_EQ(pushed.digest, layout.root_digest);
  EXPECT_EQ(pushed.blobs, 4);  // config + 3 layers
  EXPECT_EQ(pushed.blobs_uploaded, 4);
  EXPECT_EQ(pushed.manifests, 1);
  EXPECT_THAT(InspectDigest(registry->host() + "/owner/app:1f2e3d", {}),
              ::ciagent::testing::IsOkAndHolds(layout.root_digest));
  EXPECT_THAT(InspectDigest(registry->host() + "/owner/app:main", {}),
              ::ciagent::testing::IsOkAndHolds(layout.root_digest));
  ExpectStored(*registry, layout);
  EXPECT_THAT(client->ListTags("owner/app"),
              ::ciagent::testing::IsOkAndHolds(
                  ::testing::UnorderedElementsAre("1f2e3d", "main")));
}

TEST_F(PushLayoutTest, RepushSendsNoBlobBytes) {
  CIAGENT_START_REGISTRY(registry);
  ASSERT_OK_AND_ASSIGN(TestLayout layout,
                       MakeOciLayout(dir_ + "/layout", {.layers = 2}));
  auto client = Client(*registry);
  ASSERT_OK(PushLayout(*client, layout.dir,
                       {.repository = "owner/app", .tags = {"v1"}}));
  const int writes_before = BlobWrites(registry->RequestLog());
  ASSERT_OK_AND_ASSIGN(PushResult again,
                       PushLayout(*client, layout.dir,
                                  {.repository = "owner/app", .tags = {"v2"}}));
  EXPECT_EQ(again.blobs_existing, 3);
  EXPECT_EQ(again.blobs_uploaded, 0);
  EXPECT_EQ(again.bytes_uploaded, 0u);
  EXPECT_EQ(BlobWrites(registry->RequestLog()), writes_before);
  EXPECT_THAT(InspectDigest(registry->host() + "/owner/app:v2", {}),
              ::ciagent::testing::IsOkAndHolds(layout.root_digest));
}

TEST_F(PushLayoutTest, MountsBlobsFromAnotherRepository) {
  CIAGENT_START_REGISTRY(registry);
  ASSERT_OK_AND_ASSIGN(TestLayout layout,
                       MakeOciLayout(dir_ + "/layout", {.layers = 2}));
  auto client = Client(*registry);
  ASSERT_OK(PushLayout(*client, layout.dir,
                       {.repository = "owner/base", .tags = {"v1"}}));
  ASSERT_OK_AND_ASSIGN(
      PushResult mounted,
      PushLayout(*client, layout.dir,
                 {.repository = "owner/app",
                  .tags = {"v1"},
                  .mount_from = {"owner/missing", "owner/base"}}));
  EXPECT_EQ(mounted.blobs_mounted, 3);
  EXPECT_EQ(mounted.bytes_uploaded, 0u);
  EXPECT_THAT(InspectDigest(registry->host() + "/owner/app:v1", {}),
              ::ciagent::testing::IsOkAndHolds(layout.root_digest));
}

TEST_F(PushLayoutTest, PushesMultiPlatformIndexAfterItsManifests) {
  CIAGENT_START_REGISTRY(registry);
  for (bool nested : {false, true}) {
    SCOPED_TRACE(nested ? "nested index" : "index.json lists platforms");
    ASSERT_OK_AND_ASSIGN(TestLayout layout,
                         MakeOciLayout(absl::StrCat(dir_, "/layout-", nested),
                                       {.layers = 1,
                                        .platforms = "linux/amd64,linux/arm64",
                                        .nested_index = nested}));
    auto client = Client(*registry);
    const std::string tag = nested ? "nested" : "flat";
    ASSERT_OK_AND_ASSIGN(
        PushResult pushed,
        PushLayout(*client, layout.dir,
                   {.repository = "owner/multi", .tags = {tag}}));
    EXPECT_EQ(pushed.digest, layout.root_digest);
    EXPECT_EQ(pushed.manifests, 3);  // two platforms, one index
    EXPECT_EQ(pushed.media_type, "application/vnd.oci.image.index.v1+json");
    EXPECT_THAT(InspectDigest(registry->host() + "/owner/multi:" + tag, {}),
                ::ciagent::testing::IsOkAndHolds(layout.root_digest));
    ExpectStored(*registry, layout);
  }
}

TEST_F(PushLayoutTest, CorruptLayerIsDataLossAndNeverReachesTheRegistry) {
  CIAGENT_START_REGISTRY(registry);
  ASSERT_OK_AND_ASSIGN(TestLayout layout,
                       MakeOciLayout(dir_ + "/layout", {.layers = 1}));
  // Flip one byte of the largest blob (the layer), keeping its size.
  std::string layer_path;
  for (const auto& entry :
       std::filesystem::directory_iterator(layout.dir + "/blobs/sha256")) {
    if (layer_path.empty() ||
        entry.file_size() > std::filesystem::file_size(layer_path)) {
      layer_path = entry.path().string();
    }
  }
  std::string bytes = ReadAll(layer_path);
  bytes[bytes.size() / 2] ^= 0x5a;
  std::ofstream(layer_path, std::ios::binary | std::ios::trunc) << bytes;
  const std::string layer_digest =
      "sha256:" + std::filesystem::path(layer_path).filename().string();

  auto client = Client(*registry);
  EXPECT_THAT(PushLayout(*client, layout.dir,
                         {.repository = "owner/app", .tags = {"v1"}}),
              StatusIs(absl::StatusCode::kDataLoss, HasSubstr("has content")));
  EXPECT_EQ(registry->BlobPath(layer_digest), "");
  EXPECT_THAT(client->ManifestDigest("owner/app", "v1"),
              StatusIs(absl::StatusCode::kNotFound));
}

TEST_F(PushLayoutTest, PicksTheImageNamedByRefName) {
  CIAGENT_START_REGISTRY(registry);
  ASSERT_OK_AND_ASSIGN(TestLayout layout,
                       MakeOciLayout(dir_ + "/layout", {.tag = "release"}));
  auto client = Client(*registry);
  EXPECT_OK(PushLayout(
      *client, layout.dir,
      {.repository = "owner/app", .tags = {"v1"}, .ref_name = "release"}));
  EXPECT_THAT(
      PushLayout(
          *client, layout.dir,
          {.repository = "owner/app", .tags = {"v1"}, .ref_name = "debug"}),
      StatusIs(absl::StatusCode::kNotFound, HasSubstr("has: release")));
  EXPECT_THAT(PushLayout(*client, dir_ + "/nowhere",
                         {.repository = "owner/app", .tags = {"v1"}}),
              StatusIs(absl::StatusCode::kNotFound));
  EXPECT_THAT(PushLayout(*client, layout.dir,
                         {.repository = "Owner/App", .tags = {"v1"}}),
              StatusIs(absl::StatusCode::kInvalidArgument));
}

}  // namespace
}  // namespace ciagent::oci
