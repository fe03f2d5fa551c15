#include "ciagent/git/fetch.h"

#include <git2.h>

#include <cctype>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <memory>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "ciagent/base/clock.h"
#include "ciagent/base/cpus.h"
#include "ciagent/base/file_lock.h"
#include "ciagent/base/log.h"
#include "ciagent/base/secret.h"
#include "ciagent/base/sha256.h"
#include "ciagent/base/status_macros.h"
#include "ciagent/base/stop_signal.h"
#include "ciagent/git/checkout.h"
#include "ciagent/git/internal/libgit2_ptr.h"
#include "ciagent/git/internal/parallel_pack_writer.h"
#include "ciagent/git/internal/socket_stream.h"
#include "ciagent/git/internal/tls_stream.h"

namespace ciagent {
namespace {

namespace fs = std::filesystem;

constexpr int kMaxSubmoduleDepth = 5;

// libgit2 is initialised once per process, with this module's streams; the
// trust of TLS connections is set per fetch, for its thread (tls_stream.h).
absl::Status InitLibGit2(const std::string& ca_file) {
  static std::once_flag once;
  static absl::Status* registered = new absl::Status();
  std::call_once(once, [] {
    git_libgit2_init();
    // The cache volume may belong to another uid than the agent.
    git_libgit2_opts(GIT_OPT_SET_OWNER_VALIDATION, 0);
    // By default libgit2 hashes every object again each time it reads one.
    // Every object we read comes from a pack our own fetch indexed, and
    // indexing computed each object's id from its content; damage after
    // that is caught by zlib's checksum and the pack's structure (that is
    // how a corrupt mirror is detected and re-cloned). Hashing the files of
    // a checkout once more bought no safety and cost about a fifth of its
    // CPU time.
    git_libgit2_opts(GIT_OPT_ENABLE_STRICT_HASH_VERIFICATION, 0);
    // Requests leave without waiting for a delayed ACK (socket_stream.h);
    // TLS verifies as git does, IP addresses included (tls_stream.h).
    *registered = RegisterNoDelaySocketStream();
    if (registered->ok()) *registered = RegisterOpenSslTlsStream();
  });
  CIAGENT_RETURN_IF_ERROR(*registered);
  if (!ca_file.empty() && !fs::is_regular_file(ca_file)) {
    return absl::FailedPreconditionError(
        absl::StrCat("CA file ", ca_file, " is not a readable file"));
  }
  return SetTlsTrust(ca_file);
}

// What the callbacks of one transfer share.
struct TransferState {
  const FetchOptions* options;
  absl::Time start;
  absl::Time last_report;
  FetchProgress progress;
  int credential_requests = 0;
  bool credentials_rejected = false;
  bool credentials_missing = false;
  bool aborted = false;
};

int AcquireCredentials(git_credential** out, const char* /*url*/,
                       const char* /*username_from_url*/,
                       unsigned int allowed_types, void* payload) {
  auto* state = static_cast<TransferState*>(payload);
  const GitCredentials& credentials = state->options->credentials;
  if (credentials.token.empty()) {
    state->credentials_missing = true;
    return GIT_EAUTH;
  }
  // libgit2 asks again after a 401: the token was wrong, and asking a third
  // time would only hammer the server.
  if (state->credential_requests++ > 0) {
    state->credentials_rejected = true;
    return GIT_EAUTH;
  }
  if ((allowed_types & GIT_CREDENTIAL_USERPASS_PLAINTEXT) == 0) {
    state->credentials_missing = true;
    return GIT_EAUTH;
  }
  const std::string& user =
      credentials.username.empty() ? std::string("git") : credentials.username;
  return git_credential_userpass_plaintext_new(out, user.c_str(),
                                               credentials.token.c_str());
}

void ReportProgress(TransferState* state, absl::Time now) {
  state->progress.elapsed = now - state->start;
  const double seconds = absl::ToDoubleSeconds(state->progress.elapsed);
  state->progress.bytes_per_second =
      seconds > 0
          ? static_cast<double>(state->progress.received_bytes) / seconds
          : 0;
  state->last_report = now;
  if (state->options->on_progress) state->options->on_progress(state->progress);
}

int OnTransferProgress(const git_indexer_progress* stats, void* payload) {
  auto* state = static_cast<TransferState*>(payload);
  state->progress.received_objects = stats->received_objects;
  state->progress.total_objects = stats->total_objects;
  state->progress.indexed_objects = stats->indexed_objects;
  state->progress.received_bytes = static_cast<int64_t>(stats->received_bytes);
  if ((state->options->should_abort && state->options->should_abort()) ||
      StopRequested()) {
    state->aborted = true;
    return GIT_EUSER;
  }
  const absl::Time now = absl::Now();
  if (now - state->last_report >= state->options->progress_interval) {
    ReportProgress(state, now);
  }
  return 0;
}

// Maps a libgit2 failure to a status whose code says what to do.
absl::Status GitError(int rc, absl::string_view operation,
                      const TransferState* transfer = nullptr) {
  const git_error* e = git_error_last();
  const std::string detail = e != nullptr ? e->message : "unknown error";
  const int klass = e != nullptr ? e->klass : GIT_ERROR_NONE;
  const std::string message = absl::StrCat(operation, ": ", detail);
  if (transfer != nullptr) {
    if (transfer->aborted) return absl::CancelledError(message);
    if (transfer->credentials_rejected) {
      return absl::UnauthenticatedError(
          absl::StrCat(operation, ": credentials rejected by the server"));
    }
    if (transfer->credentials_missing) {
      return absl::UnauthenticatedError(absl::StrCat(
          operation, ": the server requires credentials (set GIT_TOKEN)"));
    }
  }
  // The TLS stream's message names the host and why (tls_stream.h).
  if (rc == GIT_ECERTIFICATE) return absl::FailedPreconditionError(message);
  if (rc == GIT_EAUTH) return absl::UnauthenticatedError(message);
  // A fetch that cannot find an object the local refs name has a damaged
  // object store; a lookup that cannot find a commit is the caller's
  // business (see CheckoutDetached).
  if (rc == GIT_ENOTFOUND && klass != GIT_ERROR_ODB) {
    return absl::NotFoundError(message);
  }
  if (klass == GIT_ERROR_HTTP) {
    // "unexpected http status code: 503"
    int code = 0;
    const size_t colon = detail.rfind(':');
    if (colon != std::string::npos &&
        absl::SimpleAtoi(absl::StripAsciiWhitespace(
                             absl::string_view(detail).substr(colon + 1)),
                         &code)) {
      if (code == 401) return absl::UnauthenticatedError(message);
      if (code == 403) return absl::PermissionDeniedError(message);
      if (code == 404) return absl::NotFoundError(message);
      if (code == 408 || code == 429 || code >= 500) {
        return absl::UnavailableError(message);
      }
      return absl::FailedPreconditionError(message);
    }
    return absl::UnavailableError(message);
  }
  switch (klass) {
    case GIT_ERROR_NET:
    case GIT_ERROR_SSL:
    case GIT_ERROR_OS:
      return absl::UnavailableError(message);
    case GIT_ERROR_ODB:
    case GIT_ERROR_INDEXER:
    case GIT_ERROR_ZLIB:
    case GIT_ERROR_OBJECT:
    case GIT_ERROR_REFERENCE:
    case GIT_ERROR_REPOSITORY:
    case GIT_ERROR_SHA:
      return absl::DataLossError(message);
    default:
      return absl::InternalError(message);
  }
}

// "https://Host:443/x" -> ("https", "host"); port dropped when default.
std::pair<std::string, std::string> SchemeAndHost(absl::string_view url) {
  const size_t sep = url.find("://");
  if (sep == absl::string_view::npos) return {"", ""};
  std::string scheme = absl::AsciiStrToLower(url.substr(0, sep));
  absl::string_view rest = url.substr(sep + 3);
  std::string host = absl::AsciiStrToLower(rest.substr(0, rest.find('/')));
  if ((scheme == "https" && absl::EndsWith(host, ":443")) ||
      (scheme == "http" && absl::EndsWith(host, ":80"))) {
    host.resize(host.rfind(':'));
  }
  return {scheme, host};
}

absl::Status PrepareEmptyDir(const std::string& dir) {
  if (dir.empty() || fs::path(dir).lexically_normal() == "/") {
    return absl::InvalidArgumentError(
        absl::StrCat("refusing to use \"", dir, "\" as a checkout directory"));
  }
  std::error_code ec;
  fs::remove_all(dir, ec);
  if (!ec) fs::create_directories(dir, ec);
  if (ec) {
    return absl::UnavailableError(
        absl::StrCat("prepare checkout directory ", dir, ": ", ec.message()));
  }
  return absl::OkStatus();
}

absl::StatusOr<RepoPtr> InitRepo(const std::string& path, bool bare) {
  git_repository* repo = nullptr;
  if (int rc = git_repository_init(&repo, path.c_str(), bare); rc != 0) {
    return GitError(rc, absl::StrCat("init repository ", path));
  }
  return RepoPtr(repo);
}

// True when the repository has no objects of its own (loose or packed): a
// fetch into it is a clone, and the server sends a self-contained pack.
bool HasNoObjects(git_repository* repo) {
  const fs::path objects = fs::path(git_repository_path(repo)) / "objects";
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator(objects, ec)) {
    const std::string name = entry.path().filename().string();
    if (name.size() == 2 &&
        std::isxdigit(static_cast<unsigned char>(name[0])) &&
        std::isxdigit(static_cast<unsigned char>(name[1])) &&
        !fs::is_empty(entry.path(), ec)) {
      return false;
    }
  }
  for (const auto& entry : fs::directory_iterator(objects / "pack", ec)) {
    if (entry.path().extension() == ".pack") return false;
  }
  return !ec;
}

// A clone's pack is indexed on several threads (internal/pack_indexer.h);
// incremental fetches, whose packs may be thin, keep libgit2's indexer.
absl::Status UseParallelIndexingIfEmpty(git_repository* repo,
                                        const FetchOptions& options) {
  if (options.index_threads == 1 || !HasNoObjects(repo)) {
    return absl::OkStatus();
  }
  git_odb* odb = nullptr;
  if (int rc = git_repository_odb(&odb, repo); rc != 0) {
    return GitError(rc, "open the object database");
  }
  const std::string pack_dir =
      (fs::path(git_repository_path(repo)) / "objects" / "pack").string();
  absl::Status status =
      UseParallelPackWriter(odb, pack_dir, options.index_threads);
  git_odb_free(odb);
  return status;
}

absl::StatusOr<RepoPtr> OpenOrInitMirror(const std::string& path) {
  if (!fs::exists(path)) return InitRepo(path, /*bare=*/true);
  git_repository* repo = nullptr;
  if (int rc = git_repository_open_bare(&repo, path.c_str()); rc != 0) {
    // Whatever is there is not a usable repository: treat as corrupt.
    return absl::DataLossError(absl::StrCat("open mirror ", path, ": ",
                                            GitError(rc, "open").message()));
  }
  return RepoPtr(repo);
}

// The tip the server advertised for `branch` in the last fetch by
// `remote`; kNotFound when the server has no such branch (a mirror may
// still hold a stale ref or the commit itself from an earlier fetch).
absl::StatusOr<git_oid> AdvertisedTip(git_remote* remote,
                                      absl::string_view branch,
                                      const std::string& url) {
  const git_remote_head** heads = nullptr;
  size_t count = 0;
  if (int rc = git_remote_ls(&heads, &count, remote); rc != 0) {
    return GitError(rc, absl::StrCat("list the branches of ", url));
  }
  const std::string name = absl::StrCat("refs/heads/", branch);
  for (size_t i = 0; i < count; ++i) {
    if (name == heads[i]->name) return heads[i]->oid;
  }
  return absl::NotFoundError(
      absl::StrCat("branch ", branch, " not found in ", url));
}

// One fetch of `refspec` from `url` into `repo`, retried on transient
// failures. With a `branch`, its advertised tip goes to `*tip`.
absl::Status FetchWithRetries(git_repository* repo, const std::string& url,
                              const std::string& refspec,
                              absl::string_view branch, git_oid* tip,
                              const FetchOptions& options,
                              FetchResult* result) {
  CIAGENT_RETURN_IF_ERROR(UseParallelIndexingIfEmpty(repo, options));
  Backoff backoff(options.backoff);
  absl::Status status;
  for (int attempt = 1; attempt <= options.max_attempts; ++attempt) {
    result->attempts = attempt;
    git_remote* raw_remote = nullptr;
    if (int rc = git_remote_create_anonymous(&raw_remote, repo, url.c_str());
        rc != 0) {
      return GitError(rc, absl::StrCat("fetch ", url));
    }
    RemotePtr remote(raw_remote);
    TransferState state{
        .options = &options, .start = absl::Now(), .last_report = absl::Now()};
    git_fetch_options fetch_options = GIT_FETCH_OPTIONS_INIT;
    fetch_options.callbacks.credentials = AcquireCredentials;
    fetch_options.callbacks.transfer_progress = OnTransferProgress;
    fetch_options.callbacks.payload = &state;
    // HTTPS_PROXY, HTTP_PROXY and NO_PROXY (and git's http.proxy), as git
    // reads them; TLS then runs through the CONNECT tunnel.
    fetch_options.proxy_opts.type = GIT_PROXY_AUTO;
    fetch_options.download_tags = GIT_REMOTE_DOWNLOAD_TAGS_NONE;
    fetch_options.update_fetchhead = 0;
    char* refspecs[] = {const_cast<char*>(refspec.c_str())};
    git_strarray specs = {refspecs, 1};
    const int rc =
        git_remote_fetch(remote.get(), &specs, &fetch_options, "ciagent fetch");
    if (rc == 0) {
      ReportProgress(&state, absl::Now());
      result->transfer = state.progress;
      if (branch.empty()) return absl::OkStatus();
      CIAGENT_ASSIGN_OR_RETURN(*tip, AdvertisedTip(remote.get(), branch, url));
      return absl::OkStatus();
    }
    status = GitError(rc, absl::StrCat("fetch ", url), &state);
    if (!IsTransient(status) || attempt == options.max_attempts) break;
    const absl::Duration delay = backoff.Next();
    LogWarning(
        "fetch failed, retrying",
        {{"error", status}, {"attempt", attempt}, {"retry_in_ms", delay}});
    if (!SleepUnlessStopped(delay)) {
      return absl::CancelledError(absl::StrCat("fetch ", url, ": stopped"));
    }
  }
  if (status.code() == absl::StatusCode::kUnavailable) {
    return Annotate(
        status, absl::StrCat("gave up after ", result->attempts, " attempts"));
  }
  return status;
}

// kNotFound unless `oid` is the branch's `tip` or one of its ancestors: a
// job names a commit of its branch, and a warm mirror may hold commits of
// other branches (or of one since deleted).
absl::Status CheckOnBranch(git_repository* repo, const git_oid& tip,
                           const git_oid& oid, absl::string_view describe) {
  if (git_oid_equal(&tip, &oid)) return absl::OkStatus();
  git_odb* odb = nullptr;
  if (int rc = git_repository_odb(&odb, repo); rc != 0) {
    return GitError(rc, absl::StrCat("open the objects for ", describe));
  }
  const bool exists = git_odb_exists(odb, &oid) == 1;
  git_odb_free(odb);
  if (!exists) {
    return absl::NotFoundError(absl::StrCat(describe, ": commit not found"));
  }
  const int rc = git_graph_descendant_of(repo, &tip, &oid);
  if (rc == 1) return absl::OkStatus();
  if (rc < 0) return GitError(rc, absl::StrCat("look up ", describe));
  return absl::NotFoundError(
      absl::StrCat(describe, ": the commit is not on the branch"));
}

absl::StatusOr<git_oid> ParseOid(absl::string_view commit) {
  git_oid oid;
  const std::string hex(commit);
  if (git_oid_fromstr(&oid, hex.c_str()) != 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("commit ", commit, " is not a supported object id"));
  }
  return oid;
}

// Checks out `oid` into the work tree of `repo`, detached. With
// `clean_work_tree`, whatever a previous job left that the commit does not
// have (build output, ignored or untracked files, edits) is removed or
// reset; the index's stat data lets unchanged files cost one lstat each.
absl::Status CheckoutDetached(git_repository* repo, const git_oid& oid,
                              absl::string_view describe,
                              const FetchOptions& options,
                              bool clean_work_tree = false) {
  git_commit* raw_commit = nullptr;
  if (int rc = git_commit_lookup(&raw_commit, repo, &oid); rc != 0) {
    absl::Status status = GitError(rc, absl::StrCat("look up ", describe));
    if (rc == GIT_ENOTFOUND) {
      return absl::NotFoundError(absl::StrCat(describe, " was not found"));
    }
    return status;
  }
  CommitPtr commit(raw_commit);
  if (!clean_work_tree && options.checkout_threads != 1) {
    // An empty work tree: written on several threads (checkout.h).
    const int threads =
        options.checkout_threads > 0 ? options.checkout_threads : UsableCpus();
    CIAGENT_RETURN_IF_ERROR(Annotate(CheckoutFreshTree(repo, oid, threads),
                                     absl::StrCat("check out ", describe)));
  } else {
    git_checkout_options checkout = GIT_CHECKOUT_OPTIONS_INIT;
    checkout.checkout_strategy = GIT_CHECKOUT_FORCE;
    if (clean_work_tree) {
      checkout.checkout_strategy |=
          GIT_CHECKOUT_REMOVE_UNTRACKED | GIT_CHECKOUT_REMOVE_IGNORED;
    }
    if (int rc = git_checkout_tree(
            repo, reinterpret_cast<const git_object*>(commit.get()), &checkout);
        rc != 0) {
      return GitError(rc, absl::StrCat("check out ", describe));
    }
  }
  if (int rc = git_repository_set_head_detached(repo, &oid); rc != 0) {
    return GitError(rc, absl::StrCat("detach HEAD at ", describe));
  }
  return absl::OkStatus();
}

// The line of objects/info/alternates that makes a work tree borrow the
// mirror's objects.
std::string AlternatesLine(const std::string& mirror) {
  return absl::StrCat(fs::absolute(mirror).lexically_normal().string(),
                      "/objects\n");
}

// (Re)initialises the repository of the work tree at `dest` (its files are
// left alone) so that it borrows the mirror's objects and has `url` as
// origin.
absl::StatusOr<RepoPtr> InitBorrowingRepo(const std::string& dest,
                                          const std::string& mirror,
                                          const std::string& url) {
  git_repository* raw = nullptr;
  if (int rc = git_repository_init(&raw, dest.c_str(), 0); rc != 0) {
    return GitError(rc, absl::StrCat("init work tree ", dest));
  }
  RepoPtr repo(raw);
  std::ofstream alternates(fs::path(git_repository_path(repo.get())) /
                           "objects/info/alternates");
  alternates << AlternatesLine(mirror);
  if (!alternates.flush()) {
    return absl::UnavailableError(absl::StrCat("write alternates in ", dest));
  }
  git_remote* origin = nullptr;
  if (git_remote_create(&origin, repo.get(), "origin", url.c_str()) == 0) {
    git_remote_free(origin);
  }
  return repo;
}

// A new work tree at `dest` (emptied first) that borrows the mirror's
// objects.
absl::StatusOr<RepoPtr> InitBorrowingWorkTree(const std::string& dest,
                                              const std::string& mirror,
                                              const std::string& url) {
  CIAGENT_RETURN_IF_ERROR(PrepareEmptyDir(dest));
  return InitBorrowingRepo(dest, mirror, url);
}

// The work tree a previous job left at `dest`, if it is a checkout from
// this same mirror: then only the files that differ need writing. Returns
// nullptr when there is nothing to reuse.
//
// The job may have changed anything in it. Its files are put right by the
// cleaning checkout; of `.git` only three things are kept: HEAD (the
// checkout's baseline), the index (the stat cache that makes unchanged
// files cheap) and the alternates line. Configuration, refs, hooks and any
// objects of its own are deleted, and the repository initialised again, so
// nothing a job wrote there can change how the next job's tree is written
// (a local object would shadow the mirror's, a config could add filters).
absl::StatusOr<RepoPtr> ReopenWorkTree(const std::string& dest,
                                       const std::string& mirror,
                                       const std::string& url) {
  const fs::path git_dir = fs::path(dest) / ".git";
  std::error_code ec;
  if (!fs::is_directory(git_dir, ec) || fs::is_symlink(git_dir, ec)) {
    return RepoPtr();
  }
  std::ifstream alternates_file(git_dir / "objects/info/alternates");
  const std::string alternates(
      (std::istreambuf_iterator<char>(alternates_file)),
      std::istreambuf_iterator<char>());
  if (alternates != AlternatesLine(mirror)) return RepoPtr();
  // Listed first, deleted after: a directory is not changed while it is
  // being read.
  std::vector<fs::path> doomed;
  for (const auto& entry : fs::directory_iterator(git_dir, ec)) {
    const std::string name = entry.path().filename().string();
    if (name == "HEAD" || name == "index") continue;
    if (name != "objects") {
      doomed.push_back(entry.path());
      continue;
    }
    for (const auto& object_entry : fs::directory_iterator(entry.path(), ec)) {
      if (object_entry.path().filename() != "info") {
        doomed.push_back(object_entry.path());
      }
    }
  }
  for (const fs::path& path : doomed) {
    if (ec) break;
    fs::remove_all(path, ec);
  }
  if (ec) {
    return absl::UnavailableError(absl::StrCat(
        "reset the repository of the work tree ", dest, ": ", ec.message()));
  }
  return InitBorrowingRepo(dest, mirror, url);
}

// Checks `oid` out at `dest` from the mirror: by updating the work tree a
// previous job left there when `may_reuse` and there is one, else into an
// emptied directory.
absl::StatusOr<RepoPtr> CheckoutFromMirror(
    const std::string& dest, const std::string& mirror, const std::string& url,
    const git_oid& oid, absl::string_view describe, bool may_reuse,
    const FetchOptions& options, FetchResult* result) {
  if (may_reuse) {
    absl::StatusOr<RepoPtr> previous = ReopenWorkTree(dest, mirror, url);
    absl::Status status = previous.status();
    if (status.ok() && *previous != nullptr) {
      status = CheckoutDetached(previous->get(), oid, describe, options,
                                /*clean_work_tree=*/true);
      if (status.ok()) {
        result->work_tree_reused = true;
        return *std::move(previous);
      }
      // The commit is missing from the mirror: a fresh tree would not have
      // it either, and the old one stays usable for the next job.
      if (status.code() == absl::StatusCode::kNotFound) return status;
    }
    if (!status.ok()) {
      // An index or HEAD the job damaged, a disk error: a fresh checkout
      // costs time, never correctness.
      LogWarning("cannot update the previous work tree; checking out afresh",
                 {{"dir", dest}, {"error", status}});
    }
  }
  CIAGENT_ASSIGN_OR_RETURN(RepoPtr work_tree,
                           InitBorrowingWorkTree(dest, mirror, url));
  CIAGENT_RETURN_IF_ERROR(
      CheckoutDetached(work_tree.get(), oid, describe, options));
  return work_tree;
}

void TouchLastUse(const std::string& mirror) {
  std::ofstream stamp(fs::path(mirror) / std::string(kLastUseStampName),
                      std::ios::trunc);
  stamp << FormatTimestamp(absl::Now()) << "\n";
}

absl::StatusOr<FetchResult> FetchAtDepth(absl::string_view repo_url,
                                         absl::string_view branch,
                                         absl::string_view commit,
                                         absl::string_view dest_dir,
                                         const FetchOptions& options,
                                         int depth);

// Checks out every submodule of the work tree at `dest`, recursively.
absl::Status UpdateSubmodules(git_repository* repo, const std::string& dest,
                              const std::string& parent_url,
                              const FetchOptions& options, int depth,
                              FetchResult* result) {
  std::vector<std::string> names;
  git_submodule_foreach(
      repo,
      [](git_submodule*, const char* name, void* payload) {
        static_cast<std::vector<std::string>*>(payload)->emplace_back(name);
        return 0;
      },
      &names);
  for (const std::string& name : names) {
    git_submodule* raw = nullptr;
    if (int rc = git_submodule_lookup(&raw, repo, name.c_str()); rc != 0) {
      return GitError(rc, absl::StrCat("submodule ", name));
    }
    SubmodulePtr submodule(raw);
    const git_oid* oid = git_submodule_head_id(submodule.get());
    const char* url = git_submodule_url(submodule.get());
    if (oid == nullptr || url == nullptr) continue;  // not in HEAD
    git_buf resolved = GIT_BUF_INIT;
    if (int rc = git_submodule_resolve_url(&resolved, repo, url); rc != 0) {
      return GitError(rc, absl::StrCat("resolve URL of submodule ", name));
    }
    const std::string sub_url(resolved.ptr, resolved.size);
    git_buf_dispose(&resolved);
    FetchOptions sub_options = options;
    // Credentials are for the parent's host only.
    if (SchemeAndHost(sub_url) != SchemeAndHost(parent_url)) {
      sub_options.credentials = {};
    }
    const std::string path = git_submodule_path(submodule.get());
    char hex[GIT_OID_HEXSZ + 1];
    git_oid_tostr(hex, sizeof(hex), oid);
    CIAGENT_ASSIGN_OR_RETURN(
        FetchResult sub,
        FetchAtDepth(sub_url, "", hex, (fs::path(dest) / path).string(),
                     sub_options, depth + 1));
    result->submodules.push_back(path);
    for (const std::string& nested : sub.submodules) {
      result->submodules.push_back(absl::StrCat(path, "/", nested));
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<FetchResult> FetchAtDepth(absl::string_view repo_url,
                                         absl::string_view branch,
                                         absl::string_view commit,
                                         absl::string_view dest_dir,
                                         const FetchOptions& options,
                                         int depth) {
  const absl::Time start = absl::Now();
  if (depth > kMaxSubmoduleDepth) {
    return absl::FailedPreconditionError(
        absl::StrCat("submodules nested deeper than ", kMaxSubmoduleDepth,
                     " at ", repo_url));
  }
  CIAGENT_RETURN_IF_ERROR(ValidateRepoUrl(repo_url, options.allow_file_urls));
  CIAGENT_RETURN_IF_ERROR(ValidateCommit(absl::AsciiStrToLower(commit)));
  if (!branch.empty()) CIAGENT_RETURN_IF_ERROR(ValidateBranchName(branch));
  CIAGENT_RETURN_IF_ERROR(InitLibGit2(options.ca_file));
  SetSocketTimeout(options.io_timeout);
  CIAGENT_ASSIGN_OR_RETURN(const git_oid oid, ParseOid(commit));

  const std::string url(repo_url);
  const std::string dest(dest_dir);
  const std::string refspec =
      branch.empty()
          ? "+refs/heads/*:refs/heads/*"
          : absl::StrCat("+refs/heads/", branch, ":refs/heads/", branch);
  const std::string describe =
      branch.empty()
          ? absl::StrCat("commit ", commit, " of ", url)
          : absl::StrCat("commit ", commit, " on branch ", branch, " of ", url);
  FetchResult result;
  result.commit = absl::AsciiStrToLower(commit);
  RepoPtr work_tree;

  if (options.cache_dir.empty()) {
    CIAGENT_RETURN_IF_ERROR(PrepareEmptyDir(dest));
    CIAGENT_ASSIGN_OR_RETURN(work_tree, InitRepo(dest, /*bare=*/false));
    const absl::Time transfer_start = absl::Now();
    git_oid tip;
    CIAGENT_RETURN_IF_ERROR(FetchWithRetries(work_tree.get(), url, refspec,
                                             branch, &tip, options, &result));
    result.transfer_duration = absl::Now() - transfer_start;
    if (!branch.empty()) {
      CIAGENT_RETURN_IF_ERROR(
          CheckOnBranch(work_tree.get(), tip, oid, describe));
    }
    const absl::Time checkout_start = absl::Now();
    CIAGENT_RETURN_IF_ERROR(
        CheckoutDetached(work_tree.get(), oid, describe, options));
    result.checkout_duration = absl::Now() - checkout_start;
  } else {
    const std::string mirror = MirrorPath(options.cache_dir, url);
    result.mirror_path = mirror;
    std::error_code ec;
    fs::create_directories(fs::path(mirror).parent_path(), ec);
    if (ec) {
      return absl::UnavailableError(absl::StrCat("create cache directory for ",
                                                 mirror, ": ", ec.message()));
    }
    CIAGENT_ASSIGN_OR_RETURN(
        FileLock lock,
        FileLock::Acquire(mirror + ".lock", options.lock_timeout));
    result.mirror_was_warm = fs::exists(mirror);
    // A corrupt mirror gets one fresh start; corruption twice is reported.
    for (int round = 0;; ++round) {
      absl::Status status = [&]() -> absl::Status {
        CIAGENT_ASSIGN_OR_RETURN(RepoPtr repo, OpenOrInitMirror(mirror));
        const absl::Time transfer_start = absl::Now();
        git_oid tip;
        CIAGENT_RETURN_IF_ERROR(FetchWithRetries(
            repo.get(), url, refspec, branch, &tip, options, &result));
        result.transfer_duration = absl::Now() - transfer_start;
        if (!branch.empty()) {
          CIAGENT_RETURN_IF_ERROR(
              CheckOnBranch(repo.get(), tip, oid, describe));
        }
        const absl::Time checkout_start = absl::Now();
        CIAGENT_ASSIGN_OR_RETURN(
            work_tree,
            CheckoutFromMirror(dest, mirror, url, oid, describe,
                               /*may_reuse=*/round == 0, options, &result));
        result.checkout_duration = absl::Now() - checkout_start;
        return absl::OkStatus();
      }();
      if (status.code() != absl::StatusCode::kDataLoss || round > 0) {
        CIAGENT_RETURN_IF_ERROR(status);
        break;
      }
      LogWarning("git mirror is corrupt; cloning it again",
                 {{"mirror", mirror}, {"error", status}});
      work_tree.reset();
      fs::remove_all(mirror, ec);
      result.mirror_recovered = true;
    }
    TouchLastUse(mirror);
  }
  if (options.submodules) {
    CIAGENT_RETURN_IF_ERROR(
        UpdateSubmodules(work_tree.get(), dest, url, options, depth, &result));
  }
  result.duration = absl::Now() - start;
  return result;
}

}  // namespace

absl::StatusOr<GitCredentials> GitCredentialsFromEnv() {
  GitCredentials credentials;
  if (const char* user = std::getenv("GIT_USERNAME"); user != nullptr) {
    credentials.username = user;
  }
  for (const char* name : {"GIT_TOKEN", "GITEA_TOKEN"}) {
    CIAGENT_ASSIGN_OR_RETURN(std::optional<std::string> token,
                             ReadSecretFromEnv(name));
    if (token.has_value()) {
      credentials.token = *std::move(token);
      break;
    }
  }
  return credentials;
}

absl::StatusOr<FetchResult> FetchCommit(absl::string_view repo_url,
                                        absl::string_view branch,
                                        absl::string_view commit,
                                        absl::string_view dest_dir,
                                        const FetchOptions& options) {
  return FetchAtDepth(repo_url, branch, commit, dest_dir, options, 0);
}

std::string NormalizeRepoUrl(absl::string_view url) {
  const auto [scheme, host] = SchemeAndHost(url);
  if (scheme.empty()) return std::string(url);
  const size_t sep = url.find("://");
  absl::string_view rest = url.substr(sep + 3);
  const size_t slash = rest.find('/');
  absl::string_view path =
      slash == absl::string_view::npos ? "" : rest.substr(slash);
  while (absl::ConsumeSuffix(&path, "/")) {
  }
  absl::ConsumeSuffix(&path, ".git");
  return absl::StrCat(scheme, "://", host, path);
}

std::string MirrorPath(absl::string_view cache_dir, absl::string_view url) {
  return (fs::path(std::string(cache_dir)) / "git" /
          absl::StrCat(Sha256Hex(NormalizeRepoUrl(url)), ".git"))
      .string();
}

}  // namespace ciagent
