// Module `cache` (docs/architecture.md, "Layers") owns the cache volume: build
// cache keys and locked target dirs, sccache, and the pruner's policy and
// walk. It must not know about the queue and the pipeline's steps: a cache
// entry is a directory with a key and a last-use stamp.
//
// Build cache: cargo target directories kept on a shared cache volume, one
// per cache key, so that a fresh checkout of a project finds its
// dependencies already compiled.
//
// Cache root layout (docs/caching.md):
//   <cache>/cargo-home/                shared CARGO_HOME (cargo locks it)
//   <cache>/target/<key>/              target dir of one exact key
//   <cache>/target/<key>.lock          flock, held for the whole build
//   <cache>/target/<key>/ciagent-last-use   stamp: RFC 3339 time of the
//                                      last use, written on acquire and release
//   <cache>/target/<key>/ciagent-cache-key  "exact <hex>\nfallback <hex>\n"
//   <cache>/target/<key>.incoming/     a copy being made, guarded by
//                                      <key>.lock like the dir itself
//
// The key. ComputeCacheKey hashes (SHA-256) what decides whether compiled
// dependencies can be reused: the `rustc -vV` text of the toolchain, the
// target triple, the profile set, the build-relevant environment
// (IsCacheRelevantEnv), the external packages of Cargo.lock (entries with a
// `source`: name, version, source, checksum; sorted), the manifests'
// dependency-relevant sections (NormalizeManifest) and the key's format
// (kCacheKeyFormat). Both files are read with a TOML parser (toml++), so
// every spelling of the same data gives the same key. The fallback key hashes
// the same inputs minus the lockfile and the manifests: a project whose
// dependencies changed starts from the newest target dir built with the
// same toolchain, target, profile set and environment, and cargo rebuilds
// only what changed.
//
// Acquiring. AcquireTargetDir locks <key>.lock (waiting up to
// `lock_timeout` while another agent builds the same key), then uses
// <key>/ when it exists (CacheMatch::kExact); else copies the newest dir
// whose fallback key matches and whose lock is free right now
// (kFallback); else creates an empty dir (kNone). The copy is a plain
// recursive copy (no hard links: a build must never write into another
// key's files) made in <key>.incoming/ and renamed into place, so a crash
// mid-copy never leaves a half-filled key dir. The lock is held until the
// CachedTargetDir is destroyed.
//
// Example:
//   BuildCacheOptions options;
//   options.cache_dir = "/cache";
//   options.source_dir = "/ci/job/src";
//   options.path = getenv("PATH");
//   CIAGENT_ASSIGN_OR_RETURN(CachedTargetDir dir, AcquireTargetDir(options));
//   pipeline.target_dir = dir.path();
//   ... build ...
//   CIAGENT_RETURN_IF_ERROR(dir.DropWorkspaceArtifacts());  // optional
//   // ~CachedTargetDir: touches the stamp, releases the lock
//
// Errors (AcquireTargetDir): kUnavailable when the key's lock stays held
// past `lock_timeout` (build uncached, or retry later) or the cache volume
// fails (full disk, I/O error); kInvalidArgument for missing options;
// kFailedPrecondition when rustc cannot be run or the cache root cannot be
// created (fix the agent's setup).
//
// Thread-safety: the pure functions are thread-safe. A CachedTargetDir is
// movable, not copyable, and not thread-safe; the lock it holds excludes
// other processes and other CachedTargetDir objects of the same process.
#ifndef CIAGENT_CACHE_BUILD_CACHE_H_
#define CIAGENT_CACHE_BUILD_CACHE_H_

#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "ciagent/base/file_lock.h"

namespace ciagent {

// Names of the files the cache keeps beside cargo's.
inline constexpr char kCacheStampFile[] = "ciagent-last-use";
inline constexpr char kCacheKeyFile[] = "ciagent-cache-key";

// Everything the key is computed from, as values.
struct CacheKeyInputs {
  // Output of `rustc -vV` (version, commit hash, host, LLVM version).
  std::string rustc_version;
  // Target triple; empty: the host of `rustc_version`.
  std::string target_triple;
  // The profiles built into the dir, e.g. "dev+release" for the pipeline.
  std::string profile;
  // The build's environment; only IsCacheRelevantEnv names count.
  std::vector<std::pair<std::string, std::string>> env;
  // Contents of Cargo.lock; empty when there is none.
  std::string cargo_lock;
  // Manifests: (path relative to the source dir, contents), any order.
  std::vector<std::pair<std::string, std::string>> manifests;
};

struct CacheKey {
  std::string exact;     // lowercase hex SHA-256, 64 characters
  std::string fallback;  // likewise
};

// The form of the exact key's inputs; hashed into the exact key, so a
// change of form never reads an old entry as a match. 2: manifests and
// Cargo.lock read with toml++, the manifest normalized to sorted
// `path = value` lines (1: a line parser's compacted text). The fallback
// key's inputs did not change with it: old dirs stay valid fallback sources.
inline constexpr int kCacheKeyFormat = 2;

// One `[[package]]` entry of Cargo.lock.
struct LockedPackage {
  std::string name;
  std::string version;
  std::string source;    // empty for workspace (path) packages
  std::string checksum;  // empty for git and path packages

  friend bool operator==(const LockedPackage&, const LockedPackage&) = default;
};

// The `[[package]]` entries of a Cargo.lock, in file order, each with its
// `name`, `version`, `source` and `checksum` strings (empty when absent);
// other keys and tables are ignored. An empty text has no entries.
// kInvalidArgument when the text is not valid TOML.
absl::StatusOr<std::vector<LockedPackage>> ParseCargoLock(
    absl::string_view cargo_lock);

// True for variables that change what rustc or build scripts produce:
// RUSTFLAGS, RUSTDOCFLAGS, CARGO_ENCODED_RUSTFLAGS,
// CARGO_ENCODED_RUSTDOCFLAGS, RUSTC_BOOTSTRAP, CARGO_BUILD_*,
// CARGO_PROFILE_*, CARGO_TARGET_<triple>_* (linker, rustflags), and CC, CXX,
// CFLAGS, CXXFLAGS, LDFLAGS, AR (build scripts compile C with them). Not:
// CARGO_TARGET_DIR, CARGO_BUILD_TARGET_DIR, CARGO_BUILD_JOBS (where and how
// fast, not what), RUSTC_WRAPPER (sccache does not change the output).
bool IsCacheRelevantEnv(absl::string_view name);

// The dependency-relevant content of a Cargo.toml, parsed as TOML:
// [dependencies], [dev-dependencies], [build-dependencies] (and their
// snake_case spellings), their [target.<name>.*] forms, [features],
// [patch.*], [replace], [profile.*], [workspace.dependencies] and the
// `resolver` of [package] and [workspace]. Each leaf value is one line
// `<dotted key path> = <value>`, keys sorted, bare keys bare and others
// JSON-quoted, strings JSON-quoted, arrays kept in order, tables inside
// arrays inline with sorted keys:
//   dependencies.serde.features = ["derive"]
//   dependencies.serde.version = "1"
//   target."cfg(unix)".dependencies.libc = "0.2"
// So `[dependencies.serde]`, `dependencies.serde.version = ...` and
// `serde = { version = ... }` read alike, and comments, whitespace, line
// breaks inside arrays, quoting style and key order do not count; edits
// elsewhere (package metadata, a workspace crate's version) leave it
// unchanged. Text that is not valid TOML gives "invalid TOML\n" and the
// text itself (cargo refuses it; the key still follows every byte).
std::string NormalizeManifest(absl::string_view manifest);

// The `[package] name`s of the manifests: the workspace's own crates,
// sorted, each once. Manifests that are not valid TOML are skipped.
std::vector<std::string> WorkspacePackageNames(
    const std::vector<std::pair<std::string, std::string>>& manifests);

CacheKey ComputeCacheKey(const CacheKeyInputs& inputs);

enum class CacheMatch {
  kExact,     // the key's own dir was there
  kFallback,  // copied from the newest dir with the same fallback key
  kNone,      // started empty (or built uncached)
};

// "exact", "fallback", "none".
absl::string_view CacheMatchName(CacheMatch match);

struct BuildCacheOptions {
  // The cache root. Required.
  std::string cache_dir;
  // The checkout: Cargo.toml at its root. Required.
  std::string source_dir;
  // Profile set, as in CacheKeyInputs.
  std::string profile = "dev+release";
  // Empty: the host triple.
  std::string target_triple;
  // The build's environment (key inputs; PATH, HOME and RUSTUP_HOME are also
  // used to run `rustc -vV` in source_dir, so a rust-toolchain file counts).
  std::vector<std::pair<std::string, std::string>> env;
  // When set, used instead of running `rustc -vV` (tests).
  std::string rustc_version;
  // How long to wait while another agent builds the same key.
  absl::Duration lock_timeout = absl::Minutes(10);
};

// A target dir from the cache, locked for the caller's build.
class CachedTargetDir {
 public:
  CachedTargetDir(CachedTargetDir&&) noexcept = default;
  CachedTargetDir& operator=(CachedTargetDir&&) noexcept = default;
  // Touches the last-use stamp; the lock is released.
  ~CachedTargetDir();

  // <cache>/target/<key.exact>.
  const std::string& path() const { return path_; }
  const CacheKey& key() const { return key_; }
  CacheMatch match() const { return match_; }
  // The dir copied from, for kFallback; else empty.
  const std::string& copied_from() const { return copied_from_; }

  // Deletes the workspace crates' own artifacts (every profile dir's
  // top-level outputs, deps/, build/ and .fingerprint/ entries named
  // `<crate>-<16 hex>` or `lib<crate>...`, for the crates named in the
  // workspace's manifests) so the cached dir holds only dependencies.
  // Dependencies stay fresh: their fingerprints do not refer to workspace
  // crates. Workspace crates rebuild after a fresh checkout anyway.
  // Returns how many entries were deleted; kUnavailable on I/O errors.
  absl::StatusOr<int64_t> DropWorkspaceArtifacts();

 private:
  friend absl::StatusOr<CachedTargetDir> AcquireTargetDir(
      const BuildCacheOptions& options);
  CachedTargetDir(FileLock lock, std::string path, CacheKey key,
                  CacheMatch match, std::string copied_from,
                  std::vector<std::string> workspace_crates);

  FileLock lock_;
  std::string path_;
  CacheKey key_;
  CacheMatch match_ = CacheMatch::kNone;
  std::string copied_from_;
  std::vector<std::string> workspace_crates_;
};

// Key inputs of a checkout: `rustc -vV` (run in source_dir unless
// options.rustc_version is set), Cargo.lock and every Cargo.toml under
// source_dir (not under target/ or dot-dirs; at most 1000).
absl::StatusOr<CacheKeyInputs> ReadCacheKeyInputs(
    const BuildCacheOptions& options);

absl::StatusOr<CachedTargetDir> AcquireTargetDir(
    const BuildCacheOptions& options);

}  // namespace ciagent

#endif  // CIAGENT_CACHE_BUILD_CACHE_H_
