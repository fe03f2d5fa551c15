#include "ciagent/oci/www_authenticate.h"

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "testing/status_matchers.h"

namespace ciagent::oci {
namespace {

using ::ciagent::testing::StatusIs;

TEST(ParseWwwAuthenticateTest, ReadsGiteaBearerChallenge) {
  ASSERT_OK_AND_ASSIGN(
      std::vector<AuthChallenge> challenges,
      ParseWwwAuthenticate(R"(Bearer realm="https://git.example.com/v2/token",)"
                           R"(service="container_registry",scope="*")"));
  ASSERT_EQ(challenges.size(), 1u);
  EXPECT_EQ(challenges[0].scheme, "bearer");
  EXPECT_EQ(challenges[0].Param("realm"), "https://git.example.com/v2/token");
  EXPECT_EQ(challenges[0].Param("service"), "container_registry");
  EXPECT_EQ(challenges[0].Param("scope"), "*");
  EXPECT_EQ(challenges[0].Param("error"), "");
}

TEST(ParseWwwAuthenticateTest, ReadsInsufficientScopeWithSpacesAndCase) {
  ASSERT_OK_AND_ASSIGN(
      std::vector<AuthChallenge> challenges,
      ParseWwwAuthenticate(
          R"(BEARER Realm = "http://t/token" , scope="repository:a:pull repository:b:push",error="insufficient_scope")"));
  ASSERT_EQ(challenges.size(), 1u);
  EXPECT_EQ(challenges[0].Param("realm"), "http://t/token");
  EXPECT_EQ(challenges[0].Param("scope"),
            "repository:a:pull repository:b:push");
  EXPECT_EQ(challenges[0].Param("error"), "insufficient_scope");
}

TEST(ParseWwwAuthenticateTest, SplitsSeveralChallenges) {
  ASSERT_OK_AND_ASSIGN(
      std::vector<AuthChallenge> challenges,
      ParseWwwAuthenticate(
          R"(Basic realm="Registry Realm", Bearer realm="http://x/t",service=reg)"));
  ASSERT_EQ(challenges.size(), 2u);
  EXPECT_EQ(challenges[0].scheme, "basic");
  EXPECT_EQ(challenges[0].Param("realm"), "Registry Realm");
  EXPECT_EQ(challenges[1].scheme, "bearer");
  EXPECT_EQ(challenges[1].Param("service"), "reg");
}

TEST(ParseWwwAuthenticateTest, UnescapesQuotedPairs) {
  ASSERT_OK_AND_ASSIGN(std::vector<AuthChallenge> challenges,
                       ParseWwwAuthenticate(R"(Basic realm="a \"b\" \\ c")"));
  EXPECT_EQ(challenges[0].Param("realm"), R"(a "b" \ c)");
}

TEST(ParseWwwAuthenticateTest, RejectsGarbage) {
  EXPECT_THAT(ParseWwwAuthenticate(""),
              StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(ParseWwwAuthenticate(R"(Bearer realm="unterminated)"),
              StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(ParseWwwAuthenticate("\"quoted-scheme\""),
              StatusIs(absl::StatusCode::kInvalidArgument));
  std::string many;
  for (int i = 0; i < 100; ++i) many += "Basic realm=x, ";
  EXPECT_THAT(ParseWwwAuthenticate(many),
              StatusIs(absl::StatusCode::kInvalidArgument));
}

// Bytes >= 0x80 are not token characters (RFC 7230 tchar is ASCII) whatever
// the sign of char (this test runs on x86 and aarch64); inside a quoted
// value (obs-text) they are kept verbatim.
TEST(ParseWwwAuthenticateTest, HighBytesEndATokenButStayInQuotedValues) {
  EXPECT_THAT(ParseWwwAuthenticate("Bearer\xC3\xA9 realm=\"x\""),
              StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(ParseWwwAuthenticate("Bearer re\xFF" "alm=\"x\""),
              StatusIs(absl::StatusCode::kInvalidArgument));
  ASSERT_OK_AND_ASSIGN(
      std::vector<AuthChallenge> challenges,
      ParseWwwAuthenticate("Bearer realm=\"https://t/caf\xC3\xA9\xFF\""));
  ASSERT_EQ(challenges.size(), 1u);
  EXPECT_EQ(challenges[0].Param("realm"), "https://t/caf\xC3\xA9\xFF");
}

}  // namespace
}  // namespace ciagent::oci
