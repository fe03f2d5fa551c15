#include "testing/git_repo.h"

#include <filesystem>
#include <fstream>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "testing/redis_server.h"
#include "testing/subprocess.h"

namespace ciagent::testing {
namespace {

// Fixed identity and dates: the same content gives the same commit ids.
constexpr char kName[] = "ciagent test";
constexpr char kEmail[] = "test@ciagent.invalid";
constexpr char kDate[] = "1700000000 +0000";

// Variables of the calling environment that would redirect git or feed it
// configuration, credentials or TLS settings behind the test's back.
const std::vector<std::string>& InheritedGitVariables() {
  static const auto* names = new std::vector<std::string>{
      "GIT_DIR", "GIT_WORK_TREE", "GIT_INDEX_FILE", "GIT_OBJECT_DIRECTORY",
      "GIT_ALTERNATE_OBJECT_DIRECTORIES", "GIT_COMMON_DIR", "GIT_NAMESPACE",
      "GIT_CONFIG", "GIT_CONFIG_PARAMETERS", "GIT_CONFIG_COUNT",
      "GIT_CONFIG_GLOBAL", "GIT_CONFIG_SYSTEM", "GIT_CEILING_DIRECTORIES",
      "GIT_ASKPASS", "SSH_ASKPASS", "GIT_SSL_NO_VERIFY", "GIT_SSL_CAINFO",
      "GIT_SSL_CAPATH", "GIT_PROXY_COMMAND", "GIT_EXEC_PATH",
      "XDG_CONFIG_HOME", "http_proxy", "https_proxy", "HTTP_PROXY",
      "HTTPS_PROXY", "ALL_PROXY", "all_proxy"};
  return *names;
}

// Removes a directory tree when it goes out of scope.
class TempDir {
 public:
  explicit TempDir(std::string path) : path_(std::move(path)) {}
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  ~TempDir() { RemoveTree(path_); }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

// Runs `argv` with git isolated from the user (see RunGit).
absl::StatusOr<GitResult> RunIsolated(
    const std::vector<std::string>& argv,
    const std::map<std::string, std::string>& env, absl::Duration timeout) {
  auto dir = MakeTempDir("ciagent-git-");
  if (!dir.ok()) return dir.status();
  TempDir home(*dir);
  SubprocessOptions options;
  options.unset_env = InheritedGitVariables();
  options.env = {
      {"HOME", home.path()},
      {"GIT_CONFIG_NOSYSTEM", "1"},
      {"GIT_TERMINAL_PROMPT", "0"},
      {"LC_ALL", "C"},
      {"GIT_AUTHOR_NAME", kName},
      {"GIT_AUTHOR_EMAIL", kEmail},
      {"GIT_AUTHOR_DATE", kDate},
      {"GIT_COMMITTER_NAME", kName},
      {"GIT_COMMITTER_EMAIL", kEmail},
      {"GIT_COMMITTER_DATE", kDate},
  };
  for (const auto& [key, value] : env) options.env[key] = value;
  options.stdout_path = absl::StrCat(home.path(), "/.stdout");
  options.stderr_path = absl::StrCat(home.path(), "/.stderr");
  auto process = Subprocess::Start(argv, options);
  if (!process.ok()) return process.status();
  auto code = (*process)->Wait(timeout);
  if (!code.ok()) {
    (*process)->Kill();
    return absl::DeadlineExceededError(
        absl::StrCat(absl::StrJoin(argv, " "), ": still running after ",
                     absl::FormatDuration(timeout)));
  }
  GitResult result;
  result.exit_code = *code;
  result.stdout_text = ReadFileOrEmpty(options.stdout_path);
  result.stderr_text = ReadFileOrEmpty(options.stderr_path);
  return result;
}

// Runs git on `repo`; its stdout on success, kInternal on a non-zero exit.
absl::StatusOr<std::string> GitOutput(const std::string& repo,
                                      const std::vector<std::string>& args) {
  std::vector<std::string> argv = {absl::StrCat("--git-dir=", repo)};
  argv.insert(argv.end(), args.begin(), args.end());
  auto result = RunGit(argv);
  if (!result.ok()) return result.status();
  if (!result->ok()) {
    return absl::InternalError(absl::StrCat(
        "git ", args.front(), " in ", repo, ": exit ", result->exit_code, ": ",
        absl::StripAsciiWhitespace(result->stderr_text)));
  }
  return std::move(result->stdout_text);
}

// A repository-relative path git will store as given.
absl::Status CheckTreePath(const std::string& path) {
  if (path.empty() || path.front() == '/' || path.back() == '/' ||
      path.find_first_of(std::string("\n\0", 2)) != std::string::npos) {
    return absl::InvalidArgumentError(absl::StrCat("bad path '", path, "'"));
  }
  for (absl::string_view part : absl::StrSplit(path, '/')) {
    if (part.empty() || part == "." || part == ".." || part == ".git") {
      return absl::InvalidArgumentError(absl::StrCat("bad path '", path, "'"));
    }
  }
  return absl::OkStatus();
}

bool IsCommitId(const std::string& id) {
  if (id.size() != 40) return false;
  for (char c : id) {
    if (!absl::ascii_isdigit(c) && (c < 'a' || c > 'f')) return false;
  }
  return true;
}

// A path as a C-style quoted string, which fast-import always accepts.
std::string Quoted(const std::string& path) {
  std::string out = "\"";
  for (char c : path) {
    if (c == '"' || c == '\\') out.push_back('\\');
    out.push_back(c);
  }
  out.push_back('"');
  return out;
}

std::string Data(const std::string& bytes) {
  return absl::StrCat("data ", bytes.size(), "\n", bytes, "\n");
}

// One new commit: what changes relative to the branch head.
struct CommitChanges {
  std::map<std::string, std::string> files;     // path -> contents
  std::map<std::string, std::string> gitlinks;  // path -> commit id
};

// The branch heads of `repo`: refs/heads/<name> -> commit id.
absl::StatusOr<std::map<std::string, std::string>> BranchHeads(
    const std::string& repo) {
  auto listed = GitOutput(
      repo, {"for-each-ref", "--format=%(refname) %(objectname)", "refs/heads/"});
  if (!listed.ok()) return listed.status();
  std::map<std::string, std::string> heads;
  for (absl::string_view line :
       absl::StrSplit(*listed, '\n', absl::SkipEmpty())) {
    std::pair<std::string, std::string> ref = absl::StrSplit(line, ' ');
    heads[ref.first] = ref.second;
  }
  return heads;
}

// Writes one commit on `branch` with `git fast-import` (a single process,
// however many files) and returns its id.
absl::StatusOr<std::string> ImportCommit(
    const std::string& bare_repo, const std::string& branch,
    const std::string& parent, bool first_branch,
    const CommitChanges& changes, const std::string& message) {
  const std::string ref = absl::StrCat("refs/heads/", branch);
  const std::string identity =
      absl::StrCat(kName, " <", kEmail, "> ", kDate, "\n");
  std::string stream = absl::StrCat(
      "commit ", ref, "\nmark :1\nauthor ", identity, "committer ", identity,
      Data(message.empty() || message.back() == '\n' ? message
                                                     : message + "\n"));
  if (!parent.empty()) absl::StrAppend(&stream, "from ", parent, "\n");
  for (const auto& [path, contents] : changes.files) {
    absl::StrAppend(&stream, "M 100644 inline ", Quoted(path), "\n",
                    Data(contents));
  }
  for (const auto& [path, commit] : changes.gitlinks) {
    absl::StrAppend(&stream, "M 160000 ", commit, " ", Quoted(path), "\n");
  }
  absl::StrAppend(&stream, "\nget-mark :1\ndone\n");

  auto dir = MakeTempDir("ciagent-commit-");
  if (!dir.ok()) return dir.status();
  TempDir scratch(*dir);
  const std::string input = absl::StrCat(scratch.path(), "/stream");
  {
    std::ofstream out(input, std::ios::binary);
    out << stream;
    if (!out.flush()) return absl::InternalError(absl::StrCat("write ", input));
  }
  // fast-import reads stdin only; the shell redirects it from the file.
  auto result = RunIsolated(
      {"/bin/sh", "-c",
       "exec git --git-dir=\"$1\" fast-import --quiet --done < \"$2\"", "sh",
       bare_repo, input},
      {}, absl::Seconds(60));
  if (!result.ok()) return result.status();
  const std::string commit(
      absl::StripTrailingAsciiWhitespace(result->stdout_text));
  if (!result->ok() || !IsCommitId(commit)) {
    return absl::InternalError(absl::StrCat(
        "commit to ", ref, " of ", bare_repo, ": git fast-import exit ",
        result->exit_code, ": ",
        absl::StripAsciiWhitespace(result->stderr_text)));
  }
  if (first_branch) {
    // A repository's first branch becomes its default one, so a plain
    // clone checks it out whatever init.defaultBranch said.
    auto pointed = GitOutput(bare_repo, {"symbolic-ref", "HEAD", ref});
    if (!pointed.ok()) return pointed.status();
  }
  return commit;
}

// Where a new commit on a branch goes.
struct BranchState {
  std::string parent;         // current head; empty for a new branch
  bool first_branch = false;  // the repository has no branch yet
};

absl::StatusOr<BranchState> LoadBranch(const std::string& bare_repo,
                                       const std::string& branch) {
  if (branch.empty()) return absl::InvalidArgumentError("empty branch name");
  std::error_code ec;
  if (!std::filesystem::is_directory(bare_repo, ec)) {
    return absl::NotFoundError(
        absl::StrCat("commit to ", bare_repo, ": no such repository"));
  }
  auto heads = BranchHeads(bare_repo);
  if (!heads.ok()) return heads.status();
  BranchState state;
  state.first_branch = heads->empty();
  if (auto it = heads->find(absl::StrCat("refs/heads/", branch));
      it != heads->end()) {
    state.parent = it->second;
  }
  return state;
}

// .gitmodules of `commit` with `path` registered at `url` (git's own
// writer keeps other entries and quoting right).
absl::StatusOr<std::string> GitmodulesWith(const std::string& bare_repo,
                                           const std::string& commit,
                                           const std::string& path,
                                           const std::string& url) {
  std::string current;
  if (!commit.empty()) {
    auto listed = GitOutput(bare_repo, {"ls-tree", commit, ".gitmodules"});
    if (!listed.ok()) return listed.status();
    if (!listed->empty()) {
      auto blob = GitOutput(bare_repo, {"cat-file", "blob",
                                        absl::StrCat(commit, ":.gitmodules")});
      if (!blob.ok()) return blob.status();
      current = *std::move(blob);
    }
  }
  auto dir = MakeTempDir("ciagent-gitmodules-");
  if (!dir.ok()) return dir.status();
  TempDir scratch(*dir);
  const std::string file = absl::StrCat(scratch.path(), "/gitmodules");
  {
    std::ofstream out(file, std::ios::binary);
    out << current;
    if (!out.flush()) return absl::InternalError(absl::StrCat("write ", file));
  }
  for (const auto& [key, value] :
       std::vector<std::pair<std::string, std::string>>{{"path", path},
                                                        {"url", url}}) {
    auto set = RunGit(
        {"config", "-f", file, absl::StrCat("submodule.", path, ".", key),
         value});
    if (!set.ok()) return set.status();
    if (!set->ok()) {
      return absl::InternalError(absl::StrCat(
          "git config submodule.", path, ".", key, ": ",
          absl::StripAsciiWhitespace(set->stderr_text)));
    }
  }
  return ReadFileOrEmpty(file);
}

}  // namespace

absl::StatusOr<GitResult> RunGit(const std::vector<std::string>& args,
                                 const std::map<std::string, std::string>& env,
                                 absl::Duration timeout) {
  std::vector<std::string> argv = {"git"};
  argv.insert(argv.end(), args.begin(), args.end());
  return RunIsolated(argv, env, timeout);
}

absl::StatusOr<std::string> CommitFiles(
    const std::string& bare_repo, const std::string& branch,
    const std::map<std::string, std::string>& files,
    const std::string& message) {
  for (const auto& [path, contents] : files) {
    if (auto s = CheckTreePath(path); !s.ok()) return s;
  }
  auto state = LoadBranch(bare_repo, branch);
  if (!state.ok()) return state.status();
  CommitChanges changes;
  changes.files = files;
  return ImportCommit(bare_repo, branch, state->parent, state->first_branch,
                      changes, message);
}

absl::StatusOr<std::string> CommitSubmodule(
    const std::string& bare_repo, const std::string& branch,
    const std::string& path, const std::string& submodule_url,
    const std::string& submodule_commit, const std::string& message) {
  if (auto s = CheckTreePath(path); !s.ok()) return s;
  if (!IsCommitId(submodule_commit)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "submodule ", path, ": '", submodule_commit, "' is not a commit id"));
  }
  if (submodule_url.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat("submodule ", path, ": empty URL"));
  }
  auto state = LoadBranch(bare_repo, branch);
  if (!state.ok()) return state.status();
  auto gitmodules =
      GitmodulesWith(bare_repo, state->parent, path, submodule_url);
  if (!gitmodules.ok()) return gitmodules.status();
  CommitChanges changes;
  changes.files[".gitmodules"] = *std::move(gitmodules);
  changes.gitlinks[path] = submodule_commit;
  return ImportCommit(bare_repo, branch, state->parent, state->first_branch,
                      changes, message);
}

}  // namespace ciagent::testing
