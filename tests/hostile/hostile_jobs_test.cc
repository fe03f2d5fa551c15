// Hostile job documents end to end: each is put on a real redis-server's job
// stream, the real ci-consume binary (fetching enabled) takes them, and each
// must be dead-lettered with a reason that names the offending field, while
// nothing outside the agent's work directory is created, changed or
// removed. The parsing rules themselves are covered value by value in
// tests/job/job_test.cc; this is the proof that the agent as deployed acts
// on them before touching the disk, the network or a shell.
//
// Layout of the sentinel tree (the test's temporary directory):
//   <tmp>/jail/work     the agent's --workdir (the only place it may write)
//   <tmp>/jail/decoy    a file a traversal could hit
//   <tmp>/logs          the tool's stdout and stderr
// A job_id such as "../escape" would land in <tmp>/jail/escape, and
// "../../escape" in <tmp>/escape: the whole tree is snapshotted before and
// after the run.
#include <sys/stat.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "ciagent/job/job.h"
#include "ciagent/queue/job_queue.h"
#include "ciagent/queue/redis_client.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "testing/redis_server.h"
#include "testing/status_matchers.h"
#include "testing/subprocess.h"

namespace ciagent {
namespace {

namespace fs = std::filesystem;
using ::ciagent::testing::MakeTempDir;
using ::ciagent::testing::PathFromEnv;
using ::ciagent::testing::ReadFileOrEmpty;
using ::ciagent::testing::RemoveTree;
using ::ciagent::testing::Subprocess;
using ::ciagent::testing::SubprocessOptions;
using ::testing::HasSubstr;
using ::testing::Not;
using ::testing::StartsWith;

// `ci-consume --help`: 3 = no job claimed.
constexpr int kNothingToDo = 3;
constexpr char kStream[] = "ci-jobs";
constexpr char kToken[] = "tok-4e5f6a7b8c9d";

// One hostile document and what its dead-letter reason must say.
struct HostileJob {
  std::string name;
  std::string json;
  // The reason starts with "malformed job: " and then this.
  std::string reason_prefix;
  // A job_id the agent can read out of the document to record the failure
  // under ci:job:{id}; empty when the id itself is the hostile part.
  std::string status_job_id;
};

Job BaseJob(const std::string& job_id) {
  return Job{.job_id = job_id,
             .repo = "https://git.example.com/acme/app.git",
             .branch = "main",
             .commit = std::string(40, 'a')};
}

// Paths, relative to `root`, of everything under it (not following
// symlinks), each with its type, size, mode and modification time.
std::map<std::string, std::string> Snapshot(const std::string& root,
                                            const std::vector<std::string>& skip) {
  std::map<std::string, std::string> tree;
  std::error_code error;
  for (auto it = fs::recursive_directory_iterator(root, error);
       it != fs::recursive_directory_iterator(); it.increment(error)) {
    if (error) break;
    const std::string relative = fs::relative(it->path(), root).string();
    bool skipped = false;
    for (const std::string& prefix : skip) {
      if (relative == prefix || absl::StartsWith(relative, prefix + "/")) {
        skipped = true;
      }
    }
    if (skipped) {
      if (it->is_directory()) it.disable_recursion_pending();
      continue;
    }
    struct stat st {};
    ::lstat(it->path().c_str(), &st);
    tree[relative] = absl::StrCat("mode=", st.st_mode, " size=", st.st_size,
                                  " mtime=", st.st_mtim.tv_sec, ".",
                                  st.st_mtim.tv_nsec);
  }
  return tree;
}

class HostileJobsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_OK_AND_ASSIGN(tool_, PathFromEnv("CIAGENT_CI_CONSUME"));
    ASSERT_OK_AND_ASSIGN(dir_, MakeTempDir("ciagent-hostile-"));
    workdir_ = dir_ + "/jail/work";
    // The work dir exists beforehand, as an agent's volume does: creating
    // it would change <tmp>/jail, and that is what the snapshot watches.
    fs::create_directories(workdir_);
    fs::create_directories(dir_ + "/logs");
    std::ofstream(dir_ + "/jail/decoy") << "keep me\n";
    // Outside the sentinel tree: where "../../../<tmp name>-escape" would go.
    outside_ = (fs::path(dir_).parent_path() /
                (fs::path(dir_).filename().string() + "-escape"))
                   .string();
  }
  void TearDown() override {
    if (!outside_.empty()) RemoveTree(outside_);
    if (!dir_.empty()) RemoveTree(dir_);
  }

  // The documents, built from a valid job with one field made hostile.
  std::vector<HostileJob> HostileJobs() const {
    std::vector<HostileJob> jobs;
    const auto add = [&](std::string name, const Job& job,
                         std::string reason_prefix, std::string status_id) {
      jobs.push_back({std::move(name), JobToJson(job), std::move(reason_prefix),
                      std::move(status_id)});
    };
    const auto with_id = [](const std::string& id) { return BaseJob(id); };
    const auto with = [](const std::string& id, auto change) {
      Job job = BaseJob(id);
      change(job);
      return job;
    };

    // Path traversal in job_id, relative and absolute.
    add("job_id ../escape", with_id("../escape"), "job_id: ", "");
    add("job_id ../../escape", with_id("../../escape"), "job_id: ", "");
    add("job_id ../../../<tmp>-escape",
        with_id("../../../" + fs::path(outside_).filename().string()),
        "job_id: ", "");
    add("job_id absolute", with_id(dir_ + "/abs-escape"), "job_id: ", "");
    add("job_id ..", with_id(".."), "job_id: ", "");
    add("job_id with NUL", with_id(std::string("ok\0../x", 7)), "job_id: ", "");
    add("job_id huge", with_id(std::string(100 * 1024, 'a')), "job: document is ",
        "");
    add("job_id 129 bytes", with_id(std::string(129, 'a')), "job_id: ", "");

    // Shell metacharacters and option injection in branch.
    add("branch ; touch",
        with("h-branch-1",
             [&](Job& j) { j.branch = "main; touch " + dir_ + "/pwned"; }),
        "branch: ", "h-branch-1");
    add("branch $(touch)",
        with("h-branch-2",
             [&](Job& j) { j.branch = "$(touch " + dir_ + "/pwned)"; }),
        "branch: ", "h-branch-2");
    add("branch backticks",
        with("h-branch-3",
             [&](Job& j) { j.branch = "`touch " + dir_ + "/pwned`"; }),
        "branch: ", "h-branch-3");
    add("branch --upload-pack",
        with("h-branch-4",
             [&](Job& j) {
               j.branch = "--upload-pack=touch${IFS}" + dir_ + "/pwned";
             }),
        "branch: ", "h-branch-4");
    add("branch traversal",
        with("h-branch-5", [](Job& j) { j.branch = "../../escape"; }),
        "branch: ", "h-branch-5");
    add("branch newline",
        with("h-branch-6", [](Job& j) { j.branch = "main\nrm -rf /"; }),
        "branch: ", "h-branch-6");

    // Credentials and schemes in repo.
    add("repo with credentials",
        with("h-repo-1",
             [](Job& j) {
               j.repo = absl::StrCat("https://ci:", kToken,
                                     "@git.example.com/acme/app.git");
             }),
        "repo: ", "h-repo-1");
    add("repo with user only",
        with("h-repo-2",
             [](Job& j) { j.repo = "http://admin@127.0.0.1:1/app.git"; }),
        "repo: ", "h-repo-2");
    add("repo file://",
        with("h-repo-3",
             [&](Job& j) { j.repo = "file://" + dir_ + "/jail/decoy"; }),
        "repo: ", "h-repo-3");
    add("repo ext:: transport",
        with("h-repo-4",
             [&](Job& j) {
               j.repo = "ext::sh -c touch% " + dir_ + "/pwned";
             }),
        "repo: ", "h-repo-4");
    add("repo ssh://",
        with("h-repo-5", [](Job& j) { j.repo = "ssh://git@example.com/app"; }),
        "repo: ", "h-repo-5");
    add("repo scp-like",
        with("h-repo-6", [](Job& j) { j.repo = "git@example.com:acme/app.git"; }),
        "repo: ", "h-repo-6");
    add("repo local path",
        with("h-repo-7", [&](Job& j) { j.repo = dir_ + "/jail"; }), "repo: ",
        "h-repo-7");
    add("repo huge",
        with("h-repo-8",
             [](Job& j) {
               j.repo = "https://example.com/" + std::string(20000, 'x');
             }),
        "repo: ", "h-repo-8");

    // Commit, env and image.
    add("commit not hex",
        with("h-commit-1", [](Job& j) { j.commit = "HEAD~1; rm -rf ~"; }),
        "commit: ", "h-commit-1");
    add("env LD_PRELOAD",
        with("h-env-1",
             [](Job& j) { j.env = {{"LD_PRELOAD", "/tmp/evil.so"}}; }),
        "env.LD_PRELOAD: ", "h-env-1");
    add("env GIT_SSH_COMMAND",
        with("h-env-2",
             [](Job& j) { j.env = {{"GIT_SSH_COMMAND", "touch /pwned"}}; }),
        "env.GIT_SSH_COMMAND: ", "h-env-2");
    add("env huge value",
        with("h-env-3",
             [](Job& j) { j.env = {{"BIG", std::string(70 * 1024, 'v')}}; }),
        "job: document is ", "h-env-3");
    add("image name traversal",
        with("h-image-1",
             [](Job& j) { j.image = ImageSpec{.name = "../../etc", .tag = "x"}; }),
        "image.name: ", "h-image-1");
    add("steps shell",
        with("h-steps-1", [](Job& j) { j.steps = {"test; rm -rf /"}; }),
        "steps[0]: ", "h-steps-1");
    return jobs;
  }

  std::string tool_;
  std::string dir_;
  std::string workdir_;
  std::string outside_;
};

std::map<std::string, std::string> DeadEntryFields(const RedisReply& entry) {
  // [id, [field, value, ...]]
  std::map<std::string, std::string> fields;
  const RedisReply& list = entry.elements[1];
  for (size_t i = 0; i + 1 < list.elements.size(); i += 2) {
    fields[list.elements[i].str] = list.elements[i + 1].str;
  }
  return fields;
}

TEST_F(HostileJobsTest, DeadLettersEachWithItsReasonAndTouchesNothingOutside) {
  CIAGENT_START_REDIS(server);
  ASSERT_OK_AND_ASSIGN(RedisOptions redis_options,
                       RedisOptionsFromUrl(server->url()));
  QueueOptions producer;
  producer.consumer = "test-producer";
  JobQueue queue(redis_options, producer);
  ASSERT_OK(queue.EnsureGroup());

  const std::vector<HostileJob> jobs = HostileJobs();
  for (const HostileJob& job : jobs) {
    ASSERT_OK(queue.redis().Command({"XADD", kStream, "*", "job", job.json}))
        << job.name;
  }
  const std::vector<std::string> skip = {"jail/work", "logs"};
  const std::map<std::string, std::string> before = Snapshot(dir_, skip);
  ASSERT_FALSE(before.empty());

  // One run takes the documents one after another, dead-letters each and
  // ends with nothing to do; a bounded loop in case it stops after one.
  SubprocessOptions options;
  options.unset_env = {"REDIS_URL",    "REDIS_PASSWORD", "REDIS_PASSWORD_FILE",
                       "POD_NAME",     "CI_WORKDIR",     "CI_CACHE_DIR",
                       "CI_CA_FILE",   "GIT_USERNAME",   "GIT_TOKEN",
                       "GIT_TOKEN_FILE", "CIAGENT_LOG_LEVEL"};
  options.stdout_path = dir_ + "/logs/stdout";
  options.stderr_path = dir_ + "/logs/stderr";
  int exit_code = -1;
  std::string err;
  for (size_t run = 0; run <= jobs.size() && exit_code != kNothingToDo; ++run) {
    ASSERT_OK_AND_ASSIGN(
        std::unique_ptr<Subprocess> process,
        Subprocess::Start({tool_, "--redis=" + server->url(),
                           "--workdir=" + workdir_, "--consumer=agent-a",
                           "--wait=1", "--cache-dir=" + workdir_ + "/cache"},
                          options));
    ASSERT_OK_AND_ASSIGN(exit_code, process->Wait(absl::Seconds(120)));
    err += ReadFileOrEmpty(options.stderr_path);
    EXPECT_EQ(ReadFileOrEmpty(options.stdout_path), "") << "run " << run;
  }
  EXPECT_EQ(exit_code, kNothingToDo) << err;

  // Every document is dead-lettered with its reason: verbatim when it is
  // within the parser's limit, else (judged inside Redis, never sent to the
  // agent) its first 1 KiB, marked dead_truncated.
  ASSERT_OK_AND_ASSIGN(RedisReply dead,
                       queue.redis().Command({"XRANGE", "ci-jobs:dead", "-", "+"}));
  std::map<std::string, std::map<std::string, std::string>> dead_by_json;
  for (const RedisReply& entry : dead.elements) {
    std::map<std::string, std::string> fields = DeadEntryFields(entry);
    dead_by_json[fields["job"]] = fields;
  }
  EXPECT_EQ(dead.elements.size(), jobs.size());
  const size_t kParserLimit = JobParseOptions{}.max_json_bytes;
  constexpr size_t kKeptBytes = 1024;
  for (const HostileJob& job : jobs) {
    SCOPED_TRACE(job.name);
    const bool over_limit = job.json.size() > kParserLimit;
    auto found = dead_by_json.find(
        over_limit ? job.json.substr(0, kKeptBytes) : job.json);
    ASSERT_NE(found, dead_by_json.end()) << "not dead-lettered";
    EXPECT_EQ(found->second["dead_truncated"], over_limit ? "1" : "");
    const std::string& reason = found->second["dead_reason"];
    EXPECT_THAT(reason, StartsWith("malformed job: " + job.reason_prefix));
    // Bounded however big the offending value, and never the token.
    EXPECT_LE(reason.size(), 512u) << reason;
    EXPECT_THAT(reason, Not(HasSubstr(kToken)));
    if (!job.status_job_id.empty()) {
      const std::string key = absl::StrCat("ci:job:{", job.status_job_id, "}");
      ASSERT_OK_AND_ASSIGN(RedisReply status,
                           queue.redis().Command({"HGET", key, "status"}));
      EXPECT_EQ(status.str, "error") << key;
      ASSERT_OK_AND_ASSIGN(RedisReply recorded,
                           queue.redis().Command({"HGET", key, "reason"}));
      EXPECT_EQ(recorded.str, reason) << key;
    }
  }
  ASSERT_OK_AND_ASSIGN(RedisReply pending,
                       queue.redis().Command({"XPENDING", kStream, "ci-workers"}));
  ASSERT_TRUE(pending.is_array() && !pending.elements.empty());
  EXPECT_EQ(pending.elements[0].integer, 0);
  EXPECT_THAT(err, Not(HasSubstr(kToken)));

  // Nothing outside the work directory was created, changed or removed.
  EXPECT_EQ(Snapshot(dir_, skip), before);
  EXPECT_FALSE(fs::exists(dir_ + "/escape"));
  EXPECT_FALSE(fs::exists(dir_ + "/jail/escape"));
  EXPECT_FALSE(fs::exists(dir_ + "/abs-escape"));
  EXPECT_FALSE(fs::exists(dir_ + "/pwned"));
  EXPECT_FALSE(fs::exists(outside_));
  EXPECT_EQ(ReadFileOrEmpty(dir_ + "/jail/decoy"), "keep me\n");
  // And inside it, no job was taken: no job.json, no checkout.
  EXPECT_FALSE(fs::exists(workdir_ + "/job.json"));
  EXPECT_FALSE(fs::exists(workdir_ + "/src"));
  if (fs::exists(workdir_)) {
    for (const auto& entry : fs::recursive_directory_iterator(workdir_)) {
      ADD_FAILURE() << "left in the work dir: " << entry.path();
    }
  }
}

}  // namespace
}  // namespace ciagent
