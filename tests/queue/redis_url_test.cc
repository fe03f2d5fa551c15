// Parsing redis:// URLs and keeping their passwords out of what is shown.
#include "ciagent/queue/redis_client.h"

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "testing/status_matchers.h"

namespace ciagent {
namespace {

using ::ciagent::testing::StatusIs;
using ::testing::HasSubstr;
using ::testing::Not;

TEST(RedisUrlTest, ParsesHostPortAndDatabase) {
  ASSERT_OK_AND_ASSIGN(RedisOptions options,
                       RedisOptionsFromUrl("redis://redis.ci.svc:6380/2"));
  EXPECT_EQ(options.host, "redis.ci.svc");
  EXPECT_EQ(options.port, 6380);
  EXPECT_EQ(options.db, 2);
  EXPECT_TRUE(options.username.empty());
  EXPECT_TRUE(options.password.empty());
}

TEST(RedisUrlTest, DefaultsPortAndDatabase) {
  ASSERT_OK_AND_ASSIGN(RedisOptions options, RedisOptionsFromUrl("redis://redis"));
  EXPECT_EQ(options.port, 6379);
  EXPECT_EQ(options.db, 0);
}

TEST(RedisUrlTest, ParsesUserAndPercentEncodedPassword) {
  ASSERT_OK_AND_ASSIGN(RedisOptions options,
                       RedisOptionsFromUrl("redis://agent:p%40ss%3Aword@h:1/0"));
  EXPECT_EQ(options.username, "agent");
  EXPECT_EQ(options.password, "p@ss:word");
}

TEST(RedisUrlTest, PasswordWithoutUser) {
  ASSERT_OK_AND_ASSIGN(RedisOptions options,
                       RedisOptionsFromUrl("redis://:secret-pw@h:1"));
  EXPECT_TRUE(options.username.empty());
  EXPECT_EQ(options.password, "secret-pw");
}

TEST(RedisUrlTest, ParsesBracketedIpv6Host) {
  ASSERT_OK_AND_ASSIGN(RedisOptions options,
                       RedisOptionsFromUrl("redis://[::1]:7000"));
  EXPECT_EQ(options.host, "::1");
  EXPECT_EQ(options.port, 7000);
  EXPECT_EQ(RedactedRedisUrl(options), "redis://[::1]:7000/0");
}

TEST(RedisUrlTest, RejectsMalformedUrlsNamingTheProblem) {
  EXPECT_THAT(RedisOptionsFromUrl("http://h:1"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("redis://")));
  EXPECT_THAT(RedisOptionsFromUrl("redis://h:99999"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("port")));
  EXPECT_THAT(RedisOptionsFromUrl("redis://h:1/x"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("database")));
  EXPECT_THAT(RedisOptionsFromUrl("redis://"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("host")));
}

TEST(RedisUrlTest, ErrorsNeverRepeatThePassword) {
  auto parsed = RedisOptionsFromUrl("redis://u:hunter22@h:notaport");
  EXPECT_THAT(parsed, StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(parsed.status().message(), Not(HasSubstr("hunter22")));
}

TEST(RedisUrlTest, RedactedUrlHasNoPasswordButStaysUsable) {
  ASSERT_OK_AND_ASSIGN(RedisOptions options,
                       RedisOptionsFromUrl("redis://agent:hunter22@h:1/3"));
  const std::string shown = RedactedRedisUrl(options);
  EXPECT_EQ(shown, "redis://agent@h:1/3");
  ASSERT_OK_AND_ASSIGN(RedisOptions reparsed, RedisOptionsFromUrl(shown));
  EXPECT_EQ(reparsed.username, "agent");
  EXPECT_EQ(reparsed.port, 1);
  EXPECT_EQ(reparsed.db, 3);
}

TEST(RedisUrlTest, RedissMeansTls) {
  ASSERT_OK_AND_ASSIGN(RedisOptions options,
                       RedisOptionsFromUrl("rediss://redis.ci.svc:6380/1"));
  EXPECT_TRUE(options.tls);
  EXPECT_EQ(options.host, "redis.ci.svc");
  EXPECT_EQ(options.port, 6380);
  EXPECT_TRUE(options.sentinels.empty());
  EXPECT_EQ(RedactedRedisUrl(options), "rediss://redis.ci.svc:6380/1");
}

TEST(RedisUrlTest, SentinelUrlListsTheSentinelsAndNamesTheMaster) {
  ASSERT_OK_AND_ASSIGN(
      RedisOptions options,
      RedisOptionsFromUrl("redis+sentinel://agent:hunter22@s1:26380,s2,"
                          "[fd00::3]:26379/mymaster/2"));
  EXPECT_FALSE(options.tls);
  ASSERT_EQ(options.sentinels.size(), 3u);
  EXPECT_EQ(options.sentinels[0].host, "s1");
  EXPECT_EQ(options.sentinels[0].port, 26380);
  EXPECT_EQ(options.sentinels[1].host, "s2");
  EXPECT_EQ(options.sentinels[1].port, 26379);  // Sentinel's default
  EXPECT_EQ(options.sentinels[2].host, "fd00::3");
  EXPECT_EQ(options.master_name, "mymaster");
  EXPECT_EQ(options.db, 2);
  // The URL's credentials are the data servers', not the sentinels'.
  EXPECT_EQ(options.username, "agent");
  EXPECT_EQ(options.password, "hunter22");
  EXPECT_EQ(options.sentinel_password, "");
  const std::string shown = RedactedRedisUrl(options);
  EXPECT_EQ(shown,
            "redis+sentinel://agent@s1:26380,s2:26379,[fd00::3]:26379/"
            "mymaster/2");
  ASSERT_OK_AND_ASSIGN(RedisOptions reparsed, RedisOptionsFromUrl(shown));
  EXPECT_EQ(RedactedRedisUrl(reparsed), shown);
}

TEST(RedisUrlTest, TlsSentinelUrl) {
  ASSERT_OK_AND_ASSIGN(RedisOptions options,
                       RedisOptionsFromUrl("rediss+sentinel://s1/main"));
  EXPECT_TRUE(options.tls);
  EXPECT_EQ(options.master_name, "main");
  EXPECT_EQ(options.db, 0);
}

TEST(RedisUrlTest, SentinelUrlWithoutAMasterNameIsRefused) {
  EXPECT_THAT(RedisOptionsFromUrl("redis+sentinel://s1:26379,s2:26379"),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("name the master")));
  EXPECT_THAT(RedisOptionsFromUrl("redis+sentinel://s1:26379,:26379/m"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("host")));
  EXPECT_THAT(RedisOptionsFromUrl("redis+sentinel://s1:0/m"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("port")));
}

}  // namespace
}  // namespace ciagent
