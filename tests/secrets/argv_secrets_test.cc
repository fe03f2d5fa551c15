// Secrets never reach a command line, a log or a status field.
//
// One job runs through the queue chain as an agent pod runs it: ci-consume
// claims it from a real Redis that wants a password and fetches it over
// HTTP from a real git server that wants a token; ci-build runs real cargo
// on it, builds its image with buildah and pushes it to a real registry with
// Basic auth. The three secrets (REDIS_PASSWORD, GIT_TOKEN, REGISTRY_TOKEN)
// reach the tools through *_FILE variables only. While each tool runs, a
// sampler walks /proc every 20 ms and reads the argv (/proc/<pid>/cmdline)
// of the tool and of every process below it (by PPid; ci-build is a child
// subreaper, so orphans stay below it). Afterwards no secret may appear in:
//   - any argv sampled,
//   - the tools' stdout and stderr (the JSON log lines),
//   - any entry of the job's log stream,
//   - any field or value of the job's status hash,
//   - job.json.
// A process that lives less than one sampling period can be missed; the
// test checks that the long-lived ones (cargo, rustc, buildah) were seen.
#include <dirent.h>
#include <sys/stat.h>

#include <algorithm>
#include <atomic>
#include <fstream>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/time/clock.h"
#include "ciagent/job/job.h"
#include "ciagent/queue/job_queue.h"
#include "ciagent/queue/redis_client.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "testing/buildah.h"
#include "testing/cargo_fixture.h"
#include "testing/git_repo.h"
#include "testing/git_server.h"
#include "testing/redis_server.h"
#include "testing/registry_server.h"
#include "testing/status_matchers.h"
#include "testing/subprocess.h"

namespace ciagent {
namespace {

using ::ciagent::testing::ReadFileOrEmpty;
using ::ciagent::testing::RegistryServerOptions;
using ::ciagent::testing::Subprocess;
using ::ciagent::testing::SubprocessOptions;
using ::testing::HasSubstr;
using ::testing::Not;

constexpr char kRedisPassword[] = "redis-pw-argv-7c1e94d2";
constexpr char kGitToken[] = "git-token-argv-3b8f05a6";
constexpr char kRegistryToken[] = "registry-token-argv-e52d7719";

struct NamedSecret {
  const char* name;
  const char* value;
};
constexpr NamedSecret kSecrets[] = {{"REDIS_PASSWORD", kRedisPassword},
                                    {"GIT_TOKEN", kGitToken},
                                    {"REGISTRY_TOKEN", kRegistryToken}};

// The names of the secrets `text` contains ("" when none).
std::string SecretsIn(absl::string_view text) {
  std::vector<std::string> found;
  for (const NamedSecret& secret : kSecrets) {
    if (absl::StrContains(text, secret.value)) found.push_back(secret.name);
  }
  return absl::StrJoin(found, ",");
}

std::string ReadProcFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream bytes;
  bytes << in.rdbuf();
  return bytes.str();
}

// The parent of `pid` from /proc/<pid>/stat, or -1 (gone, unreadable).
// The command name (field 2) may hold spaces and parentheses: the fields
// after it start past the last ')'.
pid_t ParentOf(pid_t pid) {
  const std::string stat = ReadProcFile(absl::StrCat("/proc/", pid, "/stat"));
  const size_t close = stat.rfind(')');
  if (close == std::string::npos) return -1;
  std::istringstream rest(stat.substr(close + 1));
  std::string state;
  pid_t ppid = -1;
  rest >> state >> ppid;
  return rest ? ppid : -1;
}

std::vector<pid_t> AllPids() {
  std::vector<pid_t> pids;
  DIR* proc = ::opendir("/proc");
  if (proc == nullptr) return pids;
  while (const dirent* entry = ::readdir(proc)) {
    int pid = 0;
    if (absl::SimpleAtoi(entry->d_name, &pid) && pid > 0) pids.push_back(pid);
  }
  ::closedir(proc);
  return pids;
}

// Samples, every `period`, the argv of `root` and of all its descendants
// until destroyed. Each distinct argv is kept once (NULs shown as spaces).
class ArgvSampler {
 public:
  ArgvSampler(pid_t root, absl::Duration period)
      : root_(root), period_(period), thread_([this] { Loop(); }) {}
  ~ArgvSampler() { Stop(); }

  void Stop() {
    stop_.store(true);
    if (thread_.joinable()) thread_.join();
  }

  std::set<std::string> argvs() const {
    std::lock_guard<std::mutex> lock(mu_);
    return argvs_;
  }
  int rounds() const { return rounds_.load(); }
  // Processes seen below the root (not counting it).
  size_t descendants() const {
    std::lock_guard<std::mutex> lock(mu_);
    return seen_.size();
  }

 private:
  void Loop() {
    while (!stop_.load()) {
      SampleOnce();
      rounds_.fetch_add(1);
      absl::SleepFor(period_);
    }
  }

  void SampleOnce() {
    std::map<pid_t, std::vector<pid_t>> children;
    for (pid_t pid : AllPids()) {
      const pid_t parent = ParentOf(pid);
      if (parent > 0) children[parent].push_back(pid);
    }
    // Breadth-first from the root, plus processes seen below it before
    // (one reparented between two reads of /proc stays in view).
    std::vector<pid_t> tree = {root_};
    {
      std::lock_guard<std::mutex> lock(mu_);
      tree.insert(tree.end(), seen_.begin(), seen_.end());
    }
    std::set<pid_t> visited;
    for (size_t i = 0; i < tree.size(); ++i) {
      if (!visited.insert(tree[i]).second) continue;
      for (pid_t child : children[tree[i]]) tree.push_back(child);
    }
    for (pid_t pid : visited) {
      std::string argv = ReadProcFile(absl::StrCat("/proc/", pid, "/cmdline"));
      if (argv.empty()) continue;  // gone, or a kernel thread
      std::replace(argv.begin(), argv.end(), '\0', ' ');
      std::lock_guard<std::mutex> lock(mu_);
      if (pid != root_) seen_.insert(pid);
      argvs_.insert(std::move(argv));
    }
  }

  const pid_t root_;
  const absl::Duration period_;
  std::atomic<bool> stop_{false};
  std::atomic<int> rounds_{0};
  mutable std::mutex mu_;
  std::set<pid_t> seen_;
  std::set<std::string> argvs_;
  std::thread thread_;
};

class ArgvSecretsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_OK_AND_ASSIGN(dir_, testing::MakeTempDir("argv-secrets"));
    ASSERT_OK_AND_ASSIGN(consume_, testing::PathFromEnv("CIAGENT_CI_CONSUME"));
    ASSERT_OK_AND_ASSIGN(build_, testing::PathFromEnv("CIAGENT_CI_BUILD"));
    // Kubernetes Secret volumes: one file per secret, mode 0600, with the
    // trailing newline such files often carry.
    ASSERT_EQ(::mkdir((dir_ + "/secrets").c_str(), 0700), 0);
    for (const NamedSecret& secret : kSecrets) {
      const std::string path = SecretFile(secret.name);
      std::ofstream(path) << secret.value << "\n";
      ASSERT_EQ(::chmod(path.c_str(), 0600), 0);
    }
  }
  void TearDown() override {
    if (!dir_.empty()) testing::RemoveTree(dir_);
  }

  std::string SecretFile(absl::string_view name) const {
    return absl::StrCat(dir_, "/secrets/", absl::AsciiStrToLower(name));
  }

  // Runs `argv` with the agent's environment plus `env`, sampling the argv
  // of its process tree meanwhile; returns its exit code (-1 on error).
  // Output goes to <dir>/<name>.out and <dir>/<name>.log.
  int RunSampled(const std::string& name, const std::vector<std::string>& argv,
                 std::map<std::string, std::string> env) {
    SubprocessOptions options;
    options.env = std::move(env);
    options.env["REDIS_PASSWORD_FILE"] = SecretFile("REDIS_PASSWORD");
    options.env["GIT_USERNAME"] = "ci";
    options.env["GIT_TOKEN_FILE"] = SecretFile("GIT_TOKEN");
    options.env["REGISTRY_USERNAME"] = "ci";
    options.env["REGISTRY_TOKEN_FILE"] = SecretFile("REGISTRY_TOKEN");
    // Only the *_FILE variants: the values are in no environment either.
    options.unset_env = {"REDIS_PASSWORD", "GIT_TOKEN",    "GITEA_TOKEN",
                         "GITEA_TOKEN_FILE", "REGISTRY_TOKEN",
                         "REGISTRY_PASSWORD", "CI_SECRET_ENV", "GITEA_URL",
                         "CI_CACHE_DIR",     "CIAGENT_LOG_LEVEL"};
    options.stdout_path = dir_ + "/" + name + ".out";
    options.stderr_path = dir_ + "/" + name + ".log";
    absl::StatusOr<std::unique_ptr<Subprocess>> process =
        Subprocess::Start(argv, options);
    EXPECT_OK(process.status());
    if (!process.ok()) return -1;
    ArgvSampler sampler((*process)->pid(), absl::Milliseconds(20));
    absl::StatusOr<int> code = (*process)->Wait(absl::Minutes(5));
    sampler.Stop();
    EXPECT_OK(code.status());
    EXPECT_GT(sampler.rounds(), 0);
    const std::set<std::string> seen = sampler.argvs();
    argvs_.insert(seen.begin(), seen.end());
    descendants_ += sampler.descendants();
    return code.value_or(-1);
  }

  bool SawArgvContaining(absl::string_view needle) const {
    return std::any_of(argvs_.begin(), argvs_.end(), [&](const std::string& a) {
      return absl::StrContains(a, needle);
    });
  }

  std::string dir_;
  std::string consume_;
  std::string build_;
  std::set<std::string> argvs_;
  size_t descendants_ = 0;
};

TEST_F(ArgvSecretsTest, QueueChainKeepsSecretsOutOfArgvLogsAndStatus) {
  CIAGENT_REQUIRE_CARGO(path);
  CIAGENT_REQUIRE_BUILDAH(buildah_path);
  CIAGENT_START_REDIS_WITH(redis, {.password = kRedisPassword});
  CIAGENT_START_GIT_SERVER(git, {.username = "ci", .password = kGitToken});
  CIAGENT_START_REGISTRY(registry, {.auth = RegistryServerOptions::Auth::kBasic,
                                    .password = kRegistryToken});

  // The producer: the job, on a stream behind the password.
  ASSERT_OK_AND_ASSIGN(std::string bare, git->CreateBareRepo("acme/app"));
  ASSERT_OK_AND_ASSIGN(auto files, testing::FixtureFiles("with_dockerfile"));
  ASSERT_OK_AND_ASSIGN(std::string commit,
                       testing::CommitFiles(bare, "main", files, "import"));
  const Job job{.job_id = "argv-secrets",
                .repo = git->RepoUrl("acme/app"),
                .branch = "main",
                .commit = commit,
                .timeout = absl::Minutes(5),
                .steps = {"build", "test", "image"}};
  ASSERT_OK_AND_ASSIGN(RedisOptions redis_options,
                       RedisOptionsFromUrl(redis->url()));
  redis_options.password = kRedisPassword;
  QueueOptions queue_options{.consumer = "producer", .create_group = true};
  JobQueue producer(redis_options, queue_options);
  ASSERT_OK(producer.Enqueue(job).status());

  // The redis URL carries no password: the password file does.
  const std::map<std::string, std::string> env = {
      {"PATH", path},
      {"REDIS_URL", redis->url()},
      {"POD_NAME", "agent-argv"},
      {"CI_WORKDIR", dir_ + "/workdir"},
      {"CI_TARGET_DIR", dir_ + "/target"},
      {"CI_CARGO_HOME", dir_ + "/cargo-home"},
      {"CI_IMAGE_BUILDER", "buildah"},
      {"REGISTRY_URL", registry->url()},
  };
  const int consumed =
      RunSampled("ci-consume", {consume_, "--wait=20", "--lease=60"}, env);
  ASSERT_EQ(consumed, 0) << ReadFileOrEmpty(dir_ + "/ci-consume.log");
  const std::string job_file = dir_ + "/workdir/job.json";
  ASSERT_EQ(ReadFileOrEmpty(dir_ + "/ci-consume.out"), job_file + "\n");
  const int built = RunSampled("ci-build", {build_, "--job", job_file}, env);
  EXPECT_EQ(built, 0) << ReadFileOrEmpty(dir_ + "/ci-build.log");

  // The chain used all three secrets: it read the job from the Redis behind
  // the password, fetched with the token and pushed with the other.
  RedisClient client(redis_options);
  ASSERT_OK_AND_ASSIGN(RedisReply hash,
                       client.Command({"HGETALL", queue_options.StatusKey(
                                                      job.job_id)}));
  std::map<std::string, std::string> status;
  for (size_t i = 0; i + 1 < hash.elements.size(); i += 2) {
    status[hash.elements[i].str] = hash.elements[i + 1].str;
  }
  EXPECT_EQ(status["status"], "success") << status["reason"];
  EXPECT_EQ(status["image"],
            absl::StrCat(registry->host(), "/acme/app:", commit));
  EXPECT_NE(status["image_digest"], "");
  EXPECT_NE(registry->BlobPath(status["image_digest"]), "");

  // The sampler saw the processes that run longest, so it was looking.
  EXPECT_TRUE(SawArgvContaining(consume_)) << absl::StrJoin(argvs_, "\n");
  EXPECT_TRUE(SawArgvContaining(build_)) << absl::StrJoin(argvs_, "\n");
  EXPECT_TRUE(SawArgvContaining("cargo")) << absl::StrJoin(argvs_, "\n");
  EXPECT_TRUE(SawArgvContaining("rustc")) << absl::StrJoin(argvs_, "\n");
  EXPECT_TRUE(SawArgvContaining("buildah")) << absl::StrJoin(argvs_, "\n");
  EXPECT_GT(descendants_, 3u);

  // No secret in any argv.
  for (const std::string& argv : argvs_) {
    EXPECT_EQ(SecretsIn(argv), "") << "argv: " << argv;
  }
  // Nor in the tools' output and logs, nor in job.json.
  for (const char* file :
       {"ci-consume.out", "ci-consume.log", "ci-build.out", "ci-build.log",
        "workdir/job.json"}) {
    EXPECT_EQ(SecretsIn(ReadFileOrEmpty(dir_ + "/" + file)), "") << file;
  }
  EXPECT_NE(ReadFileOrEmpty(dir_ + "/ci-build.log"), "");
  // Nor in the job's log stream (every field of every entry).
  ASSERT_OK_AND_ASSIGN(RedisReply log,
                       client.Command({"XRANGE",
                                       queue_options.LogKey(job.job_id), "-",
                                       "+"}));
  EXPECT_GT(log.elements.size(), 10u);
  std::set<std::string> steps;
  for (const RedisReply& entry : log.elements) {
    const auto& kv = entry.elements[1].elements;
    for (size_t i = 0; i + 1 < kv.size(); i += 2) {
      if (kv[i].str == "step") steps.insert(kv[i + 1].str);
      EXPECT_EQ(SecretsIn(kv[i].str + "=" + kv[i + 1].str), "")
          << "log entry " << entry.elements[0].str << ": " << kv[i].str
          << "=" << kv[i + 1].str;
    }
  }
  EXPECT_THAT(steps, ::testing::IsSupersetOf({"fetch", "build", "image"}));
  // Nor in the status hash.
  EXPECT_GT(status.size(), 5u);
  for (const auto& [field, value] : status) {
    EXPECT_EQ(SecretsIn(field + "=" + value), "") << "status field " << field;
  }
}

}  // namespace
}  // namespace ciagent
