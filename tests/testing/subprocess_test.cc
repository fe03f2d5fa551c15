// Subprocess, the test fixtures' process starter: what a caller may rely on
// as soon as Start() returns, on every platform the tests run on (natively
// and under qemu-user, where posix_spawn returns before the child execs).
#include "testing/subprocess.h"

#include <fstream>
#include <string>

#include "gtest/gtest.h"
#include "testing/redis_server.h"
#include "testing/status_matchers.h"

namespace ciagent::testing {
namespace {

TEST(SubprocessTest, OutputFilesAreEmptyWhenStartReturns) {
  ASSERT_OK_AND_ASSIGN(std::string dir, MakeTempDir("ciagent-subprocess-"));
  const std::string out = dir + "/out", err = dir + "/err";
  // What a previous run of the same server left behind.
  std::ofstream(out) << "ready 1234\n";
  std::ofstream(err) << "old error\n";
  SubprocessOptions options;
  options.stdout_path = out;
  options.stderr_path = err;
  ASSERT_OK_AND_ASSIGN(auto process,
                       Subprocess::Start({"sh", "-c", "sleep 1; echo new"},
                                         options));
  EXPECT_EQ(ReadFileOrEmpty(out), "");
  EXPECT_EQ(ReadFileOrEmpty(err), "");
  process->Kill();
  RemoveTree(dir);
}

}  // namespace
}  // namespace ciagent::testing
