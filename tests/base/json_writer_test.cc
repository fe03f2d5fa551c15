#include "ciagent/base/json_writer.h"

#include <simdjson.h>

#include <cstdint>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace ciagent {
namespace {

// U+FFFD REPLACEMENT CHARACTER, as UTF-8.
constexpr char kReplacement[] = "\xEF\xBF\xBD";

std::string Replaced(int count) {
  std::string out;
  for (int i = 0; i < count; ++i) out.append(kReplacement);
  return out;
}

TEST(JsonQuoteTest, QuotesPlainAscii) {
  EXPECT_EQ(JsonQuote("hello world"), "\"hello world\"");
  EXPECT_EQ(JsonQuote(""), "\"\"");
}

TEST(JsonQuoteTest, EscapesQuoteAndBackslash) {
  EXPECT_EQ(JsonQuote("say \"hi\""), R"("say \"hi\"")");
  EXPECT_EQ(JsonQuote(R"(C:\dir\file)"), R"("C:\\dir\\file")");
}

TEST(JsonQuoteTest, EscapesCommonControlCharactersShortForm) {
  EXPECT_EQ(JsonQuote("a\nb\rc\td"), R"("a\nb\rc\td")");
}

TEST(JsonQuoteTest, EscapesOtherControlCharactersAsUnicode) {
  EXPECT_EQ(JsonQuote(absl::string_view("\0", 1)), R"("\u0000")");
  EXPECT_EQ(JsonQuote("\x01\x08\x0c\x1b\x1f"),
            R"("\u0001\u0008\u000c\u001b\u001f")");
}

TEST(JsonQuoteTest, EscapesDelete) {
  EXPECT_EQ(JsonQuote("a\x7f"
                      "b"),
            R"("a\u007fb")");
}

TEST(JsonQuoteTest, KeepsSpaceAndPrintableAsciiVerbatim) {
  const std::string printable = " !#$%&'()*+,-./0123456789:;<=>?@AZ[]^_`az{|}~";
  EXPECT_EQ(JsonQuote(printable), "\"" + printable + "\"");
}

TEST(JsonQuoteTest, KeepsValidMultiByteUtf8) {
  // 2-, 3- and 4-byte sequences: é, €, 😀; and the extremes of each length.
  const std::string text = "caf\xC3\xA9 \xE2\x82\xAC \xF0\x9F\x98\x80";
  EXPECT_EQ(JsonQuote(text), "\"" + text + "\"");
  const std::string edges =
      "\xC2\x80"           // U+0080, smallest 2-byte
      "\xDF\xBF"           // U+07FF
      "\xE0\xA0\x80"       // U+0800, smallest 3-byte
      "\xED\x9F\xBF"       // U+D7FF, just below the surrogates
      "\xEE\x80\x80"       // U+E000, just above them
      "\xEF\xBF\xBF"       // U+FFFF
      "\xF0\x90\x80\x80"   // U+10000, smallest 4-byte
      "\xF4\x8F\xBF\xBF";  // U+10FFFF, largest code point
  EXPECT_EQ(JsonQuote(edges), "\"" + edges + "\"");
}

TEST(JsonQuoteTest, ReplacesStrayContinuationByte) {
  EXPECT_EQ(JsonQuote("a\x80"
                      "b"),
            "\"a" + Replaced(1) + "b\"");
}

TEST(JsonQuoteTest, ReplacesInvalidLeadBytes) {
  EXPECT_EQ(JsonQuote("\xFF\xFE\xF8\xC0\xC1"), "\"" + Replaced(5) + "\"");
}

TEST(JsonQuoteTest, ReplacesTruncatedSequenceAndKeepsFollowingAscii) {
  // A 3-byte lead with one continuation byte, then ASCII.
  EXPECT_EQ(JsonQuote("\xE2\x82("), "\"" + Replaced(2) + "(\"");
  // Truncated at the end of the input.
  EXPECT_EQ(JsonQuote("ok\xF0\x9F\x98"), "\"ok" + Replaced(3) + "\"");
}

TEST(JsonQuoteTest, ReplacesOverlongEncodings) {
  // '/' encoded in two, three and four bytes.
  EXPECT_EQ(JsonQuote("\xC0\xAF"), "\"" + Replaced(2) + "\"");
  EXPECT_EQ(JsonQuote("\xE0\x80\xAF"), "\"" + Replaced(3) + "\"");
  EXPECT_EQ(JsonQuote("\xF0\x80\x80\xAF"), "\"" + Replaced(4) + "\"");
  // Overlong NUL, a classic way to smuggle a terminator.
  EXPECT_EQ(JsonQuote("\xC0\x80"), "\"" + Replaced(2) + "\"");
}

TEST(JsonQuoteTest, ReplacesSurrogateCodePoints) {
  EXPECT_EQ(JsonQuote("\xED\xA0\x80"), "\"" + Replaced(3) + "\"");  // U+D800
  EXPECT_EQ(JsonQuote("\xED\xBF\xBF"), "\"" + Replaced(3) + "\"");  // U+DFFF
}

TEST(JsonQuoteTest, ReplacesCodePointsAboveUnicodeRange) {
  EXPECT_EQ(JsonQuote("\xF4\x90\x80\x80"), "\"" + Replaced(4) + "\"");  // U+110000
  EXPECT_EQ(JsonQuote("\xF5\x80\x80\x80"), "\"" + Replaced(4) + "\"");
}

TEST(JsonQuoteTest, OutputOfArbitraryBytesIsValidJson) {
  std::string every_byte;
  for (int c = 0; c < 256; ++c) every_byte.push_back(static_cast<char>(c));
  const std::string quoted = JsonQuote(every_byte);
  simdjson::dom::parser parser;
  simdjson::dom::element doc;
  ASSERT_EQ(parser.parse(quoted).get(doc), simdjson::SUCCESS) << quoted;
  std::string_view parsed;
  ASSERT_EQ(doc.get_string().get(parsed), simdjson::SUCCESS);
  // The ASCII half survives exactly (escapes decoded by the parser).
  EXPECT_EQ(parsed.substr(0, 128), std::string_view(every_byte).substr(0, 128));
}

TEST(AppendJsonStringTest, AppendsToExistingContent) {
  std::string out = "prefix:";
  AppendJsonString(&out, "a\"b");
  EXPECT_EQ(out, R"(prefix:"a\"b")");
}

TEST(JsonObjectBuilderTest, EmptyBuilderYieldsEmptyObject) {
  EXPECT_EQ(JsonObjectBuilder().Build(), "{}");
}

TEST(JsonObjectBuilderTest, WritesFieldsInInsertionOrder) {
  JsonObjectBuilder b;
  b.Add("job_id", "j-1").Add("attempt", 2).AddRaw("env", "{}");
  EXPECT_EQ(std::move(b).Build(), R"({"job_id":"j-1","attempt":2,"env":{}})");
}

TEST(JsonObjectBuilderTest, EscapesKeysAndValues) {
  JsonObjectBuilder b;
  b.Add("k\"ey", "va\\lue\n");
  EXPECT_EQ(std::move(b).Build(), R"({"k\"ey":"va\\lue\n"})");
}

TEST(JsonObjectBuilderTest, OutputParsesWithTypedValues) {
  JsonObjectBuilder b;
  b.Add("name", std::string("caf\xC3\xA9 \"quoted\""))
      .Add("bad_utf8", "x\xFFy")
      .Add("count", 7)
      .Add("big", int64_t{-9007199254740993})
      .Add("ok", true)
      .Add("failed", false)
      .AddRaw("steps", R"(["check","test"])");
  const std::string json = std::move(b).Build();

  simdjson::dom::parser parser;
  simdjson::dom::object object;
  ASSERT_EQ(parser.parse(json).get(object), simdjson::SUCCESS) << json;

  std::string_view name;
  ASSERT_EQ(object["name"].get(name), simdjson::SUCCESS);
  EXPECT_EQ(name, "caf\xC3\xA9 \"quoted\"");
  std::string_view bad_utf8;
  ASSERT_EQ(object["bad_utf8"].get(bad_utf8), simdjson::SUCCESS);
  EXPECT_EQ(bad_utf8, "x\xEF\xBF\xBDy");
  int64_t count = 0;
  ASSERT_EQ(object["count"].get(count), simdjson::SUCCESS);
  EXPECT_EQ(count, 7);
  int64_t big = 0;
  ASSERT_EQ(object["big"].get(big), simdjson::SUCCESS);
  EXPECT_EQ(big, -9007199254740993);
  bool ok = false;
  ASSERT_EQ(object["ok"].get(ok), simdjson::SUCCESS);
  EXPECT_TRUE(ok);
  bool failed = true;
  ASSERT_EQ(object["failed"].get(failed), simdjson::SUCCESS);
  EXPECT_FALSE(failed);
  simdjson::dom::array steps;
  ASSERT_EQ(object["steps"].get(steps), simdjson::SUCCESS);
  EXPECT_EQ(steps.size(), 2u);

  std::vector<std::string> keys;
  for (simdjson::dom::key_value_pair field : object) {
    keys.emplace_back(field.key);
  }
  EXPECT_THAT(keys, ::testing::ElementsAre("name", "bad_utf8", "count", "big",
                                           "ok", "failed", "steps"));
}

TEST(JsonStringArrayTest, QuotesEachItem) {
  EXPECT_EQ(JsonStringArray({}), "[]");
  EXPECT_EQ(JsonStringArray({"/usr/local/bin/app", "say \"hi\""}),
            R"(["/usr/local/bin/app","say \"hi\""])");
}

}  // namespace
}  // namespace ciagent
