// Private dependencies without servers: origins, what the environment says,
// and what DependencyAccess lays out for the steps. The credential helper it
// writes is run here by /bin/sh, as git runs it; the integration test
// (private_dependencies_test.cc) has git and cargo use it against real
// servers.
#include "ciagent/pipeline/private_dependencies.h"

#include <stdlib.h>
#include <sys/stat.h>

#include <filesystem>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "ciagent/base/process_runner.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "testing/status_matchers.h"
#include "testing/redis_server.h"
#include "testing/subprocess.h"

namespace ciagent {
namespace {

using ::ciagent::testing::IsOkAndHolds;
using ::ciagent::testing::StatusIs;
using ::testing::Contains;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::Pair;

TEST(OriginOfTest, KeepsSchemeHostAndPortOnly) {
  EXPECT_THAT(OriginOf("https://Gitea.Example/org/app.git"),
              IsOkAndHolds("https://gitea.example"));
  EXPECT_THAT(OriginOf("http://10.0.0.5:3000/org/app.git"),
              IsOkAndHolds("http://10.0.0.5:3000"));
  EXPECT_THAT(OriginOf("https://user:secret@gitea.example:443/x"),
              IsOkAndHolds("https://gitea.example"));
  EXPECT_THAT(OriginOf("gitea.example:3000"),
              IsOkAndHolds("https://gitea.example:3000"));
  EXPECT_THAT(OriginOf("https://[fd00::1]:8443/x"),
              IsOkAndHolds("https://[fd00::1]:8443"));
}

TEST(OriginOfTest, RefusesOtherSchemesAndMissingHosts) {
  EXPECT_THAT(OriginOf("ssh://git@gitea.example/org/app.git"),
              StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(OriginOf("https:///path"),
              StatusIs(absl::StatusCode::kInvalidArgument));
}

// Sets variables for one test and restores them after.
class ScopedEnv {
 public:
  explicit ScopedEnv(
      std::initializer_list<std::pair<const char*, const char*>> vars) {
    for (const char* name :
         {"GIT_USERNAME", "GIT_TOKEN", "GIT_TOKEN_FILE", "GITEA_TOKEN",
          "GITEA_TOKEN_FILE", "CI_GIT_CREDENTIAL_HOSTS", "CI_CARGO_REGISTRIES",
          "CI_CARGO_REGISTRY_GITEA_TOKEN", "CI_CARGO_REGISTRY_MY_REG_TOKEN"}) {
      if (const char* old = getenv(name); old != nullptr) saved_[name] = old;
      unsetenv(name);
    }
    for (const auto& [name, value] : vars) {
      setenv(name, value, 1);
      vars_.emplace_back(name);
    }
  }
  ~ScopedEnv() {
    for (const std::string& name : vars_) unsetenv(name.c_str());
    for (const auto& [name, value] : saved_) {
      setenv(name.c_str(), value.c_str(), 1);
    }
  }

 private:
  std::vector<std::string> vars_;
  std::map<std::string, std::string> saved_;
};

TEST(PrivateDependenciesFromEnvTest, DefaultsToTheJobRepositorysOrigin) {
  ScopedEnv env({{"GIT_TOKEN", "tok"}});
  ASSERT_OK_AND_ASSIGN(
      PrivateDependencies dependencies,
      PrivateDependenciesFromEnv("https://gitea.example/org/app.git"));
  EXPECT_EQ(dependencies.git.token, "tok");
  EXPECT_THAT(dependencies.git_origins, ElementsAre("https://gitea.example"));
  EXPECT_FALSE(dependencies.empty());
}

TEST(PrivateDependenciesFromEnvTest, OperatorListReplacesTheDefaultOrNone) {
  {
    ScopedEnv env({{"GIT_TOKEN", "tok"},
                   {"CI_GIT_CREDENTIAL_HOSTS",
                    "gitea.example, http://10.0.0.5:3000,gitea.example"}});
    ASSERT_OK_AND_ASSIGN(PrivateDependencies dependencies,
                         PrivateDependenciesFromEnv("https://other/x.git"));
    EXPECT_THAT(dependencies.git_origins,
                ElementsAre("https://gitea.example", "http://10.0.0.5:3000"));
  }
  {
    ScopedEnv env({{"GIT_TOKEN", "tok"}, {"CI_GIT_CREDENTIAL_HOSTS", "none"}});
    ASSERT_OK_AND_ASSIGN(PrivateDependencies dependencies,
                         PrivateDependenciesFromEnv("https://other/x.git"));
    EXPECT_TRUE(dependencies.git_origins.empty());
    EXPECT_TRUE(dependencies.empty());
  }
  {
    ScopedEnv env({{"CI_GIT_CREDENTIAL_HOSTS", "ssh://gitea.example"}});
    EXPECT_THAT(PrivateDependenciesFromEnv(""),
                StatusIs(absl::StatusCode::kInvalidArgument,
                         HasSubstr("CI_GIT_CREDENTIAL_HOSTS")));
  }
}

TEST(PrivateDependenciesFromEnvTest, RegistriesTakeTheirTokensFromTheirOwnVariables) {
  ScopedEnv env({{"CI_CARGO_REGISTRIES",
                  "gitea=sparse+https://gitea.example/api/packages/org/cargo/"
                  ", my-reg"},
                 {"CI_CARGO_REGISTRY_GITEA_TOKEN", "Bearer one"},
                 {"CI_CARGO_REGISTRY_MY_REG_TOKEN", "two"}});
  ASSERT_OK_AND_ASSIGN(PrivateDependencies dependencies,
                       PrivateDependenciesFromEnv(""));
  ASSERT_EQ(dependencies.registries.size(), 2u);
  EXPECT_EQ(dependencies.registries[0].name, "gitea");
  EXPECT_EQ(dependencies.registries[0].index,
            "sparse+https://gitea.example/api/packages/org/cargo/");
  EXPECT_EQ(dependencies.registries[0].token, "Bearer one");
  EXPECT_EQ(dependencies.registries[1].name, "my-reg");
  EXPECT_EQ(dependencies.registries[1].index, "");
  EXPECT_EQ(dependencies.registries[1].token, "two");
}

TEST(PrivateDependenciesFromEnvTest, BadRegistryListsAreRefusedNamingTheProblem) {
  {
    ScopedEnv env({{"CI_CARGO_REGISTRIES", "gitea"}});
    EXPECT_THAT(PrivateDependenciesFromEnv(""),
                StatusIs(absl::StatusCode::kInvalidArgument,
                         HasSubstr("CI_CARGO_REGISTRY_GITEA_TOKEN")));
  }
  {
    ScopedEnv env({{"CI_CARGO_REGISTRIES", "gitea=https://gitea.example/idx"},
                   {"CI_CARGO_REGISTRY_GITEA_TOKEN", "t"}});
    EXPECT_THAT(PrivateDependenciesFromEnv(""),
                StatusIs(absl::StatusCode::kInvalidArgument,
                         HasSubstr("sparse index")));
  }
  {
    ScopedEnv env({{"CI_CARGO_REGISTRIES", "bad name"}});
    EXPECT_THAT(PrivateDependenciesFromEnv(""),
                StatusIs(absl::StatusCode::kInvalidArgument,
                         HasSubstr("not a registry name")));
  }
}

class DependencyAccessTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_OK_AND_ASSIGN(dir_, testing::MakeTempDir("dependency-access"));
    dependencies_.git = {.username = "ci", .token = "tok-1f2e3d"};
    dependencies_.git_origins = {"https://gitea.example",
                                 "http://127.0.0.1:3000"};
    dependencies_.registries = {
        {.name = "gitea",
         .index = "sparse+https://gitea.example/api/packages/org/cargo/",
         .token = "Bearer reg-4c5b6a"}};
  }
  void TearDown() override { testing::RemoveTree(dir_); }

  // What the helper answers to `get` with `request` on stdin.
  std::string AskHelper(const DependencyAccess& access,
                        const std::string& request,
                        const std::string& action = "get") {
    ProcessOptions process;
    process.argv = {"/bin/sh", "-c",
                    absl::StrCat("printf '", request, "' | ", access.dir(),
                                 "/git-credential ", action)};
    process.env = {{"PATH", "/usr/bin:/bin"}};
    std::string out;
    absl::StatusOr<ProcessResult> run =
        RunProcess(process, [&](StreamKind, absl::string_view line) {
          absl::StrAppend(&out, line, "\n");
        });
    EXPECT_OK(run.status());
    return out;
  }

  std::string dir_;
  PrivateDependencies dependencies_;
};

TEST_F(DependencyAccessTest, LaysOutAPrivateDirectoryAndTheStepsVariables) {
  std::string private_dir;
  {
    ASSERT_OK_AND_ASSIGN(std::unique_ptr<DependencyAccess> access,
                         DependencyAccess::Install(dependencies_, dir_));
    private_dir = access->dir();
    struct stat info;
    ASSERT_EQ(stat(private_dir.c_str(), &info), 0);
    EXPECT_EQ(info.st_mode & 0777, 0700u);
    ASSERT_EQ(stat((private_dir + "/git-token").c_str(), &info), 0);
    EXPECT_EQ(info.st_mode & 0777, 0600u);
    EXPECT_EQ(testing::ReadFileOrEmpty(private_dir + "/git-token"),
              "tok-1f2e3d");
    EXPECT_THAT(testing::ReadFileOrEmpty(private_dir + "/git/config"),
                HasSubstr(private_dir + "/git-credential"));
    EXPECT_THAT(access->env(), Contains(Pair("XDG_CONFIG_HOME", private_dir)));
    // An allowed IP origin: cargo must use the git CLI, which names it.
    EXPECT_THAT(access->env(),
                Contains(Pair("CARGO_NET_GIT_FETCH_WITH_CLI", "true")));
    EXPECT_THAT(access->env(),
                Contains(Pair("CARGO_REGISTRIES_GITEA_INDEX",
                              dependencies_.registries[0].index)));
    EXPECT_THAT(access->env(),
                Contains(Pair("CARGO_REGISTRIES_GITEA_CREDENTIAL_PROVIDER",
                              absl::StrCat("cargo:token-from-stdout cat ",
                                           private_dir,
                                           "/registry-gitea.token"))));
    for (const auto& [name, value] : access->env()) {
      EXPECT_THAT(value, ::testing::Not(HasSubstr("tok-1f2e3d")));
      EXPECT_THAT(value, ::testing::Not(HasSubstr("reg-4c5b6a")));
    }
  }
  EXPECT_FALSE(std::filesystem::exists(private_dir));
}

TEST_F(DependencyAccessTest, NameOriginsOnlyKeepCargosOwnGitTransport) {
  dependencies_.git_origins = {"https://gitea.example"};
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<DependencyAccess> access,
                       DependencyAccess::Install(dependencies_, dir_));
  for (const auto& [name, value] : access->env()) {
    EXPECT_NE(name, "CARGO_NET_GIT_FETCH_WITH_CLI");
  }
}

TEST_F(DependencyAccessTest, HelperAnswersAllowedOriginsOnly) {
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<DependencyAccess> access,
                       DependencyAccess::Install(dependencies_, dir_));
  const std::string answer = "username=ci\npassword=tok-1f2e3d\n";
  EXPECT_EQ(AskHelper(*access, "protocol=https\\nhost=gitea.example\\n\\n"),
            answer);
  EXPECT_EQ(AskHelper(*access, "protocol=https\\nhost=Gitea.Example:443\\n"),
            answer);
  EXPECT_EQ(AskHelper(*access, "protocol=http\\nhost=127.0.0.1:3000\\n"),
            answer);
  // Another host, another scheme or port, or no host at all (cargo's
  // libgit2 for an IP address): nothing.
  EXPECT_EQ(AskHelper(*access, "protocol=https\\nhost=evil.example\\n"), "");
  EXPECT_EQ(AskHelper(*access, "protocol=http\\nhost=gitea.example\\n"), "");
  EXPECT_EQ(AskHelper(*access, "protocol=http\\nhost=127.0.0.1:3001\\n"), "");
  EXPECT_EQ(AskHelper(*access, "protocol=http\\n"), "");
  EXPECT_EQ(AskHelper(*access, "protocol=https\\nhost=gitea.example\\n",
                      "store"),
            "");
}

TEST_F(DependencyAccessTest, NoGitTokenNoHelper) {
  dependencies_.git.token.clear();
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<DependencyAccess> access,
                       DependencyAccess::Install(dependencies_, dir_));
  EXPECT_FALSE(std::filesystem::exists(access->dir() + "/git-credential"));
  for (const auto& [name, value] : access->env()) {
    EXPECT_NE(name, "XDG_CONFIG_HOME");
  }
}

TEST_F(DependencyAccessTest, RefusesAWorkDirAShellWouldSplit) {
  const std::string spaced = dir_ + "/with space";
  ASSERT_TRUE(std::filesystem::create_directory(spaced));
  EXPECT_THAT(DependencyAccess::Install(dependencies_, spaced),
              StatusIs(absl::StatusCode::kFailedPrecondition,
                       HasSubstr("whitespace")));
  // Nothing is left behind.
  EXPECT_TRUE(std::filesystem::is_empty(spaced));
}

}  // namespace
}  // namespace ciagent
