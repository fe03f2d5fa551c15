// The agent as packaging/k8s/restricted runs it (Kubernetes' `restricted`
// Pod Security standard): the container entrypoint as uid 65532, no
// capabilities, no new privileges, and the root filesystem read-only but for
// its volumes. A real job goes through it end to end -- claimed from Redis,
// fetched from a git server, built by cargo, its image assembled on a base
// and pushed to a registry -- and its files on the volumes belong to the
// non-root user.
//
// The pod is emulated with util-linux: `unshare --mount` gives the agent a
// mount namespace of its own, where the test's directory is bound onto
// itself (a volume: writable) and / is then remounted read-only; `setpriv`
// drops to uid/gid 65532 with an empty capability set and no_new_privs. The
// Rust toolchain, under root's home here, is bound into the volume read-only
// (an image would have it in a readable place). Needs root to set this up.
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <map>
#include <string>

#include "absl/strings/str_cat.h"
#include "ciagent/job/job.h"
#include "ciagent/queue/job_queue.h"
#include "ciagent/queue/redis_client.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "testing/agent_pod.h"
#include "testing/base_image.h"
#include "testing/cargo_fixture.h"
#include "testing/git_repo.h"
#include "testing/git_server.h"
#include "testing/oci_layout.h"
#include "testing/redis_server.h"
#include "testing/registry_server.h"
#include "testing/status_matchers.h"
#include "testing/subprocess.h"

namespace ciagent {
namespace {

using ::ciagent::testing::InspectDigest;
using ::ciagent::testing::IsOkAndHolds;
using ::ciagent::testing::RegistryServerOptions;
using ::ciagent::testing::Subprocess;
using ::testing::HasSubstr;

constexpr char kGitToken[] = "git-token-restricted-1a2b";
constexpr char kRegistryToken[] = "registry-token-restricted-3c4d";
constexpr uid_t kAgentUid = 65532;

// Run by `unshare --mount` as root: $1 the entrypoint, $2 the pod's
// directory, $3 and $4 rustup's and cargo's homes.
constexpr char kPodScript[] = R"(set -eu
dir=$2
mount --bind "$dir" "$dir"
mkdir -p "$dir/toolchain/rustup" "$dir/toolchain/cargo"
mount --bind "$3" "$dir/toolchain/rustup"
mount -o remount,bind,ro "$dir/toolchain/rustup"
mount --bind "$4" "$dir/toolchain/cargo"
mount -o remount,bind,ro "$dir/toolchain/cargo"
mount -o remount,bind,ro /
if touch /.ciagent-probe 2>/dev/null; then
  rm -f /.ciagent-probe
  echo "the root filesystem is still writable" >&2
  exit 97
fi
exec setpriv --reuid 65532 --regid 65532 --clear-groups --no-new-privs \
  --inh-caps=-all --bounding-set=-all "$1"
)";

class RestrictedAgentTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_OK_AND_ASSIGN(dir_, testing::MakeTempDir("restricted-agent"));
    ASSERT_OK_AND_ASSIGN(entrypoint_,
                         testing::PathFromEnv("CIAGENT_ENTRYPOINT"));
  }
  void TearDown() override {
    if (!dir_.empty()) testing::RemoveTree(dir_);
  }

  std::string dir_;
  std::string entrypoint_;
};

TEST_F(RestrictedAgentTest, NonRootAgentOnAReadOnlyRootAssemblesAndPushes) {
  CIAGENT_REQUIRE_CARGO(path);
  if (geteuid() != 0 || access("/usr/bin/setpriv", X_OK) != 0 ||
      access("/usr/bin/unshare", X_OK) != 0) {
    const char* why = "the emulated pod needs root, setpriv and unshare";
    if (testing::RunningUnderCi()) FAIL() << why << " (required under CI=true)";
    GTEST_SKIP() << why;
  }
  CIAGENT_START_REDIS(redis);
  CIAGENT_START_GIT_SERVER(git, {.username = "ci", .password = kGitToken});
  CIAGENT_START_REGISTRY(registry, {.auth = RegistryServerOptions::Auth::kBasic,
                                    .password = kRegistryToken});
  const std::string base_dir = dir_ + "/base";
  std::filesystem::create_directories(base_dir);
  absl::StatusOr<testing::BaseImage> base = testing::PushBaseImage(
      {.registry = registry->host(),
       .username = "ci",
       .password = kRegistryToken,
       .work_dir = base_dir});
  if (base.status().code() == absl::StatusCode::kNotFound &&
      !testing::RunningUnderCi()) {
    GTEST_SKIP() << base.status().message();
  }
  ASSERT_OK(base.status());

  // The passing crate, configured for assembly on that base.
  ASSERT_OK_AND_ASSIGN(std::string bare, git->CreateBareRepo("acme/passing"));
  ASSERT_OK_AND_ASSIGN(auto files, testing::FixtureFiles("passing"));
  absl::StrAppend(&files["Cargo.toml"],
                  "\n[package.metadata.ciagent]\n"
                  "steps = [\"build\", \"image\"]\n"
                  "[package.metadata.ciagent.image]\n"
                  "base = \"", base->reference, "\"\n");
  ASSERT_OK_AND_ASSIGN(std::string commit,
                       testing::CommitFiles(bare, "main", files, "passing"));
  const Job job{.job_id = "restricted-1",
                .repo = git->RepoUrl("acme/passing"),
                .branch = "main",
                .commit = commit,
                .timeout = absl::Minutes(5)};
  ASSERT_OK_AND_ASSIGN(RedisOptions redis_options,
                       RedisOptionsFromUrl(redis->url()));
  QueueOptions queue_options{.consumer = "producer", .create_group = true};
  JobQueue producer(redis_options, queue_options);
  ASSERT_OK(producer.Enqueue(job).status());

  // The pod's volumes belong to the agent's user (fsGroup in the manifest).
  const std::string pod_dir = dir_ + "/pod";
  for (const char* sub : {"", "/agent", "/cache", "/home", "/tmp"}) {
    std::filesystem::create_directories(pod_dir + sub);
    ASSERT_EQ(chown((pod_dir + sub).c_str(), kAgentUid, kAgentUid), 0);
  }
  ASSERT_EQ(chmod(dir_.c_str(), 0755), 0);
  const std::string cargo_bin = path.substr(0, path.find(':'));
  const std::string home = std::getenv("HOME") ? std::getenv("HOME") : "/root";
  testing::AgentPodOptions pod{
      .name = "agent",
      .dir = pod_dir,
      .redis_url = redis->url(),
      .path = absl::StrCat(pod_dir, "/toolchain/cargo/bin:/usr/bin:/bin"),
      .env = {{"GIT_USERNAME", "ci"},
              {"GIT_TOKEN", kGitToken},
              {"CI_IMAGE_BUILDER", "assembly"},
              {"REGISTRY_URL", registry->url()},
              {"REGISTRY_USERNAME", "ci"},
              {"REGISTRY_TOKEN", kRegistryToken},
              {"RUSTUP_HOME", pod_dir + "/toolchain/rustup"},
              {"HOME", pod_dir + "/home"},
              {"TMPDIR", pod_dir + "/tmp"}}};
  testing::SubprocessOptions process = testing::AgentPodProcessOptions(pod);
  process.unset_env.push_back("CARGO_HOME");
  ASSERT_OK_AND_ASSIGN(
      std::unique_ptr<Subprocess> agent,
      Subprocess::Start({"/usr/bin/unshare", "--mount", "--propagation",
                         "private", "/bin/sh", "-c", kPodScript, "pod",
                         entrypoint_, pod_dir, home + "/.rustup",
                         home + "/.cargo"},
                        process));
  EXPECT_THAT(agent->Wait(absl::Minutes(5)), IsOkAndHolds(0))
      << testing::ReadFileOrEmpty(pod_dir + "/agent.log");

  RedisClient client(redis_options);
  auto status = [&](const std::string& field) {
    absl::StatusOr<RedisReply> reply =
        client.Command({"HGET", queue_options.StatusKey(job.job_id), field});
    return reply.ok() ? reply->str : std::string();
  };
  EXPECT_EQ(status("status"), "success") << status("reason");
  const std::string image = status("image");
  EXPECT_EQ(image, absl::StrCat(registry->host(), "/acme/passing:", commit));
  EXPECT_THAT(InspectDigest(image, {.username = "ci", .password = kRegistryToken}),
              IsOkAndHolds(status("image_digest")));

  // What the agent wrote on its volumes is the non-root user's.
  int files_checked = 0;
  for (const auto& entry :
       std::filesystem::recursive_directory_iterator(pod_dir + "/cache")) {
    if (!entry.is_regular_file()) continue;
    struct stat st {};
    ASSERT_EQ(lstat(entry.path().c_str(), &st), 0);
    EXPECT_EQ(st.st_uid, kAgentUid) << entry.path();
    if (++files_checked == 50) break;
  }
  EXPECT_GT(files_checked, 0);
  EXPECT_THAT(testing::ReadFileOrEmpty(pod_dir + "/agent.log"),
              ::testing::Not(HasSubstr(kRegistryToken)));
}

}  // namespace
}  // namespace ciagent
