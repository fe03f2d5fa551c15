// FetchCommit when the connection to a real git server (git http-backend)
// dies in the middle of the pack: tcp_drop_proxy.py sits between the two and
// resets the first connections once a given number of response bytes has
// gone through. The fetch must retry, check out exactly the commit, and
// leave a mirror that later fetches can use.
#include <filesystem>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/random/random.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "ciagent/git/fetch.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "testing/git_repo.h"
#include "testing/git_server.h"
#include "testing/redis_server.h"  // MakeTempDir, RemoveTree
#include "testing/status_matchers.h"
#include "testing/subprocess.h"

namespace ciagent {
namespace {

namespace fs = std::filesystem;
using ::ciagent::testing::CommitFiles;
using ::ciagent::testing::PathFromEnv;
using ::ciagent::testing::ReadFileOrEmpty;
using ::ciagent::testing::StatusIs;
using ::ciagent::testing::Subprocess;
using ::ciagent::testing::SubprocessOptions;
using ::testing::HasSubstr;

constexpr char kPython[] = "/usr/bin/python3";
// The pack carries a 512 KiB file that does not compress; the proxy cuts
// after 64 KiB, well inside it (the ref advertisement is far smaller).
constexpr size_t kBigFileBytes = 512 * 1024;
constexpr int kDropAfterBytes = 64 * 1024;
constexpr char kCargoToml[] = "[package]\nname = \"app\"\n";

// tcp_drop_proxy.py: from CIAGENT_TCP_DROP_PROXY, else next to the other
// test servers.
std::string ProxyScript() {
  if (auto from_env = PathFromEnv("CIAGENT_TCP_DROP_PROXY"); from_env.ok()) {
    return *from_env;
  }
  return (fs::path(__FILE__).parent_path().parent_path() / "testing" /
          "tcp_drop_proxy.py")
      .string();
}

// One running tcp_drop_proxy.py in front of 127.0.0.1:upstream_port.
class DropProxy {
 public:
  static absl::StatusOr<std::unique_ptr<DropProxy>> Start(
      const std::string& dir, int upstream_port, int drop_after, int drops) {
    std::unique_ptr<DropProxy> proxy(new DropProxy());
    proxy->state_ = dir + "/proxy.state";
    const std::string out = dir + "/proxy.out";
    const std::string err = dir + "/proxy.err";
    SubprocessOptions options;
    options.stdout_path = out;
    options.stderr_path = err;
    auto process = Subprocess::Start(
        {kPython, "-I", ProxyScript(), "--upstream-port",
         absl::StrCat(upstream_port), "--drop-after", absl::StrCat(drop_after),
         "--drops", absl::StrCat(drops), "--state", proxy->state_},
        options);
    if (!process.ok()) return process.status();
    proxy->process_ = std::move(process).value();
    const absl::Time deadline = absl::Now() + absl::Seconds(20);
    while (absl::Now() < deadline) {
      const std::string text = ReadFileOrEmpty(out);
      absl::string_view line = text;
      if (absl::ConsumePrefix(&line, "ready ") &&
          absl::ConsumeSuffix(&line, "\n") &&
          absl::SimpleAtoi(line, &proxy->port_)) {
        return proxy;
      }
      if (!proxy->process_->running()) {
        return absl::UnavailableError(
            absl::StrCat("tcp_drop_proxy.py exited: ", ReadFileOrEmpty(err)));
      }
      absl::SleepFor(absl::Milliseconds(10));
    }
    return absl::DeadlineExceededError("tcp_drop_proxy.py not ready");
  }

  std::string RepoUrl(absl::string_view name) const {
    return absl::StrCat("http://127.0.0.1:", port_, "/", name, ".git");
  }

  // The connections the proxy cut so far.
  int drops() const {
    // "connections <accepted> drops <cut>"
    std::vector<std::string> words = absl::StrSplit(
        absl::StripAsciiWhitespace(ReadFileOrEmpty(state_)), ' ');
    int cut = -1;
    if (words.size() == 4) (void)absl::SimpleAtoi(words[3], &cut);
    return cut;
  }

 private:
  DropProxy() = default;
  std::string state_;
  int port_ = 0;
  std::unique_ptr<Subprocess> process_;
};

class FetchFaultsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!fs::exists(kPython)) {
      if (::ciagent::testing::RunningUnderCi()) FAIL() << kPython << " missing";
      GTEST_SKIP() << kPython << " missing (fails under CI=true)";
    }
    ASSERT_OK_AND_ASSIGN(dir_, ::ciagent::testing::MakeTempDir(
                                   "ciagent-fetch-faults-"));
    CIAGENT_START_GIT_SERVER(started);
    server_ = std::move(started);
    ASSERT_OK_AND_ASSIGN(const std::string bare,
                         server_->CreateBareRepo("app"));
    absl::BitGen random;
    big_file_.resize(kBigFileBytes);
    for (char& c : big_file_) {
      c = static_cast<char>(absl::Uniform<int>(random, 0, 256));
    }
    ASSERT_OK_AND_ASSIGN(commit_,
                         CommitFiles(bare, "main",
                                     {{"Cargo.toml", kCargoToml},
                                      {"assets/blob.bin", big_file_}},
                                     "initial"));
  }
  void TearDown() override {
    proxy_.reset();
    server_.reset();
    if (!dir_.empty()) ::ciagent::testing::RemoveTree(dir_);
  }

  void StartProxy(int drops) {
    ASSERT_OK_AND_ASSIGN(proxy_, DropProxy::Start(dir_, server_->port(),
                                                  kDropAfterBytes, drops));
  }

  FetchOptions Options() const {
    FetchOptions options;
    options.cache_dir = dir_ + "/cache";
    options.max_attempts = 3;
    options.backoff = {.initial = absl::Milliseconds(50),
                       .max = absl::Milliseconds(200)};
    options.lock_timeout = absl::Seconds(30);
    return options;
  }

  std::string Dest(absl::string_view name) const {
    return absl::StrCat(dir_, "/", name);
  }

  void ExpectCheckedOut(const std::string& dest) {
    EXPECT_EQ(ReadFileOrEmpty(dest + "/assets/blob.bin"), big_file_);
    EXPECT_EQ(ReadFileOrEmpty(dest + "/Cargo.toml"), kCargoToml);
  }

  std::string dir_, commit_, big_file_;
  std::unique_ptr<::ciagent::testing::GitServer> server_;
  std::unique_ptr<DropProxy> proxy_;
};

TEST_F(FetchFaultsTest, RetriesConnectionsCutMidPackAndChecksOutTheCommit) {
  StartProxy(/*drops=*/2);

  ASSERT_OK_AND_ASSIGN(FetchResult result,
                       FetchCommit(proxy_->RepoUrl("app"), "main", commit_,
                                   Dest("src"), Options()));

  EXPECT_EQ(proxy_->drops(), 2);
  EXPECT_EQ(result.attempts, 3);
  EXPECT_EQ(result.commit, commit_);
  ExpectCheckedOut(Dest("src"));
}

TEST_F(FetchFaultsTest, CutOnEveryAttemptIsUnavailableAndLeavesTheMirrorUsable) {
  StartProxy(/*drops=*/3);

  absl::StatusOr<FetchResult> failed = FetchCommit(
      proxy_->RepoUrl("app"), "main", commit_, Dest("first"), Options());

  EXPECT_THAT(failed, StatusIs(absl::StatusCode::kUnavailable,
                               HasSubstr("after 3 attempts")));
  EXPECT_EQ(proxy_->drops(), 3);

  // The proxy has no cuts left: the same mirror, holding whatever the cut
  // transfers left behind, serves the next job without a re-clone.
  ASSERT_OK_AND_ASSIGN(FetchResult result,
                       FetchCommit(proxy_->RepoUrl("app"), "main", commit_,
                                   Dest("second"), Options()));
  EXPECT_EQ(result.attempts, 1);
  EXPECT_FALSE(result.mirror_recovered);
  EXPECT_EQ(result.commit, commit_);
  ExpectCheckedOut(Dest("second"));
}

}  // namespace
}  // namespace ciagent
