#include "ciagent/base/secret.h"

#include <cstdlib>
#include <fstream>
#include <optional>
#include <string>
#include <vector>

#include "ciagent/base/log.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "testing/redis_server.h"
#include "testing/status_matchers.h"

namespace ciagent {
namespace {

using ::ciagent::testing::IsOkAndHolds;
using ::ciagent::testing::StatusIs;
using ::testing::AllOf;
using ::testing::Eq;
using ::testing::HasSubstr;
using ::testing::Not;
using ::testing::Optional;

constexpr char kVar[] = "CIAGENT_TEST_SECRET";
constexpr char kFileVar[] = "CIAGENT_TEST_SECRET_FILE";

// Each test starts with neither variable set and a fresh directory for
// secret files. Secrets read here are registered for masking for the rest
// of the process, so each test uses its own values.
class ReadSecretFromEnvTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ::unsetenv(kVar);
    ::unsetenv(kFileVar);
    absl::StatusOr<std::string> dir = testing::MakeTempDir("ciagent-secret-");
    ASSERT_TRUE(dir.ok()) << dir.status();
    dir_ = *dir;
  }
  void TearDown() override {
    ::unsetenv(kVar);
    ::unsetenv(kFileVar);
    SetLogSinkForTesting(nullptr);
    testing::RemoveTree(dir_);
  }

  std::string WriteFile(const std::string& name, const std::string& contents) {
    const std::string path = dir_ + "/" + name;
    std::ofstream(path, std::ios::binary) << contents;
    return path;
  }

  std::string dir_;
};

TEST_F(ReadSecretFromEnvTest, ReturnsNulloptWhenNeitherVariableIsSet) {
  EXPECT_THAT(ReadSecretFromEnv(kVar), IsOkAndHolds(Eq(std::optional<std::string>())));
}

TEST_F(ReadSecretFromEnvTest, TreatsEmptyVariableAsUnset) {
  ::setenv(kVar, "", 1);
  EXPECT_THAT(ReadSecretFromEnv(kVar), IsOkAndHolds(Eq(std::optional<std::string>())));
}

TEST_F(ReadSecretFromEnvTest, ReadsVariable) {
  ::setenv(kVar, "from-variable-1", 1);
  EXPECT_THAT(ReadSecretFromEnv(kVar),
              IsOkAndHolds(Optional(std::string("from-variable-1"))));
}

TEST_F(ReadSecretFromEnvTest, VariableWinsOverFile) {
  ::setenv(kVar, "from-variable-2", 1);
  ::setenv(kFileVar, WriteFile("secret", "from-file-2\n").c_str(), 1);
  EXPECT_THAT(ReadSecretFromEnv(kVar),
              IsOkAndHolds(Optional(std::string("from-variable-2"))));
}

TEST_F(ReadSecretFromEnvTest, ReadsFileWhenVariableIsEmpty) {
  ::setenv(kVar, "", 1);
  ::setenv(kFileVar, WriteFile("secret", "from-file-3").c_str(), 1);
  EXPECT_THAT(ReadSecretFromEnv(kVar),
              IsOkAndHolds(Optional(std::string("from-file-3"))));
}

TEST_F(ReadSecretFromEnvTest, StripsTrailingNewlineFromFile) {
  ::setenv(kFileVar, WriteFile("secret", "from-file-4\n").c_str(), 1);
  EXPECT_THAT(ReadSecretFromEnv(kVar),
              IsOkAndHolds(Optional(std::string("from-file-4"))));
}

TEST_F(ReadSecretFromEnvTest, KeepsInnerAndLeadingWhitespaceFromFile) {
  ::setenv(kFileVar, WriteFile("secret", " from file 5\n").c_str(), 1);
  EXPECT_THAT(ReadSecretFromEnv(kVar),
              IsOkAndHolds(Optional(std::string(" from file 5"))));
}

TEST_F(ReadSecretFromEnvTest, MissingFileIsFailedPreconditionNamingVariable) {
  // A real secret sits next to the path that is named by mistake.
  WriteFile("password", "from-file-6-never-shown");
  const std::string path = dir_ + "/password.missing";
  ::setenv(kFileVar, path.c_str(), 1);

  absl::StatusOr<std::optional<std::string>> secret = ReadSecretFromEnv(kVar);
  EXPECT_THAT(secret, StatusIs(absl::StatusCode::kFailedPrecondition,
                               AllOf(HasSubstr(kFileVar), HasSubstr(path),
                                     Not(HasSubstr("from-file-6")))));
}

TEST_F(ReadSecretFromEnvTest, DirectoryInsteadOfFileIsFailedPrecondition) {
  // A Secret volume's mount point instead of the file in it.
  WriteFile("password", "from-file-7-never-shown");
  ::setenv(kFileVar, dir_.c_str(), 1);

  EXPECT_THAT(ReadSecretFromEnv(kVar),
              StatusIs(absl::StatusCode::kFailedPrecondition,
                       AllOf(HasSubstr(kFileVar),
                             Not(HasSubstr("from-file-7")))));
}

TEST_F(ReadSecretFromEnvTest, MasksSecretFromVariableInLaterLogLines) {
  std::vector<std::string> lines;
  SetLogSinkForTesting([&](absl::string_view line) { lines.emplace_back(line); });
  ::setenv(kVar, "from-variable-8", 1);
  ASSERT_THAT(ReadSecretFromEnv(kVar),
              IsOkAndHolds(Optional(std::string("from-variable-8"))));

  LogInfo("connecting", {{"password", "from-variable-8"}});

  ASSERT_THAT(lines, ::testing::SizeIs(1));
  EXPECT_THAT(lines[0], Not(HasSubstr("from-variable-8")));
  EXPECT_THAT(lines[0], HasSubstr(R"("password":"[MASKED]")"));
}

TEST_F(ReadSecretFromEnvTest, MasksSecretFromFileInLaterLogLines) {
  std::vector<std::string> lines;
  SetLogSinkForTesting([&](absl::string_view line) { lines.emplace_back(line); });
  ::setenv(kFileVar, WriteFile("secret", "from-file-9\n").c_str(), 1);
  ASSERT_THAT(ReadSecretFromEnv(kVar),
              IsOkAndHolds(Optional(std::string("from-file-9"))));

  LogInfo("connecting", {{"password", "from-file-9"}});

  ASSERT_THAT(lines, ::testing::SizeIs(1));
  EXPECT_THAT(lines[0], Not(HasSubstr("from-file-9")));
  EXPECT_THAT(lines[0], HasSubstr(R"("password":"[MASKED]")"));
}

}  // namespace
}  // namespace ciagent
