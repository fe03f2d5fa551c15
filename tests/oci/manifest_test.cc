#include "ciagent/oci/manifest.h"

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "testing/status_matchers.h"

namespace ciagent::oci {
namespace {

using ::ciagent::testing::StatusIs;
using ::testing::HasSubstr;

const std::string kDigestA = "sha256:" + std::string(64, 'a');
const std::string kDigestB = "sha256:" + std::string(64, 'b');

TEST(ParseManifestTest, ReadsConfigAndLayers) {
  const std::string json = R"({"schemaVersion":2,
    "mediaType":"application/vnd.oci.image.manifest.v1+json",
    "config":{"mediaType":"application/vnd.oci.image.config.v1+json",
              "digest":")" +
                           kDigestA + R"(","size":653},
    "layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip",
               "digest":")" +
                           kDigestB + R"(","size":3001249}]})";
  ASSERT_OK_AND_ASSIGN(Manifest manifest, ParseManifest(json));
  EXPECT_FALSE(manifest.is_index());
  EXPECT_EQ(manifest.config.digest, kDigestA);
  EXPECT_EQ(manifest.config.size, 653);
  ASSERT_EQ(manifest.layers.size(), 1u);
  EXPECT_EQ(manifest.layers[0].digest, kDigestB);
  EXPECT_EQ(manifest.layers[0].size, 3001249);
}

TEST(ParseManifestTest, ReadsIndexWithPlatformsAndRefNames) {
  const std::string json = R"({"schemaVersion":2,"manifests":[
    {"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":")" +
                           kDigestA + R"(","size":10,
     "platform":{"os":"linux","architecture":"arm64","variant":"v8"},
     "annotations":{"org.opencontainers.image.ref.name":"v1"}}]})";
  ASSERT_OK_AND_ASSIGN(Manifest index, ParseManifest(json));
  EXPECT_TRUE(index.is_index());  // inferred from "manifests"
  ASSERT_EQ(index.manifests.size(), 1u);
  EXPECT_EQ(index.manifests[0].platform, "linux/arm64/v8");
  EXPECT_EQ(index.manifests[0].ref_name, "v1");
}

TEST(ParseManifestTest, ReadsDockerManifestList) {
  const std::string json = R"({"schemaVersion":2,
    "mediaType":"application/vnd.docker.distribution.manifest.list.v2+json",
    "manifests":[]})";
  ASSERT_OK_AND_ASSIGN(Manifest index, ParseManifest(json));
  EXPECT_TRUE(index.is_index());
}

TEST(ParseManifestTest, RejectsBadDescriptorsNamingTheField) {
  EXPECT_THAT(
      ParseManifest(
          R"({"schemaVersion":2,"config":{"digest":"md5:x","size":1},"layers":[]})"),
      StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("config")));
  EXPECT_THAT(ParseManifest(R"({"schemaVersion":2,"config":{"digest":")" +
                            kDigestA + R"(","size":-1},"layers":[]})"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("size")));
  EXPECT_THAT(
      ParseManifest(R"({"schemaVersion":2,"config":{"digest":")" + kDigestA +
                    R"(","size":1},"layers":[{}]})"),
      StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("layers[0]")));
  EXPECT_THAT(
      ParseManifest(R"({"schemaVersion":1})"),
      StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("schemaVersion")));
  EXPECT_THAT(
      ParseManifest(R"({"schemaVersion":2,"mediaType":"text/html"})"),
      StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("mediaType")));
  EXPECT_THAT(ParseManifest("not json"),
              StatusIs(absl::StatusCode::kInvalidArgument));
}

TEST(SelectPlatformTest, PicksTheAgentsPlatformFromAnIndex) {
  ASSERT_OK_AND_ASSIGN(Manifest index, ParseManifest(R"({
    "schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json",
    "manifests": [
      {"mediaType": "application/vnd.oci.image.manifest.v1+json", "size": 1,
       "digest": "sha256:1111111111111111111111111111111111111111111111111111111111111111",
       "platform": {"os": "linux", "architecture": "amd64"}},
      {"mediaType": "application/vnd.oci.image.manifest.v1+json", "size": 1,
       "digest": "sha256:2222222222222222222222222222222222222222222222222222222222222222",
       "platform": {"os": "linux", "architecture": "arm64", "variant": "v8"}},
      {"mediaType": "application/vnd.oci.image.manifest.v1+json", "size": 1,
       "digest": "sha256:3333333333333333333333333333333333333333333333333333333333333333",
       "platform": {"os": "linux", "architecture": "arm", "variant": "v7"}}]})"));
  ASSERT_OK_AND_ASSIGN(Descriptor amd64, SelectPlatform(index, "linux/amd64"));
  EXPECT_EQ(amd64.digest.substr(7, 4), "1111");
  ASSERT_OK_AND_ASSIGN(Descriptor arm64, SelectPlatform(index, "linux/arm64"));
  EXPECT_EQ(arm64.digest.substr(7, 4), "2222");
  ASSERT_OK_AND_ASSIGN(Descriptor armv7, SelectPlatform(index, "linux/arm/v7"));
  EXPECT_EQ(armv7.digest.substr(7, 4), "3333");
  EXPECT_THAT(SelectPlatform(index, "linux/s390x"),
              StatusIs(absl::StatusCode::kNotFound,
                       HasSubstr("no manifest for linux/s390x (the index has "
                                 "linux/amd64, linux/arm64/v8, linux/arm/v7)")));
  EXPECT_THAT(SelectPlatform(index, "linux/arm/v6"),
              StatusIs(absl::StatusCode::kNotFound));
}

TEST(SelectPlatformTest, HostPlatformIsOsSlashArch) {
  EXPECT_THAT(HostPlatform(), ::testing::StartsWith("linux/"));
}

}  // namespace
}  // namespace ciagent::oci
