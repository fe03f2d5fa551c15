// Module `git` (docs/architecture.md, "Layers") owns the source: the job's
// exact commit onto disk over HTTP(S) with credentials, the mirror cache, pack
// indexing and checkout. It must not know about the queue, registries and
// cargo; a fetch is a function of a URL, a commit and a directory.
//
// Source fetch: the exact commit of a job onto disk, over HTTP(S) with
// credentials, through a persistent mirror cache (libgit2).
//
// With a cache directory, each repository has a bare mirror at
//   <cache_dir>/git/<sha256 of the normalized URL>.git
// which is fetched incrementally (only the job's branch), then the work tree
// is checked out from it. The work tree borrows the mirror's objects
// (objects/info/alternates) instead of copying them. When the destination
// still holds the work tree of an earlier fetch from the same mirror (an
// agent that reuses its work directory, as Buildkite agents keep theirs),
// that tree is updated in place: files that differ from the commit are
// rewritten, files the commit lacks (build output, untracked and ignored
// files) deleted, and unchanged files cost one lstat each. Otherwise the
// destination is emptied and the whole tree written. Without a cache
// directory the work tree's own repository is fetched into directly, and
// the destination is always emptied first.
//
// Safety on a shared volume: a mirror is used under an exclusive file lock
// (<mirror>.lock, waiting up to lock_timeout), so concurrent agents fetch the
// same repository one after another. A mirror that turns out corrupt (broken
// refs, truncated packs) is wiped and cloned again, once. Every use touches
// <mirror>/ciagent-last-use for the cache pruner.
//
// Credentials are handed to libgit2 through its credential callback only —
// never in a URL, argv, log line or status — and the callback gives up after
// the first rejection, so a wrong token fails fast.
//
// Errors (the queue requeues transient ones and fails the job on the rest):
//   kUnavailable       network trouble (refused, reset, timeout, HTTP 5xx)
//                      that persisted through max_attempts; or the mirror
//                      lock stayed busy.
//   kUnauthenticated   credentials missing or rejected (HTTP 401).
//   kPermissionDenied  HTTP 403.
//   kNotFound          the repository (HTTP 404), or the commit after
//                      fetching the branch.
//   kFailedPrecondition TLS certificate not trusted (see ca_file).
//   kInvalidArgument   a URL this module refuses (credentials, scheme).
//   kCancelled         should_abort() returned true.
//   kDataLoss          the mirror was still corrupt after one re-clone.
//
// Example:
//   FetchOptions options;
//   options.cache_dir = "/cache";
//   CIAGENT_ASSIGN_OR_RETURN(options.credentials, GitCredentialsFromEnv());
//   CIAGENT_ASSIGN_OR_RETURN(FetchResult result,
//                            FetchJobSource(job, workdir + "/src", options));
//
// Thread-safety: FetchCommit may run on several threads at once (each with
// its own destination); the CA file is process-wide in libgit2, so all
// concurrent fetches must use the same ca_file.
#ifndef CIAGENT_GIT_FETCH_H_
#define CIAGENT_GIT_FETCH_H_

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "ciagent/base/backoff.h"
#include "ciagent/job/job.h"

namespace ciagent {

struct GitCredentials {
  std::string username;  // may be empty: "git" is sent then
  std::string token;     // secret; empty means anonymous
};

// Reads GIT_USERNAME and the token from GIT_TOKEN / GIT_TOKEN_FILE, else
// GITEA_TOKEN / GITEA_TOKEN_FILE. The token is registered for log masking.
absl::StatusOr<GitCredentials> GitCredentialsFromEnv();

struct FetchProgress {
  int64_t received_objects = 0;
  int64_t total_objects = 0;
  int64_t indexed_objects = 0;
  int64_t received_bytes = 0;
  absl::Duration elapsed;
  double bytes_per_second = 0;
};

struct FetchOptions {
  // Root of the cache volume; mirrors live in <cache_dir>/git. Empty: no
  // mirror, fetch straight into the destination.
  std::string cache_dir;
  GitCredentials credentials;
  // PEM bundle of trusted CAs for HTTPS, which replaces the system store;
  // empty: the system store (SSL_CERT_FILE and SSL_CERT_DIR when set, else
  // OpenSSL's default paths). Verification is OpenSSL's, as git's and
  // curl's: DNS names and IP addresses in subjectAltName, TLS 1.2 or newer.
  std::string ca_file;
  // A connection attempt, or a read or write on a connection, that makes
  // no progress for this long fails as a network error (retried, then
  // kUnavailable): libgit2 1.5 has no timeouts of its own. Process-wide,
  // like ca_file: concurrent fetches must agree. Zero: no timeout.
  absl::Duration io_timeout = absl::Seconds(120);
  // Attempts for transient network failures, with backoff between them.
  int max_attempts = 3;
  BackoffOptions backoff = {.initial = absl::Milliseconds(500),
                            .max = absl::Seconds(5)};
  absl::Duration lock_timeout = absl::Minutes(10);
  // Progress is reported at most this often (and once at the end).
  absl::Duration progress_interval = absl::Seconds(2);
  std::function<void(const FetchProgress&)> on_progress;
  // Polled during the transfer; returning true aborts with kCancelled.
  std::function<bool()> should_abort;
  // Accept file:// URLs (tests and local demos).
  bool allow_file_urls = false;
  // Threads indexing the pack of a clone (a mirror or repository with no
  // objects yet); 0: one per usable CPU (base/cpus.h); 1: libgit2's own
  // indexer.
  int index_threads = 0;
  // Threads writing a work tree checked out afresh (an empty destination;
  // see checkout.h); 0: one per usable CPU; 1: libgit2's own checkout.
  // Updating a previous job's tree in place is libgit2's either way.
  int checkout_threads = 0;
  // Initialise and update submodules recursively.
  bool submodules = true;
};

struct FetchResult {
  std::string commit;       // checked out, detached
  std::string mirror_path;  // empty without a cache
  bool mirror_was_warm = false;
  bool mirror_recovered = false;  // a corrupt mirror was re-cloned
  // The previous job's work tree at the destination was updated in place
  // (only changed files written) instead of a full checkout.
  bool work_tree_reused = false;
  int attempts = 0;
  FetchProgress transfer;               // the last transfer's totals
  std::vector<std::string> submodules;  // paths checked out, recursively
  absl::Duration duration;
  // Phases of the top-level repository (submodules not included): the
  // fetch, with the indexing of the pack it received, and the checkout.
  absl::Duration transfer_duration;
  absl::Duration checkout_duration;
};

// Fetches `branch` of `repo_url` (all branches when empty, as for
// submodules) and checks out `commit` into `dest_dir`: created; updated in
// place when it holds a checkout from the same mirror; else emptied. The
// caller owns `dest_dir`: no one else may use it during the call.
absl::StatusOr<FetchResult> FetchCommit(absl::string_view repo_url,
                                        absl::string_view branch,
                                        absl::string_view commit,
                                        absl::string_view dest_dir,
                                        const FetchOptions& options);

inline absl::StatusOr<FetchResult> FetchJobSource(const Job& job,
                                                  absl::string_view dest_dir,
                                                  const FetchOptions& options) {
  return FetchCommit(job.repo, job.branch, job.commit, dest_dir, options);
}

// The mirror cache key of a URL: scheme and host lowercased, default port,
// trailing slashes and a trailing ".git" removed.
std::string NormalizeRepoUrl(absl::string_view url);

// <cache_dir>/git/<hex sha256 of NormalizeRepoUrl(url)>.git
std::string MirrorPath(absl::string_view cache_dir, absl::string_view url);

// Name of the last-use stamp file inside a mirror.
inline constexpr absl::string_view kLastUseStampName = "ciagent-last-use";

}  // namespace ciagent

#endif  // CIAGENT_GIT_FETCH_H_
