// DependencyFailureReader on what cargo 1.95 printed on stderr (recorded from
// real runs against the test git server and the test cargo registry, both
// transports of git dependencies), and the reasons the pipeline gives.
#include "ciagent/pipeline/dependency_failure.h"

#include <optional>
#include <string>

#include "absl/strings/str_split.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace ciagent {
namespace {

using Kind = DependencyFailure::Kind;

std::optional<DependencyFailure> Read(absl::string_view stderr_text) {
  DependencyFailureReader reader;
  for (absl::string_view line : absl::StrSplit(stderr_text, '\n')) {
    reader.AddLine(line);
  }
  return reader.failure();
}

constexpr char kChainHead[] =
    "    Updating git repository `http://127.0.0.1:45385/internal.git`\n"
    "error: failed to get `internal` as a dependency of package `app v0.1.0 "
    "(/tmp/app)`\n"
    "\n"
    "Caused by:\n"
    "  failed to load source for dependency `internal`\n"
    "\n"
    "Caused by:\n"
    "  unable to update http://127.0.0.1:45385/internal.git?branch=main\n"
    "\n"
    "Caused by:\n"
    "  failed to clone into: /cache/cargo-home/git/db/internal-c1f781c2\n"
    "\n"
    "Caused by:\n";

constexpr char kLibgit2TokenRejected[] =
    "  failed to authenticate when downloading repository\n"
    "\n"
    "  * attempted to find username/password via `credential.helper`, but "
    "maybe the found credentials were incorrect\n"
    "\n"
    "  if the git CLI succeeds then `net.git-fetch-with-cli` may help here\n"
    "  https://doc.rust-lang.org/cargo/reference/config.html"
    "#netgit-fetch-with-cli\n"
    "\n"
    "Caused by:\n"
    "  no authentication methods succeeded\n";

constexpr char kLibgit2NoCredentials[] =
    "  failed to authenticate when downloading repository\n"
    "\n"
    "  * attempted to find username/password via git's `credential.helper` "
    "support, but failed\n"
    "\n"
    "Caused by:\n"
    "  failed to acquire username/password from local configuration\n";

constexpr char kGitCliProcessFailed[] =
    "  process didn't exit successfully: `git fetch --no-tags --force "
    "--update-head-ok 'http://127.0.0.1:45385/internal.git' "
    "'+refs/heads/main:refs/remotes/origin/main'` (exit status: 128)\n";

TEST(DependencyFailureReaderTest, Libgit2RejectedCredentialsAreAnAuthFailure) {
  std::optional<DependencyFailure> failure =
      Read(std::string(kChainHead) + kLibgit2TokenRejected);
  ASSERT_TRUE(failure.has_value());
  EXPECT_EQ(failure->kind, Kind::kAuthentication);
  EXPECT_EQ(failure->git_url, "http://127.0.0.1:45385/internal.git");
  EXPECT_THAT(failure->cause, ::testing::HasSubstr("failed to authenticate"));
}

TEST(DependencyFailureReaderTest, Libgit2WithoutCredentialsIsAnAuthFailure) {
  std::optional<DependencyFailure> failure =
      Read(std::string(kChainHead) + kLibgit2NoCredentials);
  ASSERT_TRUE(failure.has_value());
  EXPECT_EQ(failure->kind, Kind::kAuthentication);
}

TEST(DependencyFailureReaderTest, GitCliCauseComesFromItsFatalLinesBeforeTheChain) {
  constexpr char kFatal[] =
      "remote: Unauthorized\n"
      "fatal: Authentication failed for "
      "'http://127.0.0.1:45385/internal.git/'\n"
      "warning: spurious network error (3 tries remaining): process didn't "
      "exit successfully: `git fetch ...` (exit status: 128)\n";
  std::optional<DependencyFailure> failure =
      Read(std::string(kFatal) + kChainHead + kGitCliProcessFailed);
  ASSERT_TRUE(failure.has_value());
  EXPECT_EQ(failure->kind, Kind::kAuthentication);
  EXPECT_EQ(failure->git_url, "http://127.0.0.1:45385/internal.git");

  failure = Read(std::string("fatal: could not read Username for "
                             "'http://127.0.0.1:45385': No such device or "
                             "address\n") +
                 kChainHead + kGitCliProcessFailed);
  ASSERT_TRUE(failure.has_value());
  EXPECT_EQ(failure->kind, Kind::kAuthentication);
}

TEST(DependencyFailureReaderTest, UnreachableOrFailingGitServerIsUnavailable) {
  for (const std::string& output : {
           std::string(kChainHead) +
               "  failed to connect to 127.0.0.1: Connection refused; "
               "class=Os (2)\n",
           std::string(kChainHead) +
               "  network failure seems to have happened\n\nCaused by:\n"
               "  unexpected http status code: 503; class=Http (34)\n",
           "fatal: unable to access 'http://127.0.0.1:1/internal.git/': "
           "Failed to connect to 127.0.0.1 port 1 after 0 ms: Couldn't "
           "connect to server\n" +
               std::string(kChainHead) + kGitCliProcessFailed,
           "fatal: unable to access 'http://127.0.0.1:41815/internal.git/': "
           "The requested URL returned error: 503\n" +
               std::string(kChainHead) + kGitCliProcessFailed,
       }) {
    std::optional<DependencyFailure> failure = Read(output);
    ASSERT_TRUE(failure.has_value()) << output;
    EXPECT_EQ(failure->kind, Kind::kUnavailable) << output;
    EXPECT_EQ(failure->git_url, "http://127.0.0.1:45385/internal.git");
  }
}

TEST(DependencyFailureReaderTest, RegistryTokenRejectedNamesTheRegistry) {
  std::optional<DependencyFailure> failure = Read(
      "    Updating `gitea` index\n"
      "error: failed to get `internal` as a dependency of package `regapp "
      "v0.1.0 (/tmp/regapp)`\n\nCaused by:\n"
      "  token rejected for `gitea`, please run `cargo login --registry "
      "gitea`\n"
      "  You may need to log in using this registry's credential provider\n"
      "\nCaused by:\n"
      "  failed to get successful HTTP response from "
      "`http://127.0.0.1:35109/index/config.json`, got 401\n"
      "  body:\n  token missing or rejected\n");
  ASSERT_TRUE(failure.has_value());
  EXPECT_EQ(failure->kind, Kind::kAuthentication);
  EXPECT_EQ(failure->registry, "gitea");
  EXPECT_EQ(failure->git_url, "");
}

TEST(DependencyFailureReaderTest, RegistryWithoutCredentialProviderIsNamedFromUpdating) {
  std::optional<DependencyFailure> failure = Read(
      "    Updating `gitea` index\n"
      "error: failed to get `internal` as a dependency of package `regapp "
      "v0.1.0 (/tmp/regapp)`\n\nCaused by:\n"
      "  authenticated registries require a credential-provider to be "
      "configured\n"
      "  see https://doc.rust-lang.org/cargo/reference/"
      "registry-authentication.html for details\n");
  ASSERT_TRUE(failure.has_value());
  EXPECT_EQ(failure->kind, Kind::kAuthentication);
  EXPECT_EQ(failure->registry, "gitea");
}

TEST(DependencyFailureReaderTest, RegistryDownOrFailingIsUnavailable) {
  for (const char* cause : {
           "  failed to get successful HTTP response from "
           "`http://127.0.0.1:37471/index/config.json` (127.0.0.1), got 503\n"
           "  body:\n  registry unavailable (injected)\n",
           "  failed to download from "
           "`http://127.0.0.1:1/index/config.json`\n\nCaused by:\n"
           "  [7] Could not connect to server (Failed to connect to "
           "127.0.0.1 port 1 after 0 ms: Could not connect to server)\n",
       }) {
    std::optional<DependencyFailure> failure = Read(
        std::string("    Updating `gitea` index\n"
                    "error: failed to get `internal` as a dependency of "
                    "package `regapp v0.1.0 (/tmp/regapp)`\n\nCaused by:\n"
                    "  download of config.json failed\n\nCaused by:\n") +
        cause);
    ASSERT_TRUE(failure.has_value()) << cause;
    EXPECT_EQ(failure->kind, Kind::kUnavailable) << cause;
    EXPECT_EQ(failure->registry, "gitea");
  }
}

TEST(DependencyFailureReaderTest, OutputOfTestsAndCompileErrorsIsNoDependencyFailure) {
  // A failing test that talks about networks, and a compile error: neither
  // is cargo failing to get a dependency.
  EXPECT_FALSE(Read("thread 'client::connects' panicked at src/lib.rs:9:5:\n"
                    "Connection refused (os error 111)\n"
                    "fatal: unable to access 'http://x/': Could not resolve "
                    "host: x\n"
                    "error: test failed, to rerun pass `--lib`\n")
                   .has_value());
  EXPECT_FALSE(Read("error[E0308]: mismatched types\n"
                    "error: could not compile `app` (lib) due to 1 previous "
                    "error\n")
                   .has_value());
  // A dependency error for another reason (a missing revision) is the
  // job's, with cargo's own words.
  EXPECT_FALSE(Read(std::string(kChainHead) +
                    "  revspec 'deadbeef' not found; class=Reference (4)\n")
                   .has_value());
}

PrivateDependencies Allowing(std::string origin, std::string token) {
  PrivateDependencies dependencies;
  dependencies.git.token = std::move(token);
  dependencies.git_origins = {std::move(origin)};
  dependencies.registries = {{.name = "gitea", .index = "", .token = "t"}};
  return dependencies;
}

TEST(DescribeDependencyFailureTest, GitAuthReasonSaysWhichCaseItIs) {
  DependencyFailure failure{.kind = Kind::kAuthentication,
                            .git_url = "https://gitea.example/org/internal.git"};
  EXPECT_EQ(DescribeDependencyFailure(
                failure, Allowing("https://gitea.example", "tok")),
            "authentication failed for git dependency "
            "https://gitea.example/org/internal.git (host allowed, token "
            "rejected)");
  EXPECT_EQ(DescribeDependencyFailure(failure,
                                      Allowing("https://gitea.example", "")),
            "authentication failed for git dependency "
            "https://gitea.example/org/internal.git (host allowed, no git "
            "token configured)");
  EXPECT_EQ(DescribeDependencyFailure(
                failure, Allowing("https://git.other.example", "tok")),
            "authentication failed for git dependency "
            "https://gitea.example/org/internal.git (host not in the allowed "
            "list: https://git.other.example)");
}

TEST(DescribeDependencyFailureTest, RegistryAuthReasonTellsUnknownFromRejected) {
  PrivateDependencies dependencies = Allowing("https://gitea.example", "tok");
  EXPECT_EQ(DescribeDependencyFailure(
                {.kind = Kind::kAuthentication, .registry = "gitea"},
                dependencies),
            "authentication failed for registry `gitea` (token rejected)");
  EXPECT_EQ(DescribeDependencyFailure(
                {.kind = Kind::kAuthentication, .registry = "internal"},
                dependencies),
            "authentication failed for registry `internal` (no token "
            "configured: name it in CI_CARGO_REGISTRIES)");
}

TEST(DescribeDependencyFailureTest, UnavailableNamesTheServerAndTheCause) {
  EXPECT_EQ(DescribeDependencyFailure(
                {.kind = Kind::kUnavailable,
                 .git_url = "https://gitea.example/org/internal.git",
                 .cause = "unexpected http status code: 503; class=Http (34)"},
                PrivateDependencies{}),
            "git dependency https://gitea.example/org/internal.git "
            "unavailable: unexpected http status code: 503; class=Http (34)");
}

}  // namespace
}  // namespace ciagent
