// Specification of WriteFileAtomically: the target holds the old contents or
// the new ones, with the requested mode, and no temporary file stays behind.
#include "ciagent/base/atomic_file.h"

#include <dirent.h>
#include <sys/stat.h>

#include <string>
#include <vector>

#include "absl/status/status.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "testing/redis_server.h"
#include "testing/status_matchers.h"
#include "testing/subprocess.h"

namespace ciagent {
namespace {

using ::ciagent::testing::ReadFileOrEmpty;
using ::ciagent::testing::StatusIs;
using ::testing::ElementsAre;
using ::testing::HasSubstr;

class WriteFileAtomicallyTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_OK_AND_ASSIGN(
        dir_, ::ciagent::testing::MakeTempDir("ciagent-atomic-file-"));
  }
  void TearDown() override {
    if (!dir_.empty()) ::ciagent::testing::RemoveTree(dir_);
  }

  std::vector<std::string> Entries() const {
    std::vector<std::string> names;
    DIR* dir = ::opendir(dir_.c_str());
    if (dir == nullptr) return names;
    while (const dirent* entry = ::readdir(dir)) {
      const std::string name = entry->d_name;
      if (name != "." && name != "..") names.push_back(name);
    }
    ::closedir(dir);
    return names;
  }

  std::string dir_;
};

TEST_F(WriteFileAtomicallyTest, CreatesFileWithContents) {
  const std::string path = dir_ + "/result.json";
  ASSERT_OK(WriteFileAtomically(path, "{\"status\":\"success\"}\n"));
  EXPECT_EQ(ReadFileOrEmpty(path), "{\"status\":\"success\"}\n");
  EXPECT_THAT(Entries(), ElementsAre("result.json"));
}

TEST_F(WriteFileAtomicallyTest, ReplacesExistingFile) {
  const std::string path = dir_ + "/junit.xml";
  ASSERT_OK(WriteFileAtomically(path, "a much longer first version"));
  ASSERT_OK(WriteFileAtomically(path, "second"));
  EXPECT_EQ(ReadFileOrEmpty(path), "second");
  EXPECT_THAT(Entries(), ElementsAre("junit.xml"));
}

TEST_F(WriteFileAtomicallyTest, WritesEmptyAndBinaryContents) {
  const std::string empty = dir_ + "/empty";
  ASSERT_OK(WriteFileAtomically(empty, ""));
  EXPECT_EQ(ReadFileOrEmpty(empty), "");

  const std::string bytes("\0\xff\n\r\x01", 5);
  const std::string binary = dir_ + "/binary";
  ASSERT_OK(WriteFileAtomically(binary, bytes));
  EXPECT_EQ(ReadFileOrEmpty(binary), bytes);
}

TEST_F(WriteFileAtomicallyTest, SetsTheRequestedModeWhateverTheUmask) {
  const std::string secret = dir_ + "/job.json";
  ASSERT_OK(WriteFileAtomically(secret, "{}", 0600));
  struct stat st;
  ASSERT_EQ(::stat(secret.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 07777, 0600u);

  const std::string shared = dir_ + "/metrics.prom";
  const mode_t old_umask = ::umask(077);
  const absl::Status written = WriteFileAtomically(shared, "x 1\n");
  ::umask(old_umask);
  ASSERT_OK(written);
  ASSERT_EQ(::stat(shared.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 07777, 0644u);
}

TEST_F(WriteFileAtomicallyTest, MissingDirectoryIsUnavailableAndNamesPath) {
  const std::string path = dir_ + "/no/such/dir/result.json";
  EXPECT_THAT(WriteFileAtomically(path, "{}"),
              StatusIs(absl::StatusCode::kUnavailable, HasSubstr(path)));
  EXPECT_THAT(Entries(), ::testing::IsEmpty());
}

TEST_F(WriteFileAtomicallyTest, FailedRenameKeepsTargetAndRemovesTemporary) {
  // A non-empty directory cannot be replaced by a file.
  const std::string path = dir_ + "/occupied";
  ASSERT_EQ(::mkdir(path.c_str(), 0755), 0);
  ASSERT_OK(WriteFileAtomically(path + "/inside", "kept"));

  EXPECT_THAT(
      WriteFileAtomically(path, "new"),
      StatusIs(absl::StatusCode::kUnavailable, HasSubstr("rename " + path)));
  EXPECT_THAT(Entries(), ElementsAre("occupied"));
  EXPECT_EQ(ReadFileOrEmpty(path + "/inside"), "kept");
}

}  // namespace
}  // namespace ciagent
