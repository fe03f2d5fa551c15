// Test content for git repositories, built with the git CLI.
//
// Commits are written straight into a bare repository by `git fast-import`
// (one process per commit, however many files): no clone, no working tree,
// no network. Author, committer and dates are fixed, so the same calls
// produce the same commit ids on every run. git never reads the user's or
// the system's configuration here.
//
//   ASSERT_OK_AND_ASSIGN(std::string repo, server->CreateBareRepo("app"));
//   ASSERT_OK_AND_ASSIGN(std::string commit,
//       CommitFiles(repo, "main", {{"README", "hello\n"}}, "first"));
//
// Errors: kNotFound when git is not installed or `bare_repo` does not
// exist, kInvalidArgument for bad arguments, kInternal when a git command
// fails (its stderr is in the message). Not safe against concurrent commits
// to the same branch (the loser fails; nothing is corrupted).
#ifndef CIAGENT_TESTS_TESTING_GIT_REPO_H_
#define CIAGENT_TESTS_TESTING_GIT_REPO_H_

#include <map>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace ciagent::testing {

// Commits `files` (path -> contents, paths relative to the repository root,
// '/' separated) on `branch` of the bare repository at `bare_repo`, on top
// of the branch's current head if any: files not named keep their contents.
// When the repository has no commit yet, its HEAD is pointed at `branch`, so
// a plain clone checks that branch out. Returns the new commit's 40-hex id.
absl::StatusOr<std::string> CommitFiles(
    const std::string& bare_repo, const std::string& branch,
    const std::map<std::string, std::string>& files,
    const std::string& message);

// Adds a submodule at `path` whose .gitmodules URL is `submodule_url`
// (typically GitServer::RepoUrl() of another repository) and whose gitlink
// pins `submodule_commit`, in a new commit on `branch` (on top of its head
// if any, keeping other .gitmodules entries). The submodule repository is
// not contacted. Returns the new commit's 40-hex id.
absl::StatusOr<std::string> CommitSubmodule(
    const std::string& bare_repo, const std::string& branch,
    const std::string& path, const std::string& submodule_url,
    const std::string& submodule_commit, const std::string& message);

// What a git command did. A command that ran and failed is not an error
// Status: its exit code and output are here.
struct GitResult {
  int exit_code = -1;
  std::string stdout_text;
  std::string stderr_text;
  bool ok() const { return exit_code == 0; }
};

// Runs `git <args>` isolated from the user: HOME is a fresh temporary
// directory, system configuration is ignored, terminal prompts are off, and
// the identity and dates are the fixed ones CommitFiles uses. `env` is
// applied on top (GIT_ASKPASS, GIT_SSL_CAINFO, ...). kNotFound when git is
// not installed; kDeadlineExceeded after `timeout` (the command is killed).
absl::StatusOr<GitResult> RunGit(
    const std::vector<std::string>& args,
    const std::map<std::string, std::string>& env = {},
    absl::Duration timeout = absl::Seconds(60));

}  // namespace ciagent::testing

#endif  // CIAGENT_TESTS_TESTING_GIT_REPO_H_
