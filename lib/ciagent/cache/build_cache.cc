#include "ciagent/cache/build_cache.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <optional>
#include <sstream>
#include <string_view>
#include <system_error>
#include <toml++/toml.h>

#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "ciagent/base/atomic_file.h"
#include "ciagent/base/json_writer.h"
#include "ciagent/base/log.h"
#include "ciagent/base/process_runner.h"
#include "ciagent/base/sha256.h"
#include "ciagent/base/status_macros.h"
#include "ciagent/cache/prune.h"

namespace ciagent {
namespace {

namespace fs = std::filesystem;

constexpr size_t kMaxManifests = 1000;

// Appends one length-prefixed field, so that no two input sets hash alike
// by moving bytes from one field into the next.
void AddField(std::string* out, absl::string_view name,
              absl::string_view value) {
  absl::StrAppend(out, name, " ", value.size(), "\n", value, "\n");
}

// toml++ speaks std::string_view; absl's is a distinct type here.
std::string_view StdView(absl::string_view s) { return {s.data(), s.size()}; }

// The parsed document, or nullopt when `text` is not valid TOML. toml++
// reports errors by exception; none leaves this file.
std::optional<toml::table> ParseToml(absl::string_view text) {
  try {
    return toml::parse(StdView(text));
  } catch (const toml::parse_error&) {
    return std::nullopt;
  }
}

// A key as it appears in the normalized form: bare when TOML allows it,
// else JSON-quoted.
std::string KeyText(std::string_view key) {
  const bool bare = !key.empty() && std::all_of(key.begin(), key.end(), [](char c) {
    return absl::ascii_isalnum(static_cast<unsigned char>(c)) || c == '_' ||
           c == '-';
  });
  return bare ? std::string(key) : JsonQuote(absl::string_view(key.data(), key.size()));
}

template <typename T>
std::string Streamed(const T& value) {
  std::ostringstream out;
  out << value;
  return out.str();
}

// One value in one canonical spelling: strings JSON-quoted, floats with
// every digit, arrays in their order, tables inline with sorted keys.
std::string ValueText(const toml::node& node) {
  switch (node.type()) {
    case toml::node_type::string: {
      const std::string& text = node.as_string()->get();
      return JsonQuote(text);
    }
    case toml::node_type::integer:
      return absl::StrCat(node.as_integer()->get());
    case toml::node_type::floating_point:
      return absl::StrFormat("%.17g", node.as_floating_point()->get());
    case toml::node_type::boolean:
      return node.as_boolean()->get() ? "true" : "false";
    case toml::node_type::date:
      return Streamed(*node.as_date());
    case toml::node_type::time:
      return Streamed(*node.as_time());
    case toml::node_type::date_time:
      return Streamed(*node.as_date_time());
    case toml::node_type::array: {
      std::vector<std::string> items;
      for (const toml::node& item : *node.as_array()) {
        items.push_back(ValueText(item));
      }
      return absl::StrCat("[", absl::StrJoin(items, ","), "]");
    }
    case toml::node_type::table: {
      // toml++ keeps a table's keys sorted.
      std::vector<std::string> items;
      for (const auto& [key, value] : *node.as_table()) {
        items.push_back(absl::StrCat(KeyText(key.str()), "=", ValueText(value)));
      }
      return absl::StrCat("{", absl::StrJoin(items, ","), "}");
    }
    default:
      return "?";
  }
}

// One `<path> = <value>` line per leaf under `node`, keys sorted. A table,
// whether written as [a.b], a.b = ... or a = { b = ... }, is a step of the
// path, so every spelling of the same data gives the same lines.
void AppendFlattened(const toml::node& node, const std::string& path,
                     std::string* out) {
  const toml::table* table = node.as_table();
  if (table == nullptr || table->empty()) {
    absl::StrAppend(out, path, " = ", ValueText(node), "\n");
    return;
  }
  for (const auto& [key, value] : *table) {
    AppendFlattened(value, absl::StrCat(path, ".", KeyText(key.str())), out);
  }
}

constexpr std::string_view kDependencyKinds[] = {
    "dependencies", "dev-dependencies", "dev_dependencies",
    "build-dependencies", "build_dependencies"};

// Top-level tables that decide how dependencies are built.
constexpr std::string_view kRelevantTopLevel[] = {
    "dependencies", "dev-dependencies", "dev_dependencies",
    "build-dependencies", "build_dependencies", "features", "patch",
    "replace", "profile"};

const toml::table* Subtable(const toml::table* table, std::string_view key) {
  if (table == nullptr) return nullptr;
  const toml::node* node = table->get(key);
  return node != nullptr ? node->as_table() : nullptr;
}

std::string HostTriple(absl::string_view rustc_version) {
  for (absl::string_view line : absl::StrSplit(rustc_version, '\n')) {
    if (absl::ConsumePrefix(&line, "host:")) {
      return std::string(absl::StripAsciiWhitespace(line));
    }
  }
  return "";
}

bool IsDirectory(const std::string& path) {
  struct stat st;
  return lstat(path.c_str(), &st) == 0 && S_ISDIR(st.st_mode);
}

std::string ReadFileOrEmpty(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return "";
  std::stringstream contents;
  contents << in.rdbuf();
  return contents.str();
}

absl::Status Unavailable(absl::string_view what, const std::error_code& ec) {
  return absl::UnavailableError(absl::StrCat(what, ": ", ec.message()));
}

// The entries of `dir` (not following symlinks), without throwing.
absl::StatusOr<std::vector<fs::path>> ListDir(const fs::path& dir) {
  std::error_code ec;
  std::vector<fs::path> entries;
  fs::directory_iterator it(dir, ec), end;
  for (; !ec && it != end; it.increment(ec)) entries.push_back(it->path());
  if (ec) return Unavailable(absl::StrCat("read ", dir.string()), ec);
  return entries;
}

// A directory, not a symlink to one.
bool IsRealDir(const fs::path& path) { return IsDirectory(path.string()); }

// Collects the Cargo.toml files under `dir` (relative to `root`), skipping
// target/ and dot-dirs (.git, .cargo).
void FindManifests(const std::string& root, const std::string& relative,
                   std::vector<std::pair<std::string, std::string>>* out) {
  const std::string dir = relative.empty() ? root : root + "/" + relative;
  DIR* d = opendir(dir.c_str());
  if (d == nullptr) return;
  std::vector<std::string> subdirs;
  while (dirent* entry = readdir(d)) {
    const std::string name = entry->d_name;
    if (name.empty() || name[0] == '.') continue;
    const std::string rel = relative.empty() ? name : relative + "/" + name;
    if (name == "Cargo.toml" && out->size() < kMaxManifests) {
      out->emplace_back(rel, ReadFileOrEmpty(root + "/" + rel));
    } else if (name != "target" && IsDirectory(root + "/" + rel)) {
      subdirs.push_back(rel);
    }
  }
  closedir(d);
  for (const std::string& sub : subdirs) {
    if (out->size() >= kMaxManifests) return;
    FindManifests(root, sub, out);
  }
}

// Writes the last-use stamp: the time as RFC 3339 text (what the pruner
// reads), and so also its mtime.
void TouchStamp(const std::string& dir) {
  const absl::Status written = TouchLastUseStamp(dir);
  if (!written.ok()) {
    LogWarning("cache stamp not touched", {{"path", dir}, {"error", written}});
  }
}

// A recursive copy that keeps modes, symlinks and modification times (cargo
// compares some of them), with no hard links into `from`.
absl::Status CopyTree(const fs::path& from, const fs::path& to) {
  std::error_code ec;
  fs::create_directories(to, ec);
  if (ec) return Unavailable(absl::StrCat("create ", to.string()), ec);
  fs::recursive_directory_iterator it(from, ec), end;
  if (ec) return Unavailable(absl::StrCat("read ", from.string()), ec);
  for (; !ec && it != end; it.increment(ec)) {
    const fs::path source = it->path();
    const fs::path dest = to / source.lexically_relative(from);
    const fs::file_status status = it->symlink_status(ec);
    if (ec) return Unavailable(absl::StrCat("stat ", source.string()), ec);
    if (fs::is_symlink(status)) {
      fs::copy_symlink(source, dest, ec);
    } else if (fs::is_directory(status)) {
      fs::create_directory(dest, ec);
    } else if (fs::is_regular_file(status)) {
      fs::copy_file(source, dest, fs::copy_options::overwrite_existing, ec);
      if (!ec) {
        const fs::file_time_type mtime = fs::last_write_time(source, ec);
        if (!ec) fs::last_write_time(dest, mtime, ec);
      }
    }
    if (ec) return Unavailable(absl::StrCat("copy ", source.string()), ec);
  }
  if (ec) return Unavailable(absl::StrCat("read ", from.string()), ec);
  return absl::OkStatus();
}

// "<16 lowercase hex>" then nothing or ".<extension...>".
bool IsHashSuffix(absl::string_view rest) {
  if (rest.size() < 16) return false;
  for (char c : rest.substr(0, 16)) {
    if (!absl::ascii_isdigit(c) && (c < 'a' || c > 'f')) return false;
  }
  return rest.size() == 16 || rest[16] == '.';
}

// An entry of deps/, build/, .fingerprint/ or examples/ that belongs to
// crate `name`: `name-<hash>[.ext]` or `libname-<hash>[.ext]`.
bool IsHashedEntryOf(absl::string_view entry, absl::string_view name) {
  for (absl::string_view candidate : {entry, absl::StripPrefix(entry, "lib")}) {
    if (absl::ConsumePrefix(&candidate, name) &&
        absl::ConsumePrefix(&candidate, "-") && IsHashSuffix(candidate)) {
      return true;
    }
  }
  return false;
}

// A profile dir's top-level output of crate `name`: `name`, `name.d`,
// `libname.rlib`, `libname.d`, `libname.so`, ...
bool IsTopLevelOutputOf(absl::string_view entry, absl::string_view name) {
  const absl::string_view stem = entry.substr(0, entry.find('.'));
  return stem == name || absl::StripPrefix(stem, "lib") == name;
}

constexpr absl::string_view kCargoSubdirs[] = {
    "deps", "build", ".fingerprint", "examples", "incremental", "nextest"};

}  // namespace

absl::StatusOr<std::vector<LockedPackage>> ParseCargoLock(
    absl::string_view cargo_lock) {
  std::optional<toml::table> document = ParseToml(cargo_lock);
  if (!document.has_value()) {
    return absl::InvalidArgumentError("Cargo.lock: not valid TOML");
  }
  std::vector<LockedPackage> packages;
  const toml::array* entries = nullptr;
  if (const toml::node* node = document->get("package")) {
    entries = node->as_array();
  }
  if (entries == nullptr) return packages;
  for (const toml::node& entry : *entries) {
    const toml::table* table = entry.as_table();
    if (table == nullptr) continue;
    LockedPackage& package = packages.emplace_back();
    for (auto [key, field] :
         {std::pair{"name", &package.name}, std::pair{"version", &package.version},
          std::pair{"source", &package.source},
          std::pair{"checksum", &package.checksum}}) {
      if (const toml::node* value = table->get(key); value && value->is_string()) {
        *field = value->as_string()->get();
      }
    }
  }
  return packages;
}

bool IsCacheRelevantEnv(absl::string_view name) {
  for (absl::string_view exact :
       {"RUSTFLAGS", "RUSTDOCFLAGS", "CARGO_ENCODED_RUSTFLAGS",
        "CARGO_ENCODED_RUSTDOCFLAGS", "RUSTC_BOOTSTRAP", "CC", "CXX", "CFLAGS",
        "CXXFLAGS", "LDFLAGS", "AR"}) {
    if (name == exact) return true;
  }
  // Where the output goes and how many jobs build it do not change it.
  if (name == "CARGO_TARGET_DIR" || name == "CARGO_BUILD_TARGET_DIR" ||
      name == "CARGO_BUILD_JOBS") {
    return false;
  }
  for (absl::string_view prefix :
       {"CARGO_BUILD_", "CARGO_PROFILE_", "CARGO_TARGET_"}) {
    if (absl::StartsWith(name, prefix)) return true;
  }
  return false;
}

std::string NormalizeManifest(absl::string_view manifest) {
  std::optional<toml::table> document = ParseToml(manifest);
  // Cargo refuses such a manifest; its bytes keep the key exact.
  if (!document.has_value()) return absl::StrCat("invalid TOML\n", manifest);
  std::string out;
  for (std::string_view key : kRelevantTopLevel) {
    if (const toml::node* node = document->get(key)) {
      AppendFlattened(*node, KeyText(key), &out);
    }
  }
  for (const char* owner : {"package", "workspace"}) {
    if (const toml::table* table = Subtable(&*document, owner)) {
      if (const toml::node* resolver = table->get("resolver")) {
        AppendFlattened(*resolver, absl::StrCat(owner, ".resolver"), &out);
      }
    }
  }
  if (const toml::table* workspace = Subtable(&*document, "workspace")) {
    if (const toml::node* node = workspace->get("dependencies")) {
      AppendFlattened(*node, "workspace.dependencies", &out);
    }
  }
  // [target.'cfg(unix)'.dependencies] and the like; a target's other keys
  // (linker, runner) live in .cargo/config, not here.
  if (const toml::table* targets = Subtable(&*document, "target")) {
    for (const auto& [name, node] : *targets) {
      const toml::table* target = node.as_table();
      if (target == nullptr) continue;
      for (std::string_view kind : kDependencyKinds) {
        if (const toml::node* deps = target->get(kind)) {
          AppendFlattened(*deps,
                          absl::StrCat("target.", KeyText(name.str()), ".",
                                       KeyText(kind)),
                          &out);
        }
      }
    }
  }
  return out;
}

std::vector<std::string> WorkspacePackageNames(
    const std::vector<std::pair<std::string, std::string>>& manifests) {
  std::vector<std::string> names;
  for (const auto& [path, contents] : manifests) {
    std::optional<toml::table> document = ParseToml(contents);
    if (!document.has_value()) continue;
    const toml::table* package = Subtable(&*document, "package");
    const toml::node* name = package ? package->get("name") : nullptr;
    if (name != nullptr && name->is_string()) {
      names.push_back(name->as_string()->get());
    }
  }
  std::sort(names.begin(), names.end());
  names.erase(std::unique(names.begin(), names.end()), names.end());
  return names;
}

CacheKey ComputeCacheKey(const CacheKeyInputs& inputs) {
  std::string common;
  AddField(&common, "rustc", absl::StripAsciiWhitespace(inputs.rustc_version));
  AddField(&common, "target",
           inputs.target_triple.empty() ? HostTriple(inputs.rustc_version)
                                        : inputs.target_triple);
  AddField(&common, "profile", inputs.profile);
  // The last value of a name wins, as in a process environment.
  std::map<std::string, std::string> env;
  for (const auto& [name, value] : inputs.env) {
    if (IsCacheRelevantEnv(name)) env[name] = value;
  }
  for (const auto& [name, value] : env) AddField(&common, name, value);

  std::string exact = absl::StrCat("exact\n", common);
  AddField(&exact, "format", absl::StrCat(kCacheKeyFormat));
  absl::StatusOr<std::vector<LockedPackage>> packages =
      ParseCargoLock(inputs.cargo_lock);
  if (packages.ok()) {
    std::vector<std::string> external;
    for (const LockedPackage& p : *packages) {
      if (p.source.empty()) continue;
      external.push_back(absl::StrCat(p.name, " ", p.version, " ", p.source,
                                      " ", p.checksum));
    }
    std::sort(external.begin(), external.end());
    for (const std::string& line : external) AddField(&exact, "package", line);
  } else {
    // Cargo refuses such a lockfile; its bytes keep the key exact.
    AddField(&exact, "unparsed-lock", inputs.cargo_lock);
  }
  std::vector<std::pair<std::string, std::string>> manifests;
  for (const auto& [path, contents] : inputs.manifests) {
    manifests.emplace_back(path, NormalizeManifest(contents));
  }
  std::sort(manifests.begin(), manifests.end());
  for (const auto& [path, normalized] : manifests) {
    AddField(&exact, "manifest", path);
    AddField(&exact, "content", normalized);
  }
  return CacheKey{Sha256Hex(exact),
                  Sha256Hex(absl::StrCat("fallback\n", common))};
}

absl::string_view CacheMatchName(CacheMatch match) {
  switch (match) {
    case CacheMatch::kExact:
      return "exact";
    case CacheMatch::kFallback:
      return "fallback";
    case CacheMatch::kNone:
      return "none";
  }
  return "none";
}

absl::StatusOr<CacheKeyInputs> ReadCacheKeyInputs(
    const BuildCacheOptions& options) {
  if (options.source_dir.empty()) {
    return absl::InvalidArgumentError("build cache: source_dir is required");
  }
  CacheKeyInputs inputs;
  inputs.rustc_version = options.rustc_version;
  if (inputs.rustc_version.empty()) {
    ProcessOptions rustc;
    rustc.argv = {"rustc", "-vV"};
    rustc.working_dir = options.source_dir;
    for (const auto& [name, value] : options.env) {
      if (name == "PATH" || name == "HOME" || name == "RUSTUP_HOME" ||
          name == "RUSTUP_TOOLCHAIN" || name == "CARGO_HOME") {
        rustc.env.emplace_back(name, value);
      }
    }
    rustc.timeout = absl::Minutes(2);
    std::string out, err;
    absl::StatusOr<ProcessResult> run =
        RunProcess(rustc, [&](StreamKind kind, absl::string_view line) {
          absl::StrAppend(kind == StreamKind::kStdout ? &out : &err, line,
                          "\n");
        });
    if (!run.ok() || run->exit_code != 0 || out.empty()) {
      return absl::FailedPreconditionError(absl::StrCat(
          "build cache: rustc -vV in ", options.source_dir, " failed: ",
          run.ok() ? absl::StrCat("exit code ", run->exit_code, " ", err)
                   : run.status().ToString()));
    }
    inputs.rustc_version = std::move(out);
  }
  inputs.target_triple = options.target_triple;
  inputs.profile = options.profile;
  inputs.env = options.env;
  inputs.cargo_lock = ReadFileOrEmpty(options.source_dir + "/Cargo.lock");
  FindManifests(options.source_dir, "", &inputs.manifests);
  return inputs;
}

CachedTargetDir::CachedTargetDir(FileLock lock, std::string path, CacheKey key,
                                 CacheMatch match, std::string copied_from,
                                 std::vector<std::string> workspace_crates)
    : lock_(std::move(lock)),
      path_(std::move(path)),
      key_(std::move(key)),
      match_(match),
      copied_from_(std::move(copied_from)),
      workspace_crates_(std::move(workspace_crates)) {}

CachedTargetDir::~CachedTargetDir() {
  if (!path_.empty()) TouchStamp(path_);
}

absl::StatusOr<int64_t> CachedTargetDir::DropWorkspaceArtifacts() {
  std::vector<std::string> names;
  for (const std::string& crate : workspace_crates_) {
    names.push_back(crate);
    std::string underscored = crate;
    std::replace(underscored.begin(), underscored.end(), '-', '_');
    if (underscored != crate) names.push_back(underscored);
  }
  // Profile dirs: <target>/<profile> and <target>/<triple>/<profile>, the
  // ones that hold a .fingerprint dir.
  std::vector<fs::path> profiles;
  CIAGENT_ASSIGN_OR_RETURN(std::vector<fs::path> tops, ListDir(path_));
  for (const fs::path& top : tops) {
    if (!IsRealDir(top)) continue;
    if (IsRealDir(top / ".fingerprint")) {
      profiles.push_back(top);
      continue;
    }
    CIAGENT_ASSIGN_OR_RETURN(std::vector<fs::path> subs, ListDir(top));
    for (const fs::path& sub : subs) {
      if (IsRealDir(sub / ".fingerprint")) profiles.push_back(sub);
    }
  }

  const auto belongs = [&names](absl::string_view entry, auto matches) {
    for (const std::string& crate : names) {
      if (matches(entry, crate)) return true;
    }
    return false;
  };
  std::vector<fs::path> doomed;
  for (const fs::path& profile : profiles) {
    CIAGENT_ASSIGN_OR_RETURN(std::vector<fs::path> entries, ListDir(profile));
    for (const fs::path& entry : entries) {
      const std::string name = entry.filename().string();
      if (std::find(std::begin(kCargoSubdirs), std::end(kCargoSubdirs), name) ==
          std::end(kCargoSubdirs)) {
        if (belongs(name, IsTopLevelOutputOf)) doomed.push_back(entry);
        continue;
      }
      if (name == "incremental" || name == "nextest" || !IsRealDir(entry)) {
        continue;
      }
      CIAGENT_ASSIGN_OR_RETURN(std::vector<fs::path> inner, ListDir(entry));
      for (const fs::path& path : inner) {
        if (belongs(path.filename().string(), IsHashedEntryOf)) {
          doomed.push_back(path);
        }
      }
    }
  }
  std::error_code ec;
  for (const fs::path& path : doomed) {
    fs::remove_all(path, ec);
    if (ec) return Unavailable(absl::StrCat("remove ", path.string()), ec);
  }
  return static_cast<int64_t>(doomed.size());
}

absl::StatusOr<CachedTargetDir> AcquireTargetDir(
    const BuildCacheOptions& options) {
  if (options.cache_dir.empty()) {
    return absl::InvalidArgumentError("build cache: cache_dir is required");
  }
  CIAGENT_ASSIGN_OR_RETURN(CacheKeyInputs inputs, ReadCacheKeyInputs(options));
  const CacheKey key = ComputeCacheKey(inputs);
  const std::vector<std::string> crates =
      WorkspacePackageNames(inputs.manifests);

  const std::string targets = options.cache_dir + "/target";
  std::error_code ec;
  fs::create_directories(targets, ec);
  if (ec) {
    return absl::FailedPreconditionError(
        absl::StrCat("build cache: create ", targets, ": ", ec.message()));
  }
  const std::string dir = absl::StrCat(targets, "/", key.exact);
  absl::StatusOr<FileLock> lock =
      FileLock::Acquire(dir + ".lock", options.lock_timeout);
  if (!lock.ok()) {
    return absl::Status(lock.status().code(),
                        absl::StrCat("build cache: lock target dir ", key.exact,
                                     ": ", lock.status().message()));
  }

  if (IsDirectory(dir)) {
    TouchStamp(dir);
    return CachedTargetDir(*std::move(lock), dir, key, CacheMatch::kExact, "",
                           crates);
  }

  // Candidates for a fallback: key dirs recording the same fallback key,
  // newest use first.
  std::vector<std::pair<int64_t, std::string>> candidates;
  CIAGENT_ASSIGN_OR_RETURN(std::vector<fs::path> entries, ListDir(targets));
  for (const fs::path& entry : entries) {
    const std::string path = entry.string();
    if (!IsRealDir(entry) ||
        absl::StrContains(entry.filename().string(), ".")) {
      continue;
    }
    const std::string recorded = ReadFileOrEmpty(path + "/" + kCacheKeyFile);
    if (!absl::StrContains(recorded,
                           absl::StrCat("fallback ", key.fallback, "\n"))) {
      continue;
    }
    struct stat st;
    int64_t used = 0;
    if (stat((path + "/" + kCacheStampFile).c_str(), &st) == 0) {
      used = static_cast<int64_t>(st.st_mtim.tv_sec) * 1000000000 +
             st.st_mtim.tv_nsec;
    }
    candidates.emplace_back(used, path);
  }
  std::sort(candidates.rbegin(), candidates.rend());

  // The pruner leaves <key>.incoming alone while <key>.lock is held.
  const std::string incoming = dir + ".incoming";
  fs::remove_all(incoming, ec);  // a crashed agent's partial copy
  if (ec) return Unavailable(absl::StrCat("remove ", incoming), ec);
  CacheMatch match = CacheMatch::kNone;
  std::string copied_from;
  for (const auto& [used, candidate] : candidates) {
    // A dir being built is skipped rather than waited for or copied
    // half-written.
    absl::StatusOr<FileLock> source = FileLock::TryAcquire(candidate + ".lock");
    if (!source.ok()) continue;
    absl::Status copied = CopyTree(candidate, incoming);
    if (!copied.ok()) {
      fs::remove_all(incoming, ec);
      return copied;
    }
    match = CacheMatch::kFallback;
    copied_from = candidate;
    break;
  }
  if (match == CacheMatch::kNone) {
    fs::create_directories(incoming, ec);
    if (ec) return Unavailable(absl::StrCat("create ", incoming), ec);
  }
  CIAGENT_RETURN_IF_ERROR(WriteFileAtomically(
      incoming + "/" + kCacheKeyFile,
      absl::StrCat("exact ", key.exact, "\nfallback ", key.fallback, "\n")));
  TouchStamp(incoming);
  fs::rename(incoming, dir, ec);
  if (ec) return Unavailable(absl::StrCat("rename ", incoming), ec);
  return CachedTargetDir(*std::move(lock), dir, key, match,
                         std::move(copied_from), crates);
}

}  // namespace ciagent
