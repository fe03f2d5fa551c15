// SecretMasker from bytes: which secrets are hidden, how overlaps and short
// values are treated, and what is left readable.
#include "ciagent/base/secret_masker.h"

#include <string>
#include <vector>

#include "gtest/gtest.h"

namespace ciagent {
namespace {

SecretMasker Masker(std::vector<std::string> secrets) {
  return SecretMasker(secrets);
}

TEST(SecretMaskerTest, WithoutSecretsTextIsUnchanged) {
  EXPECT_EQ(SecretMasker().Mask("Compiling app v0.1.0"),
            "Compiling app v0.1.0");
  EXPECT_TRUE(SecretMasker().empty());
}

TEST(SecretMaskerTest, ReplacesEveryOccurrenceOfASecret) {
  EXPECT_EQ(
      Masker({"s3cr3t-value"}).Mask("token=s3cr3t-value; again s3cr3t-value."),
      "token=[MASKED]; again [MASKED].");
}

TEST(SecretMaskerTest, HidesEachOfSeveralSecrets) {
  EXPECT_EQ(Masker({"alpha-key", "beta-key"})
                .Mask("a=alpha-key b=beta-key c=gamma-key"),
            "a=[MASKED] b=[MASKED] c=gamma-key");
}

TEST(SecretMaskerTest, LongerSecretIsHiddenWholeWhenAShorterOneIsItsPrefix) {
  // Order must not matter: masking "hunter2" first would leave "-token".
  for (const auto& secrets :
       {std::vector<std::string>{"hunter2", "hunter2-token"},
        std::vector<std::string>{"hunter2-token", "hunter2"}}) {
    EXPECT_EQ(Masker(secrets).Mask("x hunter2-token y hunter2 z"),
              "x [MASKED] y [MASKED] z");
  }
}

TEST(SecretMaskerTest, LongerSecretIsHiddenWholeWhenAShorterOneIsItsSuffix) {
  EXPECT_EQ(Masker({"token-hunter2", "hunter2"}).Mask("[token-hunter2]"),
            "[[MASKED]]");
}

TEST(SecretMaskerTest, OverlappingOccurrencesBecomeOneMask) {
  EXPECT_EQ(Masker({"abcd", "cdef"}).Mask("xabcdefx"), "x[MASKED]x");
  EXPECT_EQ(Masker({"aaaa"}).Mask("aaaaaa!"), "[MASKED]!");
}

TEST(SecretMaskerTest, AdjacentOccurrencesAreMaskedSeparately) {
  EXPECT_EQ(Masker({"abcd"}).Mask("abcdabcd"), "[MASKED][MASKED]");
}

TEST(SecretMaskerTest, SecretsShorterThanFourBytesAreIgnoredAndCounted) {
  const SecretMasker masker =
      Masker({"", "a", "123", "ok!", "four", "", "four"});
  EXPECT_EQ(masker.Mask("a 123 ok! four"), "a 123 ok! [MASKED]");
  EXPECT_EQ(masker.ignored(), 3u);
  EXPECT_EQ(masker.size(), 1u);
}

TEST(SecretMaskerTest, MultiLineSecretIsMaskedPieceByPiece) {
  const SecretMasker masker = Masker(
      {"-----BEGIN KEY-----\r\nMIIEvQIBADANBgkq\nhkiG9w0BAQEFAASC\nab\n"});
  EXPECT_EQ(masker.Mask("MIIEvQIBADANBgkq"), "[MASKED]");
  EXPECT_EQ(masker.Mask("key: hkiG9w0BAQEFAASC."), "key: [MASKED].");
  EXPECT_EQ(masker.Mask("-----BEGIN KEY-----"), "[MASKED]");
  // "ab" is a piece too short to mask on its own.
  EXPECT_EQ(masker.Mask("ab"), "ab");
  EXPECT_EQ(masker.ignored(), 1u);
}

TEST(SecretMaskerTest, SecretSplitAcrossTwoLinesIsNotRecognised) {
  // The documented limit: masking works within one line.
  const SecretMasker masker = Masker({"0123456789abcdef"});
  EXPECT_EQ(masker.Mask("01234567"), "01234567");
  EXPECT_EQ(masker.Mask("89abcdef"), "89abcdef");
}

TEST(SecretMaskerTest, MasksBinaryAndMultiByteText) {
  const std::string secret("k\0e\xffy-\xc3\xa9t\xc3\xa9", 11);
  const std::string line = "pre " + secret + " post \xe2\x9c\x93";
  EXPECT_EQ(Masker({secret}).Mask(line), "pre [MASKED] post \xe2\x9c\x93");
}

TEST(SecretMaskerTest, TextThatIsOnlyASecretBecomesOnlyTheMask) {
  EXPECT_EQ(Masker({"whole-line"}).Mask("whole-line"), "[MASKED]");
  EXPECT_EQ(Masker({"whole-line"}).Mask(""), "");
}

}  // namespace
}  // namespace ciagent
