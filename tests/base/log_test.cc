#include "ciagent/base/log.h"

#include <simdjson.h>
#include <unistd.h>

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <limits>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_split.h"
#include "absl/time/time.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace ciagent {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::MatchesRegex;
using ::testing::Not;
using ::testing::SizeIs;

// Captures log lines for one test and restores the logger afterwards.
// Registered secrets cannot be unregistered, so every test uses secrets no
// other test logs.
class LogTest : public ::testing::Test {
 protected:
  void SetUp() override {
    SetLogSinkForTesting(
        [this](absl::string_view line) { lines_.emplace_back(line); });
  }
  void TearDown() override {
    SetLogSinkForTesting(nullptr);
    SetMinLogLevel(LogLevel::kInfo);
    SetLogJobId("");
  }

  // Keys of a one-line JSON object, in order; fails the test when the line
  // is not a JSON object.
  static std::vector<std::string> Keys(const std::string& line) {
    simdjson::dom::parser parser;
    simdjson::dom::object object;
    EXPECT_EQ(parser.parse(line).get(object), simdjson::SUCCESS) << line;
    std::vector<std::string> keys;
    for (simdjson::dom::key_value_pair field : object) {
      keys.emplace_back(field.key);
    }
    return keys;
  }

  // The value of `key` re-serialized as minified JSON ("" when missing).
  static std::string Value(const std::string& line, const char* key) {
    simdjson::dom::parser parser;
    simdjson::dom::element value;
    if (parser.parse(line)[key].get(value) != simdjson::SUCCESS) return "";
    return simdjson::minify(value);
  }

  std::vector<std::string> lines_;
};

TEST_F(LogTest, WritesOneJsonObjectWithTsLevelMsgThenFieldsInOrder) {
  LogInfo("claimed job", {{"stream_id", "1795757890706-0"}, {"attempt", 1}});

  ASSERT_THAT(lines_, SizeIs(1));
  const std::string& line = lines_[0];
  EXPECT_THAT(line, Not(HasSubstr("\n")));
  EXPECT_THAT(Keys(line), ElementsAre("ts", "level", "msg", "stream_id", "attempt"));
  EXPECT_THAT(Value(line, "ts"),
              MatchesRegex(R"("[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\.[0-9]{3}Z")"));
  EXPECT_EQ(Value(line, "level"), R"("info")");
  EXPECT_EQ(Value(line, "msg"), R"("claimed job")");
  EXPECT_EQ(Value(line, "stream_id"), R"("1795757890706-0")");
  EXPECT_EQ(Value(line, "attempt"), "1");
}

TEST_F(LogTest, PutsJobIdAfterMsgWhileSet) {
  SetLogJobId("push-1234");
  LogWarning("retrying", {{"delay_ms", 100}});
  SetLogJobId("");
  LogWarning("retrying", {{"delay_ms", 100}});

  ASSERT_THAT(lines_, SizeIs(2));
  EXPECT_THAT(Keys(lines_[0]),
              ElementsAre("ts", "level", "msg", "job_id", "delay_ms"));
  EXPECT_EQ(Value(lines_[0], "job_id"), R"("push-1234")");
  EXPECT_THAT(Keys(lines_[1]), ElementsAre("ts", "level", "msg", "delay_ms"));
}

TEST_F(LogTest, NamesEachLevel) {
  SetMinLogLevel(LogLevel::kDebug);
  LogDebug("d");
  LogInfo("i");
  LogWarning("w");
  LogError("e");

  ASSERT_THAT(lines_, SizeIs(4));
  EXPECT_EQ(Value(lines_[0], "level"), R"("debug")");
  EXPECT_EQ(Value(lines_[1], "level"), R"("info")");
  EXPECT_EQ(Value(lines_[2], "level"), R"("warning")");
  EXPECT_EQ(Value(lines_[3], "level"), R"("error")");
}

TEST_F(LogTest, DropsLinesBelowMinLevel) {
  SetMinLogLevel(LogLevel::kWarning);
  LogDebug("dropped debug");
  LogInfo("dropped info");
  LogWarning("kept warning");
  LogError("kept error");

  ASSERT_THAT(lines_, SizeIs(2));
  EXPECT_EQ(Value(lines_[0], "msg"), R"("kept warning")");
  EXPECT_EQ(Value(lines_[1], "msg"), R"("kept error")");
}

TEST_F(LogTest, InfoLevelDropsDebugOnly) {
  SetMinLogLevel(LogLevel::kInfo);
  LogDebug("dropped");
  LogInfo("kept");

  ASSERT_THAT(lines_, SizeIs(1));
  EXPECT_EQ(Value(lines_[0], "msg"), R"("kept")");
}

TEST(ParseLogLevelTest, AcceptsTheFourLevelNames) {
  LogLevel level = LogLevel::kError;
  ASSERT_TRUE(ParseLogLevel("debug", &level));
  EXPECT_EQ(level, LogLevel::kDebug);
  ASSERT_TRUE(ParseLogLevel("info", &level));
  EXPECT_EQ(level, LogLevel::kInfo);
  ASSERT_TRUE(ParseLogLevel("warning", &level));
  EXPECT_EQ(level, LogLevel::kWarning);
  ASSERT_TRUE(ParseLogLevel("error", &level));
  EXPECT_EQ(level, LogLevel::kError);
}

TEST(ParseLogLevelTest, RejectsUnknownNamesAndLeavesLevelUnchanged) {
  LogLevel level = LogLevel::kWarning;
  EXPECT_FALSE(ParseLogLevel("verbose", &level));
  EXPECT_FALSE(ParseLogLevel("", &level));
  EXPECT_EQ(level, LogLevel::kWarning);
}

TEST_F(LogTest, RendersEachFieldTypeAsJson) {
  LogInfo("types", {{"text", "a \"b\"\n"},
                    {"int", -3},
                    {"int64", int64_t{1} << 40},
                    {"uint64", std::numeric_limits<uint64_t>::max()},
                    {"double", 1.5},
                    {"nan", std::nan("")},
                    {"flag", true},
                    {"elapsed", absl::Milliseconds(1500)},
                    {"error", absl::UnavailableError("redis down")},
                    {"ok", absl::OkStatus()}});

  ASSERT_THAT(lines_, SizeIs(1));
  const std::string& line = lines_[0];
  EXPECT_EQ(Value(line, "text"), R"("a \"b\"\n")");
  EXPECT_EQ(Value(line, "int"), "-3");
  EXPECT_EQ(Value(line, "int64"), "1099511627776");
  EXPECT_EQ(Value(line, "uint64"), "18446744073709551615");
  EXPECT_EQ(Value(line, "double"), "1.5");
  EXPECT_EQ(Value(line, "nan"), "null");
  EXPECT_EQ(Value(line, "flag"), "true");
  EXPECT_EQ(Value(line, "elapsed"), "1500");
  EXPECT_EQ(Value(line, "error"), R"("UNAVAILABLE: redis down")");
  EXPECT_EQ(Value(line, "ok"), R"("OK")");
}

TEST_F(LogTest, EscapesMessageAndReplacesInvalidUtf8) {
  LogInfo("line1\nline2 \"q\" \xFF", {{"out\x01", "bytes \xC0\xAF"}});

  ASSERT_THAT(lines_, SizeIs(1));
  EXPECT_THAT(Keys(lines_[0]), ElementsAre("ts", "level", "msg", "out\x01"));
  EXPECT_EQ(Value(lines_[0], "msg"), "\"line1\\nline2 \\\"q\\\" \xEF\xBF\xBD\"");
}

TEST_F(LogTest, MasksRegisteredSecretEverywhereInTheLine) {
  RegisterSecret("hunter2-log-token");
  LogInfo("auth with hunter2-log-token",
          {{"password", "hunter2-log-token"},
           {"url", "redis://:hunter2-log-token@redis:6379"}});

  ASSERT_THAT(lines_, SizeIs(1));
  const std::string& line = lines_[0];
  EXPECT_THAT(line, Not(HasSubstr("hunter2-log-token")));
  EXPECT_EQ(Value(line, "msg"), R"("auth with [MASKED]")");
  EXPECT_EQ(Value(line, "password"), R"("[MASKED]")");
  EXPECT_EQ(Value(line, "url"), R"("redis://:[MASKED]@redis:6379")");
}

TEST_F(LogTest, MasksSecretContainingQuoteInItsJsonEscapedForm) {
  const std::string secret = R"(pa"ss\w0rd)";
  RegisterSecret(secret);
  LogInfo("login", {{"password", secret}});

  ASSERT_THAT(lines_, SizeIs(1));
  const std::string& line = lines_[0];
  // In the line the secret would appear escaped: pa\"ss\\w0rd.
  EXPECT_THAT(line, Not(HasSubstr(R"(pa\"ss\\w0rd)")));
  EXPECT_THAT(line, Not(HasSubstr(secret)));
  EXPECT_EQ(Value(line, "password"), R"("[MASKED]")");
}

TEST_F(LogTest, MasksSecretOfExactlyFourBytes) {
  RegisterSecret("q7Zk");
  LogInfo("token q7Zk");

  ASSERT_THAT(lines_, SizeIs(1));
  EXPECT_EQ(Value(lines_[0], "msg"), R"("token [MASKED]")");
}

TEST_F(LogTest, IgnoresSecretsShorterThanFourBytes) {
  RegisterSecret("x9Q");
  RegisterSecret("");
  LogInfo("value x9Q stays");

  ASSERT_THAT(lines_, SizeIs(1));
  EXPECT_EQ(Value(lines_[0], "msg"), R"("value x9Q stays")");
  EXPECT_EQ(MaskSecrets("ax9Qb"), "ax9Qb");
}

TEST(MaskSecretsTest, ReplacesEveryOccurrenceOfRegisteredSecrets) {
  RegisterSecret("mask-fn-secret");
  EXPECT_EQ(MaskSecrets("a=mask-fn-secret b=mask-fn-secret"),
            "a=[MASKED] b=[MASKED]");
  EXPECT_EQ(MaskSecrets("nothing to hide"), "nothing to hide");
}

// A token registered before a longer one that starts with it must not
// leave the longer one's tail readable.
TEST(MaskSecretsTest, HidesTheWholeOfASecretThatExtendsAnEarlierOne) {
  RegisterSecret("prefix-tok");
  RegisterSecret("prefix-tok-and-more");
  EXPECT_EQ(MaskSecrets("t=prefix-tok-and-more"), "t=[MASKED]");
  EXPECT_EQ(MaskSecrets("t=prefix-tok"), "t=[MASKED]");
}

TEST_F(LogTest, ConcurrentLinesStayWhole) {
  constexpr int kThreads = 4;
  constexpr int kLinesPerThread = 200;
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([t] {
      for (int i = 0; i < kLinesPerThread; ++i) {
        LogInfo("concurrent", {{"thread", t}, {"i", i},
                               {"padding", std::string(100, 'x')}});
      }
    });
  }
  for (std::thread& thread : threads) thread.join();

  ASSERT_THAT(lines_, SizeIs(kThreads * kLinesPerThread));
  for (const std::string& line : lines_) {
    EXPECT_THAT(Keys(line), ElementsAre("ts", "level", "msg", "thread", "i", "padding"));
  }
}

// Without a test sink, lines go to stderr, each ending in a newline.
TEST(LogStderrTest, WritesNewlineTerminatedLinesToStderr) {
  std::string path = ::testing::TempDir() + "ciagent-log-test-XXXXXX";
  const int file = ::mkstemp(path.data());
  ASSERT_GE(file, 0);
  const int saved_stderr = ::dup(STDERR_FILENO);
  ASSERT_GE(saved_stderr, 0);
  ASSERT_EQ(::dup2(file, STDERR_FILENO), STDERR_FILENO);
  LogInfo("to stderr", {{"n", 1}});
  LogInfo("again", {{"n", 2}});
  ::dup2(saved_stderr, STDERR_FILENO);
  ::close(saved_stderr);
  ::close(file);

  std::string contents;
  if (FILE* in = std::fopen(path.c_str(), "rb")) {
    char buffer[4096];
    size_t n;
    while ((n = std::fread(buffer, 1, sizeof(buffer), in)) > 0) {
      contents.append(buffer, n);
    }
    std::fclose(in);
  }
  ::unlink(path.c_str());
  const std::vector<std::string> lines = absl::StrSplit(contents, '\n');
  // Two lines, each followed by a newline: the split ends with "".
  ASSERT_THAT(lines, SizeIs(3)) << contents;
  EXPECT_EQ(lines[2], "");
  EXPECT_THAT(lines[0], HasSubstr(R"("msg":"to stderr","n":1})"));
  EXPECT_THAT(lines[1], HasSubstr(R"("msg":"again","n":2})"));
}

}  // namespace
}  // namespace ciagent
