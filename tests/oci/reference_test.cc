#include "ciagent/oci/reference.h"

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "testing/status_matchers.h"

namespace ciagent::oci {
namespace {

using ::ciagent::testing::StatusIs;
using ::testing::HasSubstr;

TEST(ParseImageReferenceTest, SplitsRegistryRepositoryAndTag) {
  ASSERT_OK_AND_ASSIGN(
      ImageReference ref,
      ParseImageReference("git.example.com:3000/owner/app:1f2e3d"));
  EXPECT_EQ(ref.registry, "git.example.com:3000");
  EXPECT_EQ(ref.repository, "owner/app");
  EXPECT_EQ(ref.tag, "1f2e3d");
  EXPECT_EQ(ref.ToString(), "git.example.com:3000/owner/app:1f2e3d");
}

TEST(ParseImageReferenceTest, TagDefaultsToLatest) {
  ASSERT_OK_AND_ASSIGN(ImageReference ref,
                       ParseImageReference("127.0.0.1:5000/bench/app"));
  EXPECT_EQ(ref.registry, "127.0.0.1:5000");
  EXPECT_EQ(ref.tag, "latest");
}

TEST(ParseImageReferenceTest, FirstComponentIsRepositoryWithoutDotOrPort) {
  ASSERT_OK_AND_ASSIGN(ImageReference ref, ParseImageReference("owner/app:v1"));
  EXPECT_EQ(ref.registry, "");
  EXPECT_EQ(ref.repository, "owner/app");
  ASSERT_OK_AND_ASSIGN(ref, ParseImageReference("localhost/app"));
  EXPECT_EQ(ref.registry, "localhost");
}

TEST(ParseImageReferenceTest, RejectsInvalidNamesWithTheReason) {
  EXPECT_THAT(ParseImageReference("reg.io/Owner/App:v1"),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("invalid repository name")));
  EXPECT_THAT(
      ParseImageReference("reg.io/owner/app:-bad"),
      StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("invalid tag")));
  EXPECT_THAT(ParseImageReference("reg.io/app@sha256:abc"),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("digest references")));
  EXPECT_THAT(ParseImageReference("reg.io/a//b"),
              StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(ParseImageReference(""),
              StatusIs(absl::StatusCode::kInvalidArgument));
}

TEST(RepositoryNameTest, FollowsTheDistributionGrammar) {
  EXPECT_TRUE(IsValidRepositoryName("a/b-c/d.e/f__g"));
  EXPECT_FALSE(IsValidRepositoryName("a/-b"));
  EXPECT_FALSE(IsValidRepositoryName("a/b."));
  EXPECT_FALSE(IsValidRepositoryName("a/b_"));
  EXPECT_FALSE(IsValidRepositoryName("../etc"));
}

TEST(SanitizeTagTest, TurnsBranchNamesIntoTags) {
  EXPECT_EQ(SanitizeTag("feature/Login-2"), "feature-Login-2");
  EXPECT_EQ(SanitizeTag("main"), "main");
  EXPECT_EQ(SanitizeTag("--x"), "x");
  EXPECT_EQ(SanitizeTag("///"), "");  // all '-' after replacement
  EXPECT_EQ(SanitizeTag(std::string(300, 'a')).size(), 128u);
  EXPECT_TRUE(IsValidTag(SanitizeTag("release/v1.2 $(rm -rf)")));
}

TEST(DigestTest, AcceptsOnlyLowercaseSha256) {
  const std::string hex(64, 'a');
  EXPECT_TRUE(IsValidDigest("sha256:" + hex));
  EXPECT_FALSE(IsValidDigest("sha256:" + std::string(64, 'A')));
  EXPECT_FALSE(IsValidDigest("sha512:" + hex));
  EXPECT_FALSE(IsValidDigest("sha256:" + hex.substr(1)));
  EXPECT_FALSE(IsValidDigest("sha256:../../" + hex.substr(6)));
}

// Bytes >= 0x80 are letters to no one: not on x86, where char is signed,
// nor on aarch64, where it is unsigned (this test runs on both).
TEST(HighBytesTest, AreNeverPartOfANameTagOrDigest) {
  for (const char* byte : {"\x80", "\xC3\xA9", "\xFF"}) {
    SCOPED_TRACE(::testing::PrintToString(byte));
    EXPECT_FALSE(IsValidRepositoryName(absl::StrCat("app", byte)));
    EXPECT_FALSE(IsValidTag(absl::StrCat("v1", byte)));
    EXPECT_THAT(ParseImageReference(absl::StrCat("registry.local/app", byte)),
                StatusIs(absl::StatusCode::kInvalidArgument));
    EXPECT_THAT(ParseImageReference(absl::StrCat("app:v1", byte)),
                StatusIs(absl::StatusCode::kInvalidArgument));
  }
  EXPECT_FALSE(IsValidDigest("sha256:" + std::string(63, 'a') + "\xFF"));
  // Each such byte becomes '-', as any other invalid character does.
  EXPECT_EQ(SanitizeTag("caf\xC3\xA9-\xFF" "1"), "caf----1");
}

TEST(ParsePullReferenceTest, TakesATagADigestOrBoth) {
  const std::string digest =
      "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
  ASSERT_OK_AND_ASSIGN(ImageReference tagged,
                       ParsePullReference("reg.io:5000/base/debian:12"));
  EXPECT_EQ(tagged.manifest_reference(), "12");
  EXPECT_EQ(tagged.digest, "");
  ASSERT_OK_AND_ASSIGN(ImageReference pinned,
                       ParsePullReference("reg.io:5000/base/debian@" + digest));
  EXPECT_EQ(pinned.registry, "reg.io:5000");
  EXPECT_EQ(pinned.repository, "base/debian");
  EXPECT_EQ(pinned.manifest_reference(), digest);
  EXPECT_EQ(pinned.ToString(), "reg.io:5000/base/debian@" + digest);
  ASSERT_OK_AND_ASSIGN(ImageReference both,
                       ParsePullReference("base/debian:12@" + digest));
  EXPECT_EQ(both.tag, "12");
  EXPECT_EQ(both.manifest_reference(), digest);
  EXPECT_THAT(ParsePullReference("base/debian@sha256:ABC"),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("invalid digest \"sha256:ABC\"")));
  EXPECT_THAT(ParseImageReference("base/debian@" + digest),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("cannot be pushed")));
}

}  // namespace
}  // namespace ciagent::oci
