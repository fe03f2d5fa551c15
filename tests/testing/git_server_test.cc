// GitServer and the git_repo helpers, proven with the git CLI as the client
// (independently of the library's own git code): anonymous, authenticated
// and HTTPS clones, injected 503s, chunked request bodies, submodules,
// restarts, and a request log without secrets.
#include "testing/git_server.h"

#include <sys/stat.h>

#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <string>

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "testing/git_repo.h"
#include "testing/redis_server.h"
#include "testing/status_matchers.h"

namespace ciagent::testing {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

constexpr char kUser[] = "ci-bot";
constexpr char kPassword[] = "pa55-w0rd-7d1f";

GitServerOptions WithAuth() {
  GitServerOptions options;
  options.username = kUser;
  options.password = kPassword;
  return options;
}

class GitServerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto dir = MakeTempDir("ciagent-git-server-test-");
    ASSERT_TRUE(dir.ok()) << dir.status();
    scratch_ = *dir;
  }
  void TearDown() override { RemoveTree(scratch_); }

  std::string Scratch(const std::string& name) const {
    return absl::StrCat(scratch_, "/", name);
  }

  // An askpass program answering git's username and password prompts, so
  // the credentials appear neither in the URL nor in argv.
  std::string WriteAskpass(const std::string& user,
                           const std::string& password) {
    const std::string path = Scratch("askpass.sh");
    const std::string script = absl::StrCat(
        "#!/bin/sh\ncase \"$1\" in\n  Username*) echo '", user,
        "' ;;\n  *) echo '", password, "' ;;\nesac\n");
    std::FILE* f = std::fopen(path.c_str(), "w");
    EXPECT_NE(f, nullptr);
    if (f == nullptr) return path;
    std::fwrite(script.data(), 1, script.size(), f);
    std::fclose(f);
    ::chmod(path.c_str(), 0700);
    return path;
  }

  std::string scratch_;
};

std::string Trimmed(const std::string& s) {
  return std::string(absl::StripAsciiWhitespace(s));
}

std::string ReadText(const std::string& path) { return ReadFileOrEmpty(path); }

TEST_F(GitServerTest, ClonesOverHttpWithoutAuth) {
  CIAGENT_START_GIT_SERVER(server);
  ASSERT_OK_AND_ASSIGN(std::string repo, server->CreateBareRepo("app"));
  EXPECT_EQ(repo, absl::StrCat(server->root(), "/app.git"));
  ASSERT_OK_AND_ASSIGN(
      std::string commit,
      CommitFiles(repo, "main",
                  {{"README.md", "hello\n"}, {"src/main.rs", "fn main() {}\n"}},
                  "first"));
  EXPECT_EQ(server->RepoUrl("app"),
            absl::StrCat("http://127.0.0.1:", server->port(), "/app.git"));

  const std::string dest = Scratch("clone");
  ASSERT_OK_AND_ASSIGN(
      GitResult clone,
      RunGit({"-c", "protocol.version=2", "clone", "-q",
              server->RepoUrl("app"), dest}));
  ASSERT_TRUE(clone.ok()) << clone.stderr_text;
  EXPECT_EQ(ReadText(dest + "/README.md"), "hello\n");
  EXPECT_EQ(ReadText(dest + "/src/main.rs"), "fn main() {}\n");
  ASSERT_OK_AND_ASSIGN(GitResult head, RunGit({"-C", dest, "rev-parse",
                                               "HEAD", "--abbrev-ref", "HEAD"}));
  EXPECT_EQ(head.stdout_text, absl::StrCat(commit, "\nmain\n"));
}

TEST_F(GitServerTest, LsRemoteReportsCommitsMadeWithCommitFiles) {
  CIAGENT_START_GIT_SERVER(server);
  ASSERT_OK_AND_ASSIGN(std::string repo, server->CreateBareRepo("app"));
  ASSERT_OK_AND_ASSIGN(std::string first,
                       CommitFiles(repo, "main", {{"a", "1\n"}}, "first"));
  ASSERT_OK_AND_ASSIGN(std::string second,
                       CommitFiles(repo, "main", {{"b", "2\n"}}, "second"));
  ASSERT_OK_AND_ASSIGN(std::string feature,
                       CommitFiles(repo, "feature", {{"c", "3\n"}}, "other"));
  EXPECT_NE(first, second);

  ASSERT_OK_AND_ASSIGN(GitResult refs,
                       RunGit({"ls-remote", server->RepoUrl("app")}));
  ASSERT_TRUE(refs.ok()) << refs.stderr_text;
  EXPECT_EQ(refs.stdout_text,
            absl::StrCat(second, "\tHEAD\n", feature, "\trefs/heads/feature\n",
                         second, "\trefs/heads/main\n"));

  // The second commit builds on the first; the new branch starts empty.
  ASSERT_OK_AND_ASSIGN(GitResult tree,
                       RunGit({"--git-dir=" + repo, "ls-tree", "--name-only",
                               "-r", second}));
  EXPECT_EQ(tree.stdout_text, "a\nb\n");
  ASSERT_OK_AND_ASSIGN(GitResult parent,
                       RunGit({"--git-dir=" + repo, "rev-parse", second + "^"}));
  EXPECT_EQ(Trimmed(parent.stdout_text), first);

  // Fixed identity and dates: the same content gives the same id.
  ASSERT_OK_AND_ASSIGN(std::string again, server->CreateBareRepo("again"));
  EXPECT_THAT(CommitFiles(again, "main", {{"a", "1\n"}}, "first"),
              IsOkAndHolds(first));
}

TEST_F(GitServerTest, ClonesWithCredentialsAndRejectsRequestsWithout) {
  GitServerOptions options = WithAuth();
  CIAGENT_START_GIT_SERVER(server, options);
  ASSERT_OK_AND_ASSIGN(std::string repo, server->CreateBareRepo("private"));
  ASSERT_OK(CommitFiles(repo, "main", {{"secret.txt", "x\n"}}, "first").status());
  const std::string url = server->RepoUrl("private");

  ASSERT_OK_AND_ASSIGN(GitResult anonymous,
                       RunGit({"clone", "-q", url, Scratch("anonymous")}));
  EXPECT_FALSE(anonymous.ok());
  EXPECT_THAT(server->RequestLog(),
              HasSubstr("GET /private.git/info/refs 401\n"));

  ASSERT_OK_AND_ASSIGN(
      GitResult wrong,
      RunGit({"clone", "-q", url, Scratch("wrong")},
             {{"GIT_ASKPASS", WriteAskpass(kUser, "not-the-password")}}));
  EXPECT_FALSE(wrong.ok());
  EXPECT_THAT(wrong.stderr_text, HasSubstr("Authentication failed"));

  ASSERT_OK_AND_ASSIGN(
      GitResult clone,
      RunGit({"clone", "-q", url, Scratch("clone")},
             {{"GIT_ASKPASS", WriteAskpass(kUser, kPassword)}}));
  ASSERT_TRUE(clone.ok()) << clone.stderr_text;
  EXPECT_EQ(ReadText(Scratch("clone/secret.txt")), "x\n");
}

TEST_F(GitServerTest, RequestLogHoldsNoCredentials) {
  GitServerOptions options = WithAuth();
  CIAGENT_START_GIT_SERVER(server, options);
  ASSERT_OK_AND_ASSIGN(std::string repo, server->CreateBareRepo("app"));
  ASSERT_OK(CommitFiles(repo, "main", {{"f", "x\n"}}, "first").status());
  ASSERT_OK_AND_ASSIGN(
      GitResult clone,
      RunGit({"clone", "-q", server->RepoUrl("app"), Scratch("clone")},
             {{"GIT_ASKPASS", WriteAskpass(kUser, kPassword)}}));
  ASSERT_TRUE(clone.ok()) << clone.stderr_text;

  const std::string log = server->RequestLog();
  EXPECT_THAT(log, HasSubstr("GET /app.git/info/refs 401\n"));
  EXPECT_THAT(log, HasSubstr("GET /app.git/info/refs 200\n"));
  EXPECT_THAT(log, HasSubstr("POST /app.git/git-upload-pack 200\n"));
  EXPECT_THAT(log, Not(HasSubstr(kPassword)));
  EXPECT_THAT(log, Not(HasSubstr(kUser)));
  EXPECT_THAT(log, Not(HasSubstr(absl::Base64Escape(
                       absl::StrCat(kUser, ":", kPassword)))));
  EXPECT_THAT(log, Not(HasSubstr("Authorization")));

  // The server read the credentials from a file only the owner can read
  // (the fixture keeps it next to the repository root).
  namespace fs = std::filesystem;
  const fs::path auth = fs::path(server->root()).parent_path() / "auth";
  EXPECT_EQ(fs::status(auth).permissions() & fs::perms::all,
            fs::perms::owner_read | fs::perms::owner_write);
}

TEST_F(GitServerTest, HttpsCloneTrustsOnlyTheServersCa) {
  GitServerOptions options;
  options.https = true;
  CIAGENT_START_GIT_SERVER(server, options);
  ASSERT_FALSE(server->ca_file().empty());
  ASSERT_OK_AND_ASSIGN(std::string repo, server->CreateBareRepo("app"));
  ASSERT_OK(CommitFiles(repo, "main", {{"f", "tls\n"}}, "first").status());
  const std::string url = server->RepoUrl("app");
  EXPECT_EQ(url, absl::StrCat("https://127.0.0.1:", server->port(), "/app.git"));

  ASSERT_OK_AND_ASSIGN(GitResult untrusted,
                       RunGit({"clone", "-q", url, Scratch("untrusted")}));
  EXPECT_FALSE(untrusted.ok());
  EXPECT_THAT(absl::AsciiStrToLower(untrusted.stderr_text),
              HasSubstr("certificate"));

  ASSERT_OK_AND_ASSIGN(
      GitResult clone, RunGit({"clone", "-q", url, Scratch("clone")},
                              {{"GIT_SSL_CAINFO", server->ca_file()}}));
  ASSERT_TRUE(clone.ok()) << clone.stderr_text;
  EXPECT_EQ(ReadText(Scratch("clone/f")), "tls\n");

  // The certificate also holds for the name localhost.
  ASSERT_OK_AND_ASSIGN(
      GitResult by_name,
      RunGit({"ls-remote",
              absl::StrCat("https://localhost:", server->port(), "/app.git")},
             {{"GIT_SSL_CAINFO", server->ca_file()}}));
  EXPECT_TRUE(by_name.ok()) << by_name.stderr_text;
}

TEST_F(GitServerTest, HttpsWithAuthClones) {
  CIAGENT_START_GIT_SERVER(
      server, {.https = true, .username = kUser, .password = kPassword});
  ASSERT_OK_AND_ASSIGN(std::string repo, server->CreateBareRepo("app"));
  ASSERT_OK_AND_ASSIGN(std::string commit,
                       CommitFiles(repo, "main", {{"f", "x\n"}}, "first"));
  ASSERT_OK_AND_ASSIGN(
      GitResult refs,
      RunGit({"ls-remote", server->RepoUrl("app"), "refs/heads/main"},
             {{"GIT_SSL_CAINFO", server->ca_file()},
              {"GIT_ASKPASS", WriteAskpass(kUser, kPassword)}}));
  ASSERT_TRUE(refs.ok()) << refs.stderr_text;
  EXPECT_EQ(refs.stdout_text, absl::StrCat(commit, "\trefs/heads/main\n"));
}

TEST_F(GitServerTest, FailFirstRequestsAnswers503ThenServes) {
  CIAGENT_START_GIT_SERVER(server, {.fail_first_requests = 1});
  ASSERT_OK_AND_ASSIGN(std::string repo, server->CreateBareRepo("app"));
  ASSERT_OK_AND_ASSIGN(std::string commit,
                       CommitFiles(repo, "main", {{"f", "x\n"}}, "first"));

  ASSERT_OK_AND_ASSIGN(GitResult first,
                       RunGit({"ls-remote", server->RepoUrl("app")}));
  EXPECT_FALSE(first.ok());
  EXPECT_THAT(first.stderr_text, HasSubstr("503"));
  ASSERT_OK_AND_ASSIGN(GitResult second,
                       RunGit({"ls-remote", server->RepoUrl("app")}));
  ASSERT_TRUE(second.ok()) << second.stderr_text;
  EXPECT_THAT(second.stdout_text, HasSubstr(commit));
  EXPECT_THAT(server->RequestLog(),
              HasSubstr("GET /app.git/info/refs 503\n"
                        "GET /app.git/info/refs 200\n"));
}

TEST_F(GitServerTest, AcceptsChunkedRequestBodies) {
  CIAGENT_START_GIT_SERVER(server);
  ASSERT_OK_AND_ASSIGN(std::string repo, server->CreateBareRepo("app"));
  ASSERT_OK(CommitFiles(repo, "main", {{"f", "x\n"}}, "first").status());
  const std::string work = Scratch("work");
  ASSERT_OK_AND_ASSIGN(GitResult clone,
                       RunGit({"clone", "-q", server->RepoUrl("app"), work}));
  ASSERT_TRUE(clone.ok()) << clone.stderr_text;

  // Content that does not compress, larger than http.postBuffer: git then
  // streams the pack with Transfer-Encoding: chunked.
  std::string noise(64 * 1024, '\0');
  uint32_t x = 2463534242u;
  for (char& c : noise) {
    x ^= x << 13;
    x ^= x >> 17;
    x ^= x << 5;
    c = static_cast<char>(x);
  }
  {
    std::FILE* f = std::fopen((work + "/noise.bin").c_str(), "wb");
    ASSERT_NE(f, nullptr);
    std::fwrite(noise.data(), 1, noise.size(), f);
    std::fclose(f);
  }
  ASSERT_OK_AND_ASSIGN(GitResult add, RunGit({"-C", work, "add", "noise.bin"}));
  ASSERT_TRUE(add.ok()) << add.stderr_text;
  ASSERT_OK_AND_ASSIGN(GitResult commit,
                       RunGit({"-C", work, "commit", "-q", "-m", "noise"}));
  ASSERT_TRUE(commit.ok()) << commit.stderr_text;
  ASSERT_OK_AND_ASSIGN(
      GitResult push,
      RunGit({"-C", work, "-c", "http.postBuffer=4096", "push", "-q",
              "origin", "HEAD:refs/heads/main"},
             {{"GIT_TRACE_CURL", Scratch("curl.trace")},
              {"GIT_TRACE_CURL_NO_DATA", "1"}}));
  ASSERT_TRUE(push.ok()) << push.stderr_text;
  EXPECT_THAT(ReadText(Scratch("curl.trace")),
              HasSubstr("Send header: Transfer-Encoding: chunked"));

  ASSERT_OK_AND_ASSIGN(GitResult local, RunGit({"-C", work, "rev-parse", "HEAD"}));
  ASSERT_OK_AND_ASSIGN(GitResult remote,
                       RunGit({"--git-dir=" + repo, "rev-parse", "main"}));
  EXPECT_EQ(remote.stdout_text, local.stdout_text);
}

TEST_F(GitServerTest, SubmoduleCommitClonesRecursively) {
  CIAGENT_START_GIT_SERVER(server);
  ASSERT_OK_AND_ASSIGN(std::string lib, server->CreateBareRepo("lib"));
  ASSERT_OK_AND_ASSIGN(std::string lib_commit,
                       CommitFiles(lib, "main", {{"lib.rs", "// v1\n"}}, "v1"));
  // A later lib commit: the submodule must stay pinned to v1.
  ASSERT_OK(CommitFiles(lib, "main", {{"lib.rs", "// v2\n"}}, "v2").status());
  ASSERT_OK_AND_ASSIGN(std::string app, server->CreateBareRepo("app"));
  ASSERT_OK(CommitFiles(app, "main", {{"Cargo.toml", "[package]\n"}}, "first")
                .status());
  ASSERT_OK_AND_ASSIGN(
      std::string commit,
      CommitSubmodule(app, "main", "vendor/lib", server->RepoUrl("lib"),
                      lib_commit, "add lib"));

  const std::string dest = Scratch("clone");
  ASSERT_OK_AND_ASSIGN(
      GitResult clone, RunGit({"clone", "-q", "--recurse-submodules",
                               server->RepoUrl("app"), dest}));
  ASSERT_TRUE(clone.ok()) << clone.stderr_text;
  ASSERT_OK_AND_ASSIGN(GitResult head, RunGit({"-C", dest, "rev-parse", "HEAD"}));
  EXPECT_EQ(Trimmed(head.stdout_text), commit);
  EXPECT_EQ(ReadText(dest + "/Cargo.toml"), "[package]\n");
  EXPECT_EQ(ReadText(dest + "/vendor/lib/lib.rs"), "// v1\n");
  ASSERT_OK_AND_ASSIGN(GitResult sub,
                       RunGit({"-C", dest + "/vendor/lib", "rev-parse", "HEAD"}));
  EXPECT_EQ(Trimmed(sub.stdout_text), lib_commit);
  ASSERT_OK_AND_ASSIGN(
      GitResult url, RunGit({"config", "-f", dest + "/.gitmodules",
                             "submodule.vendor/lib.url"}));
  EXPECT_EQ(Trimmed(url.stdout_text), server->RepoUrl("lib"));
}

TEST_F(GitServerTest, StopAndStartAgainKeepPortAndRepositories) {
  CIAGENT_START_GIT_SERVER(server);
  ASSERT_OK_AND_ASSIGN(std::string repo, server->CreateBareRepo("app"));
  ASSERT_OK_AND_ASSIGN(std::string commit,
                       CommitFiles(repo, "main", {{"f", "x\n"}}, "first"));
  const int port = server->port();

  ASSERT_OK(server->Stop());
  ASSERT_OK_AND_ASSIGN(GitResult down,
                       RunGit({"ls-remote", server->RepoUrl("app")}));
  EXPECT_FALSE(down.ok());

  ASSERT_OK(server->StartAgain());
  EXPECT_EQ(server->port(), port);
  ASSERT_OK_AND_ASSIGN(GitResult up,
                       RunGit({"ls-remote", server->RepoUrl("app")}));
  ASSERT_TRUE(up.ok()) << up.stderr_text;
  EXPECT_THAT(up.stdout_text, HasSubstr(commit));
}

TEST_F(GitServerTest, RemovesItsDirectoryWhenDestroyed) {
  std::string dir;
  {
    CIAGENT_START_GIT_SERVER(server);
    dir = std::filesystem::path(server->root()).parent_path().string();
    ASSERT_TRUE(std::filesystem::is_directory(dir));
  }
  EXPECT_FALSE(std::filesystem::exists(dir));
}

}  // namespace
}  // namespace ciagent::testing
