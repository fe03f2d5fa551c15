// RedisClient against a real redis-server: commands, pipelines, scripts,
// authentication, and the error codes callers rely on to decide retries.
#include "ciagent/queue/redis_client.h"

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "testing/redis_server.h"
#include "testing/status_matchers.h"

namespace ciagent {
namespace {

using ::ciagent::testing::StatusIs;
using ::testing::HasSubstr;
using ::testing::Not;

RedisOptions OptionsFor(const ::ciagent::testing::RedisServer& server) {
  RedisOptions options;
  options.port = server.port();
  return options;
}

TEST(RedisClientTest, RunsCommandsAndConvertsReplies) {
  CIAGENT_START_REDIS(server);
  RedisClient client(OptionsFor(*server));
  ASSERT_OK_AND_ASSIGN(RedisReply pong, client.Command({"PING"}));
  EXPECT_EQ(pong.type, RedisReply::Type::kStatus);
  EXPECT_EQ(pong.str, "PONG");
  ASSERT_OK(client.Command({"RPUSH", "l", "a", std::string("b\0c", 3)}).status());
  ASSERT_OK_AND_ASSIGN(RedisReply list, client.Command({"LRANGE", "l", "0", "-1"}));
  ASSERT_TRUE(list.is_array());
  ASSERT_EQ(list.elements.size(), 2u);
  EXPECT_EQ(list.elements[1].str, std::string("b\0c", 3));
  ASSERT_OK_AND_ASSIGN(RedisReply missing, client.Command({"GET", "nope"}));
  EXPECT_TRUE(missing.is_nil());
}

TEST(RedisClientTest, PipelineReturnsRepliesInOrder) {
  CIAGENT_START_REDIS(server);
  RedisClient client(OptionsFor(*server));
  std::vector<std::vector<std::string>> commands = {
      {"INCR", "n"}, {"INCR", "n"}, {"GET", "n"}};
  ASSERT_OK_AND_ASSIGN(auto replies, client.Pipeline(commands));
  ASSERT_EQ(replies.size(), 3u);
  EXPECT_EQ(replies[0].integer, 1);
  EXPECT_EQ(replies[1].integer, 2);
  EXPECT_EQ(replies[2].str, "2");
}

TEST(RedisClientTest, ErrorReplyInPipelineKeepsConnectionUsable) {
  CIAGENT_START_REDIS(server);
  RedisClient client(OptionsFor(*server));
  std::vector<std::vector<std::string>> commands = {
      {"SET", "s", "x"}, {"INCR", "s"}, {"GET", "s"}};
  EXPECT_THAT(client.Pipeline(commands), StatusIs(absl::StatusCode::kInternal));
  ASSERT_OK_AND_ASSIGN(RedisReply value, client.Command({"GET", "s"}));
  EXPECT_EQ(value.str, "x");
}

TEST(RedisClientTest, ScriptIsReloadedAfterServerForgetsIt) {
  CIAGENT_START_REDIS(server);
  RedisClient client(OptionsFor(*server));
  RedisScript script("return ARGV[1] .. KEYS[1]");
  ASSERT_OK_AND_ASSIGN(RedisReply first, client.Eval(script, {"k"}, {"v"}));
  EXPECT_EQ(first.str, "vk");
  ASSERT_OK(client.Command({"SCRIPT", "FLUSH"}).status());
  ASSERT_OK_AND_ASSIGN(RedisReply second, client.Eval(script, {"k"}, {"w"}));
  EXPECT_EQ(second.str, "wk");
}

TEST(RedisClientTest, ConnectionRefusedIsUnavailable) {
  ASSERT_OK_AND_ASSIGN(int port, ::ciagent::testing::PickFreePort());
  RedisOptions options;
  options.port = port;
  RedisClient client(options);
  EXPECT_THAT(client.Command({"PING"}),
              StatusIs(absl::StatusCode::kUnavailable, HasSubstr("127.0.0.1")));
}

TEST(RedisClientTest, ReconnectsOnNextCommandAfterServerRestart) {
  CIAGENT_START_REDIS(server);
  RedisClient client(OptionsFor(*server));
  ASSERT_OK(client.Command({"PING"}).status());
  ASSERT_OK(server->Restart());
  // The old connection is dead: the first command reports it...
  absl::StatusOr<RedisReply> broken = client.Command({"PING"});
  if (!broken.ok()) {
    EXPECT_THAT(broken, StatusIs(absl::StatusCode::kUnavailable));
  }
  // ... and the next one reconnects.
  EXPECT_OK(client.Command({"PING"}).status());
}

TEST(RedisClientTest, AuthenticatesAndSelectsDatabase) {
  CIAGENT_START_REDIS_WITH(server, {.password = "correct-horse"});
  RedisOptions options = OptionsFor(*server);
  options.password = "correct-horse";
  options.db = 3;
  RedisClient client(options);
  ASSERT_OK(client.Command({"SET", "k", "v"}).status());
  RedisOptions zero = options;
  zero.db = 0;
  RedisClient other(zero);
  ASSERT_OK_AND_ASSIGN(RedisReply missing, other.Command({"GET", "k"}));
  EXPECT_TRUE(missing.is_nil());
}

TEST(RedisClientTest, WrongPasswordIsUnauthenticatedWithoutEchoingIt) {
  CIAGENT_START_REDIS_WITH(server, {.password = "correct-horse"});
  RedisOptions options = OptionsFor(*server);
  options.password = "battery-staple";
  RedisClient client(options);
  absl::StatusOr<RedisReply> reply = client.Command({"PING"});
  EXPECT_THAT(reply, StatusIs(absl::StatusCode::kUnauthenticated));
  EXPECT_THAT(reply.status().message(), Not(HasSubstr("battery-staple")));
  options.password.clear();
  RedisClient anonymous(options);
  EXPECT_THAT(anonymous.Command({"PING"}),
              StatusIs(absl::StatusCode::kUnauthenticated));
}

}  // namespace
}  // namespace ciagent
