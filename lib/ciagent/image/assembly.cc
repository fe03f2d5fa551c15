#include "ciagent/image/assembly.h"

#include <fcntl.h>
#include <simdjson.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <set>
#include <thread>

#include "absl/cleanup/cleanup.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "ciagent/base/atomic_file.h"
#include "ciagent/base/cpus.h"
#include "ciagent/base/json_writer.h"
#include "ciagent/base/sha256.h"
#include "ciagent/base/status_macros.h"
#include "ciagent/oci/manifest.h"
#include "ciagent/oci/reference.h"

namespace ciagent {
namespace {

namespace dom = simdjson::dom;
using Pairs = std::vector<std::pair<std::string, std::string>>;

constexpr size_t kBlock = 512;
constexpr mode_t kFileMode = 0755;

// simdjson speaks std::string_view; absl's is a distinct type here.
absl::string_view Abseil(std::string_view s) { return {s.data(), s.size()}; }

template <size_t N>
bool Listed(const absl::string_view (&keys)[N], std::string_view key) {
  return std::find(std::begin(keys), std::end(keys), Abseil(key)) !=
         std::end(keys);
}

std::string Rfc3339(absl::Time time) {
  return absl::FormatTime("%Y-%m-%dT%H:%M:%SZ", time, absl::UTCTimeZone());
}

// `value` as octal in a tar header field of `width` bytes (NUL-terminated).
bool PutOctal(char* field, size_t width, uint64_t value) {
  std::string digits = absl::StrFormat("%0*llo", static_cast<int>(width - 1),
                                       static_cast<unsigned long long>(value));
  if (digits.size() > width - 1) return false;
  std::memcpy(field, digits.data(), digits.size());
  return true;
}

// A ustar header; long names split into prefix and name at a '/'.
absl::StatusOr<std::string> TarHeader(absl::string_view name, char type,
                                      uint64_t size, int64_t mtime) {
  std::string header(kBlock, '\0');
  absl::string_view prefix;
  absl::string_view rest = name;
  if (rest.size() > 100) {
    const size_t split = name.rfind('/', std::min<size_t>(155, name.size() - 2));
    if (split == absl::string_view::npos || name.size() - split - 1 > 100) {
      return absl::InvalidArgumentError(
          absl::StrCat("layer: path \"", name, "\" is too long for a tar"));
    }
    prefix = name.substr(0, split);
    rest = name.substr(split + 1);
  }
  // copy, not memcpy: an empty view may have a null data().
  std::copy(rest.begin(), rest.end(), &header[0]);
  PutOctal(&header[100], 8, type == '5' ? 0755 : kFileMode);
  PutOctal(&header[108], 8, 0);  // uid
  PutOctal(&header[116], 8, 0);  // gid
  if (!PutOctal(&header[124], 12, size)) {
    return absl::InvalidArgumentError(
        absl::StrCat("layer: \"", name, "\" is too large for a tar"));
  }
  PutOctal(&header[136], 12, static_cast<uint64_t>(std::max<int64_t>(0, mtime)));
  header[156] = type;
  std::memcpy(&header[257], "ustar\0" "00", 8);
  std::copy(prefix.begin(), prefix.end(), &header[345]);
  std::memset(&header[148], ' ', 8);
  unsigned sum = 0;
  for (unsigned char c : header) sum += c;
  PutOctal(&header[148], 7, sum);
  return header;
}

// Gzip to a file, hashing both sides: the digest is of what is written,
// the diff_id of what goes in.
//
// One gzip member whose deflate data is compressed in blocks of kGzipBlock
// bytes on several threads, as pigz does: each block is deflated on its own
// with the 32 KiB before it as the dictionary and ends byte-aligned
// (Z_SYNC_FLUSH; the last one Z_FINISH). Every block's output depends only
// on the data, never on the number of threads or their timing, so the file
// is the same on every agent (with the same zlib). Header: no name, mtime 0,
// OS Unix.
class GzipFileWriter {
 public:
  ~GzipFileWriter() {
    if (fd_ >= 0) close(fd_);
  }
  absl::Status Open(const std::string& path) {
    path_ = path;
    fd_ = open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd_ < 0) {
      return absl::UnavailableError(
          absl::StrCat("layer: cannot create ", path, ": ", std::strerror(errno)));
    }
    // xfl 4: compressed at the fastest level.
    static constexpr char kHeader[] = {'\x1f', '\x8b', 8, 0, 0, 0, 0, 0, 4, 3};
    return Emit(absl::string_view(kHeader, sizeof(kHeader)));
  }
  absl::Status Write(absl::string_view data) {
    uncompressed_.Update(data);
    crc_ = crc32(crc_, reinterpret_cast<const Bytef*>(data.data()),
                 static_cast<uInt>(data.size()));
    total_ += data.size();
    pending_.append(data.data(), data.size());
    // Full blocks go out once a later byte proves none of them is the last.
    const size_t ready = (pending_.size() - 1) / kGzipBlock;
    if (ready >= static_cast<size_t>(threads_)) {
      return DeflateBlocks(ready, /*finish=*/false);
    }
    return absl::OkStatus();
  }
  absl::StatusOr<LayerBlob> Finish() {
    const size_t blocks = (pending_.size() + kGzipBlock - 1) / kGzipBlock;
    CIAGENT_RETURN_IF_ERROR(DeflateBlocks(std::max<size_t>(blocks, 1), true));
    char trailer[8];
    for (int i = 0; i < 4; ++i) {
      trailer[i] = static_cast<char>((crc_ >> (8 * i)) & 0xff);
      trailer[4 + i] = static_cast<char>((total_ >> (8 * i)) & 0xff);
    }
    CIAGENT_RETURN_IF_ERROR(Emit(absl::string_view(trailer, sizeof(trailer))));
    return LayerBlob{.digest = absl::StrCat("sha256:", compressed_.HexDigest()),
                     .diff_id =
                         absl::StrCat("sha256:", uncompressed_.HexDigest()),
                     .size = size_};
  }

 private:
  static constexpr size_t kGzipBlock = 512 << 10;
  static constexpr size_t kWindow = 32 << 10;

  // Deflates the first `count` blocks of pending_, in parallel; with
  // `finish` they are the last (the final one may be short).
  absl::Status DeflateBlocks(size_t count, bool finish) {
    std::vector<std::string> out(count);
    std::vector<int> results(count, Z_OK);
    std::vector<std::thread> workers;
    auto deflate_block = [&](size_t i) {
      const size_t begin = i * kGzipBlock;
      const size_t end = std::min(pending_.size(), begin + kGzipBlock);
      const bool last = finish && i + 1 == count;
      // The 32 KiB before the block: from pending_, or kept from before.
      std::string dictionary =
          i == 0 ? window_
                 : pending_.substr(begin - std::min(begin, kWindow),
                                   std::min(begin, kWindow));
      results[i] = DeflateRaw(
          absl::string_view(pending_).substr(begin, end - begin), dictionary,
          last, &out[i]);
    };
    for (size_t i = 1; i < count; ++i) {
      if (workers.size() + 1 < static_cast<size_t>(threads_)) {
        workers.emplace_back(deflate_block, i);
      } else {
        deflate_block(i);
      }
    }
    deflate_block(0);
    for (std::thread& worker : workers) worker.join();
    for (size_t i = 0; i < count; ++i) {
      if (results[i] != Z_OK) {
        return absl::InternalError(
            absl::StrCat("layer: deflate failed (zlib ", results[i], ")"));
      }
      CIAGENT_RETURN_IF_ERROR(Emit(out[i]));
    }
    const size_t used = std::min(pending_.size(), count * kGzipBlock);
    // Whole blocks before the last round: `used` >= kWindow there.
    window_ = pending_.substr(used - std::min(used, kWindow),
                              std::min(used, kWindow));
    pending_.erase(0, used);
    return absl::OkStatus();
  }

  static int DeflateRaw(absl::string_view data, absl::string_view dictionary,
                        bool last, std::string* out) {
    z_stream stream{};
    if (deflateInit2(&stream, Z_BEST_SPEED, Z_DEFLATED, -15, 8,
                     Z_DEFAULT_STRATEGY) != Z_OK) {
      return Z_STREAM_ERROR;
    }
    absl::Cleanup end = [&stream] { deflateEnd(&stream); };
    if (!dictionary.empty() &&
        deflateSetDictionary(
            &stream, reinterpret_cast<const Bytef*>(dictionary.data()),
            static_cast<uInt>(dictionary.size())) != Z_OK) {
      return Z_STREAM_ERROR;
    }
    out->resize(deflateBound(&stream, data.size()) + 16);
    stream.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(data.data()));
    stream.avail_in = static_cast<uInt>(data.size());
    stream.next_out = reinterpret_cast<Bytef*>(out->data());
    stream.avail_out = static_cast<uInt>(out->size());
    const int result = deflate(&stream, last ? Z_FINISH : Z_SYNC_FLUSH);
    if ((last && result != Z_STREAM_END) || (!last && result != Z_OK) ||
        stream.avail_in != 0) {
      return Z_BUF_ERROR;
    }
    out->resize(out->size() - stream.avail_out);
    return Z_OK;
  }

  absl::Status Emit(absl::string_view bytes) {
    compressed_.Update(bytes);
    size_ += bytes.size();
    return WriteAll(fd_, bytes, path_);
  }

  std::string path_;
  int fd_ = -1;
  const int threads_ = std::min(4, UsableCpus());
  std::string pending_;  // not yet compressed
  std::string window_;   // the last 32 KiB compressed
  uLong crc_ = crc32(0, nullptr, 0);
  uint64_t total_ = 0;
  Sha256 compressed_;
  Sha256 uncompressed_;
  uint64_t size_ = 0;
};

absl::Status CopyFileInto(const LayerFile& file, uint64_t size,
                          GzipFileWriter* out) {
  const int fd = open(file.source_path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "binary ", file.name, ": cannot open ", file.source_path, ": ",
        std::strerror(errno)));
  }
  absl::Cleanup close_fd = [fd] { close(fd); };
  std::string buffer(1 << 20, '\0');
  uint64_t copied = 0;
  while (copied < size) {
    const ssize_t n = read(fd, buffer.data(),
                           std::min<uint64_t>(buffer.size(), size - copied));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      return absl::InvalidArgumentError(absl::StrCat(
          "binary ", file.name, ": ", file.source_path, " changed while read"));
    }
    CIAGENT_RETURN_IF_ERROR(out->Write(absl::string_view(buffer.data(), n)));
    copied += static_cast<uint64_t>(n);
  }
  const size_t pad = (kBlock - size % kBlock) % kBlock;
  return out->Write(std::string(pad, '\0'));
}

// The directory's components without the leading '/'; kInvalidArgument
// unless it is absolute and has no "." or ".." component.
absl::StatusOr<std::vector<std::string>> ImageDirectory(
    absl::string_view directory) {
  if (!absl::StartsWith(directory, "/")) {
    return absl::InvalidArgumentError(absl::StrCat(
        "image path \"", directory, "\" is not absolute: it must be inside /"));
  }
  std::vector<std::string> parts;
  for (absl::string_view part : absl::StrSplit(directory, '/', absl::SkipEmpty())) {
    if (part == "." || part == "..") {
      return absl::InvalidArgumentError(absl::StrCat(
          "image path \"", directory, "\" leaves / through \"", part, "\""));
    }
    parts.emplace_back(part);
  }
  return parts;
}

// "" when absent or not a string.
std::string StringField(dom::object object, const char* key) {
  std::string_view value;
  if (object[key].get_string().get(value) != simdjson::SUCCESS) return "";
  return std::string(value);
}

// "NAME=value" entries with `over` replacing same-named ones, appended
// otherwise.
std::vector<std::string> MergeEnv(dom::object config, const Pairs& over) {
  std::vector<std::string> env;
  dom::array base;
  if (config["Env"].get_array().get(base) == simdjson::SUCCESS) {
    for (dom::element item : base) {
      std::string_view entry;
      if (item.get_string().get(entry) == simdjson::SUCCESS) {
        env.emplace_back(entry);
      }
    }
  }
  for (const auto& [name, value] : over) {
    const std::string prefix = absl::StrCat(name, "=");
    std::string line = absl::StrCat(prefix, value);
    auto same = std::find_if(env.begin(), env.end(), [&](const std::string& e) {
      return absl::StartsWith(e, prefix);
    });
    if (same != env.end()) {
      *same = std::move(line);
    } else {
      env.push_back(std::move(line));
    }
  }
  return env;
}

// The base's object at `key` (string values) with `over` on top, as JSON;
// keys of `over` not in the base are appended in order.
std::string MergeStringObject(dom::object config, const char* key,
                              const Pairs& over) {
  Pairs merged;
  dom::object base;
  if (config[key].get_object().get(base) == simdjson::SUCCESS) {
    for (auto field : base) {
      std::string_view value;
      if (field.value.get_string().get(value) == simdjson::SUCCESS) {
        merged.emplace_back(std::string(field.key), std::string(value));
      }
    }
  }
  for (const auto& [name, value] : over) {
    // A named reference: clang before 16 cannot capture a structured binding.
    const auto& key = name;
    auto same = std::find_if(merged.begin(), merged.end(),
                             [&](const auto& e) { return e.first == key; });
    if (same != merged.end()) {
      same->second = value;
    } else {
      merged.emplace_back(name, value);
    }
  }
  JsonObjectBuilder json;
  for (const auto& [name, value] : merged) json.Add(name, value);
  return std::move(json).Build();
}

// ExposedPorts: the base's and `ports`, each once, values {}.
std::string MergePorts(dom::object config,
                       const std::vector<std::string>& ports) {
  std::vector<std::string> all;
  dom::object base;
  if (config["ExposedPorts"].get_object().get(base) == simdjson::SUCCESS) {
    for (auto field : base) all.emplace_back(field.key);
  }
  for (const std::string& port : ports) {
    if (std::find(all.begin(), all.end(), port) == all.end()) {
      all.push_back(port);
    }
  }
  JsonObjectBuilder json;
  for (const std::string& port : all) json.AddRaw(port, "{}");
  return std::move(json).Build();
}

std::string DescriptorJson(const oci::Descriptor& descriptor) {
  JsonObjectBuilder json;
  json.Add("mediaType", descriptor.media_type)
      .Add("digest", descriptor.digest)
      .Add("size", descriptor.size);
  return std::move(json).Build();
}

bool Stopped(const AssemblyOptions& options) {
  return options.should_stop && options.should_stop();
}

// The binaries to put in the image: (name, path) of each, checked.
absl::StatusOr<std::vector<LayerFile>> PickBinaries(
    const AssemblyOptions& options) {
  std::vector<std::string> built;
  for (const auto& [name, path] : options.executables) built.push_back(name);
  if (built.empty()) {
    return absl::InvalidArgumentError(
        "image assembly: the build made no release executable to put in the "
        "image");
  }
  const std::vector<std::string>& wanted =
      options.image.binaries.empty() ? built : options.image.binaries;
  std::vector<LayerFile> files;
  for (const std::string& name : wanted) {
    auto it = std::find_if(options.executables.begin(),
                           options.executables.end(),
                           [&](const auto& e) { return e.first == name; });
    if (it == options.executables.end()) {
      return absl::InvalidArgumentError(absl::StrCat(
          "image.binaries: \"", name,
          "\" is not a release executable of this build (built: ",
          absl::StrJoin(built, ", "), ")"));
    }
    files.push_back({.name = name, .source_path = it->second});
  }
  return files;
}

absl::StatusOr<std::vector<std::string>> Entrypoint(
    const AssemblyOptions& options, const std::vector<LayerFile>& files) {
  if (!options.image.entrypoint.empty()) return options.image.entrypoint;
  if (files.size() != 1) {
    std::vector<std::string> names;
    for (const LayerFile& file : files) names.push_back(file.name);
    return absl::InvalidArgumentError(absl::StrCat(
        "image assembly: ", files.size(), " binaries (",
        absl::StrJoin(names, ", "),
        ") and no image.entrypoint: say which one the image runs"));
  }
  const std::string& dir = options.image.path;
  return std::vector<std::string>{
      absl::StrCat(dir == "/" ? "" : dir, "/", files.front().name)};
}

struct ResolvedBase {
  oci::ImageReference reference;
  std::string root_digest;  // what the reference points at
  oci::ManifestDocument manifest;
  oci::Manifest parsed;
  std::string platform;
};

// The base's manifest for `platform`, through an index when there is one.
absl::StatusOr<ResolvedBase> ResolveBase(oci::RegistryClient& client,
                                         const oci::ImageReference& reference,
                                         const std::string& platform) {
  const std::string name = absl::StrCat(client.host(), "/", reference.repository);
  const std::string shown =
      absl::StrCat(name, reference.digest.empty() ? ":" : "@",
                   reference.manifest_reference());
  ResolvedBase base{.reference = reference};
  absl::StatusOr<oci::ManifestDocument> document =
      client.GetManifest(reference.repository, reference.manifest_reference());
  if (!document.ok()) {
    if (document.status().code() == absl::StatusCode::kNotFound) {
      return absl::NotFoundError(absl::StrCat("base image ", shown,
                                              " not found: ",
                                              document.status().message()));
    }
    return Annotate(document.status(), absl::StrCat("base image ", shown));
  }
  base.root_digest = document->digest;
  // An index of indexes is allowed one level deep (buildx writes none).
  for (int depth = 0;; ++depth) {
    absl::StatusOr<oci::Manifest> parsed = oci::ParseManifest(document->bytes);
    if (!parsed.ok()) {
      return absl::InvalidArgumentError(absl::StrCat(
          "base image ", shown, ": ", parsed.status().message()));
    }
    if (!parsed->is_index()) {
      base.manifest = *std::move(document);
      base.parsed = *std::move(parsed);
      return base;
    }
    if (depth == 2) {
      return absl::InvalidArgumentError(
          absl::StrCat("base image ", shown, ": indexes nested too deeply"));
    }
    absl::StatusOr<oci::Descriptor> entry =
        oci::SelectPlatform(*parsed, platform);
    if (!entry.ok()) {
      return absl::NotFoundError(absl::StrCat("base image ", shown, ": ",
                                              entry.status().message()));
    }
    base.platform = entry->platform;
    document = client.GetManifest(reference.repository, entry->digest);
    if (!document.ok()) {
      return Annotate(document.status(), absl::StrCat("base image ", shown));
    }
  }
}

absl::Status WriteFile(const std::string& path, absl::string_view bytes) {
  const int fd = open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) {
    return absl::UnavailableError(
        absl::StrCat("cannot create ", path, ": ", std::strerror(errno)));
  }
  absl::Cleanup close_fd = [fd] { close(fd); };
  return WriteAll(fd, bytes, path);
}

// The platform a base config says it is for: "os/arch[/variant]".
std::string ConfigPlatform(absl::string_view config) {
  dom::parser parser;
  dom::object object;
  if (parser.parse(config.data(), config.size()).get_object().get(object) !=
      simdjson::SUCCESS) {
    return "";
  }
  std::string platform = absl::StrCat(StringField(object, "os"), "/",
                                      StringField(object, "architecture"));
  if (std::string variant = StringField(object, "variant"); !variant.empty()) {
    absl::StrAppend(&platform, "/", variant);
  }
  return platform;
}

bool SameOsArch(absl::string_view a, absl::string_view b) {
  std::vector<absl::string_view> x = absl::StrSplit(a, '/');
  std::vector<absl::string_view> y = absl::StrSplit(b, '/');
  return x.size() >= 2 && y.size() >= 2 && x[0] == y[0] && x[1] == y[1];
}

}  // namespace

absl::StatusOr<LayerBlob> WriteBinaryLayer(std::vector<LayerFile> files,
                                           absl::string_view directory,
                                           absl::Time mtime,
                                           const std::string& out_path) {
  CIAGENT_ASSIGN_OR_RETURN(std::vector<std::string> parts,
                           ImageDirectory(directory));
  std::sort(files.begin(), files.end(),
            [](const LayerFile& a, const LayerFile& b) { return a.name < b.name; });
  std::vector<uint64_t> sizes;
  for (size_t i = 0; i < files.size(); ++i) {
    const LayerFile& file = files[i];
    if (file.name.empty() || file.name == "." || file.name == ".." ||
        absl::StrContains(file.name, '/')) {
      return absl::InvalidArgumentError(
          absl::StrCat("binary \"", file.name, "\": not a file name"));
    }
    if (i > 0 && files[i - 1].name == file.name) {
      return absl::InvalidArgumentError(
          absl::StrCat("binary \"", file.name, "\" given twice"));
    }
    struct stat st {};
    if (stat(file.source_path.c_str(), &st) != 0) {
      return absl::InvalidArgumentError(
          absl::StrCat("binary ", file.name, ": ", file.source_path, ": ",
                       std::strerror(errno)));
    }
    if (!S_ISREG(st.st_mode)) {
      return absl::InvalidArgumentError(absl::StrCat(
          "binary ", file.name, ": ", file.source_path, " is not a file"));
    }
    sizes.push_back(static_cast<uint64_t>(st.st_size));
  }
  const int64_t seconds = absl::ToUnixSeconds(mtime);
  GzipFileWriter out;
  CIAGENT_RETURN_IF_ERROR(out.Open(out_path));
  std::string prefix;
  for (const std::string& part : parts) {
    absl::StrAppend(&prefix, part, "/");
    CIAGENT_ASSIGN_OR_RETURN(std::string header,
                             TarHeader(prefix, '5', 0, seconds));
    CIAGENT_RETURN_IF_ERROR(out.Write(header));
  }
  for (size_t i = 0; i < files.size(); ++i) {
    CIAGENT_ASSIGN_OR_RETURN(
        std::string header,
        TarHeader(prefix + files[i].name, '0', sizes[i], seconds));
    CIAGENT_RETURN_IF_ERROR(out.Write(header));
    CIAGENT_RETURN_IF_ERROR(CopyFileInto(files[i], sizes[i], &out));
  }
  CIAGENT_RETURN_IF_ERROR(out.Write(std::string(2 * kBlock, '\0')));
  return out.Finish();
}

absl::StatusOr<std::string> EditImageConfig(absl::string_view base_config,
                                            const ConfigChanges& changes) {
  dom::parser parser;
  dom::object base;
  if (parser.parse(base_config.data(), base_config.size())
          .get_object()
          .get(base) != simdjson::SUCCESS) {
    return absl::InvalidArgumentError("base config is not a JSON object");
  }
  if (StringField(base, "architecture").empty() ||
      StringField(base, "os").empty()) {
    return absl::InvalidArgumentError(
        "base config names no architecture or os: not an image config");
  }
  dom::object config;
  dom::parser empty_parser;
  if (base["config"].get_object().get(config) != simdjson::SUCCESS &&
      empty_parser.parse(std::string("{}")).get_object().get(config) !=
          simdjson::SUCCESS) {
    return absl::InternalError("base config: cannot stand in for \"config\"");
  }
  const std::string created = Rfc3339(changes.created);
  std::vector<std::string> env = MergeEnv(config, changes.env);
  std::string workdir = !changes.workdir.empty()
                            ? changes.workdir
                            : StringField(config, "WorkingDir");
  if (workdir.empty()) workdir.push_back('/');
  static constexpr absl::string_view kSet[] = {
      "User", "ExposedPorts", "Env", "Entrypoint", "Cmd", "WorkingDir", "Labels"};
  JsonObjectBuilder inner;
  inner.Add("User", changes.user)
      .AddRaw("ExposedPorts", MergePorts(config, changes.ports))
      .AddRaw("Env", JsonStringArray(env))
      .AddRaw("Entrypoint", JsonStringArray(changes.entrypoint));
  if (!changes.cmd.empty()) inner.AddRaw("Cmd", JsonStringArray(changes.cmd));
  inner.Add("WorkingDir", workdir)
      .AddRaw("Labels", MergeStringObject(config, "Labels", changes.labels));
  for (auto field : config) {
    if (!Listed(kSet, field.key)) {
      inner.AddRaw(Abseil(field.key), simdjson::minify(field.value));
    }
  }
  // diff_ids and history: the base's, then the new layer's.
  std::vector<std::string> diff_ids;
  dom::array base_ids;
  if (base["rootfs"]["diff_ids"].get_array().get(base_ids) == simdjson::SUCCESS) {
    for (dom::element id : base_ids) diff_ids.push_back(simdjson::minify(id));
  }
  diff_ids.push_back(JsonQuote(changes.diff_id));
  JsonObjectBuilder rootfs;
  rootfs.Add("type", "layers").AddRaw("diff_ids",
                                      absl::StrCat("[", absl::StrJoin(diff_ids, ","), "]"));
  std::vector<std::string> history;
  dom::array base_history;
  if (base["history"].get_array().get(base_history) == simdjson::SUCCESS) {
    for (dom::element entry : base_history) {
      history.push_back(simdjson::minify(entry));
    }
  }
  JsonObjectBuilder entry;
  entry.Add("created", created)
      .Add("created_by", changes.created_by)
      .Add("comment", "libciagent image assembly");
  history.push_back(std::move(entry).Build());

  // The base's build details describe the base, not this image.
  static constexpr absl::string_view kDropped[] = {
      "created", "architecture", "os", "config", "rootfs", "history",
      "container", "container_config", "docker_version", "id", "parent"};
  JsonObjectBuilder json;
  json.Add("created", created)
      .Add("architecture", StringField(base, "architecture"))
      .Add("os", StringField(base, "os"));
  for (auto field : base) {
    if (!Listed(kDropped, field.key)) {
      json.AddRaw(Abseil(field.key), simdjson::minify(field.value));
    }
  }
  json.AddRaw("config", std::move(inner).Build())
      .AddRaw("rootfs", std::move(rootfs).Build())
      .AddRaw("history", absl::StrCat("[", absl::StrJoin(history, ","), "]"));
  return std::move(json).Build();
}

absl::StatusOr<std::string> MakeImageManifest(
    absl::string_view base_manifest, const oci::Descriptor& config,
    const oci::Descriptor& layer, const Pairs& annotations) {
  CIAGENT_ASSIGN_OR_RETURN(oci::Manifest parsed,
                           oci::ParseManifest(base_manifest));
  if (parsed.is_index()) {
    return absl::InvalidArgumentError("base manifest is an index");
  }
  dom::parser parser;
  dom::object base;
  if (parser.parse(base_manifest.data(), base_manifest.size())
          .get_object()
          .get(base) != simdjson::SUCCESS) {
    return absl::InvalidArgumentError("base manifest is not a JSON object");
  }
  // Layers as the base lists them (annotations, urls and all), then ours.
  std::vector<std::string> layers;
  dom::array base_layers;
  if (base["layers"].get_array().get(base_layers) == simdjson::SUCCESS) {
    for (dom::element item : base_layers) layers.push_back(simdjson::minify(item));
  }
  layers.push_back(DescriptorJson(layer));
  JsonObjectBuilder json;
  json.Add("schemaVersion", 2)
      .Add("mediaType", parsed.media_type)
      .AddRaw("config", DescriptorJson(config))
      .AddRaw("layers", absl::StrCat("[", absl::StrJoin(layers, ","), "]"));
  if (parsed.media_type == oci::kOciManifest && !annotations.empty()) {
    JsonObjectBuilder notes;
    for (const auto& [name, value] : annotations) notes.Add(name, value);
    json.AddRaw("annotations", std::move(notes).Build());
  }
  return std::move(json).Build();
}

absl::StatusOr<AssemblyResult> AssembleImage(const AssemblyOptions& options) {
  const absl::Time start = absl::Now();
  const ImageConfig& image = options.image;
  if (options.work_dir.empty()) {
    return absl::InvalidArgumentError("image assembly: no work dir");
  }
  CIAGENT_ASSIGN_OR_RETURN(oci::ImageReference reference,
                           oci::ParsePullReference(image.base));
  CIAGENT_RETURN_IF_ERROR(ImageDirectory(image.path).status());
  CIAGENT_ASSIGN_OR_RETURN(std::vector<LayerFile> files, PickBinaries(options));
  CIAGENT_ASSIGN_OR_RETURN(std::vector<std::string> entrypoint,
                           Entrypoint(options, files));
  const std::string platform =
      options.platform.empty() ? oci::HostPlatform() : options.platform;

  CIAGENT_ASSIGN_OR_RETURN(std::unique_ptr<oci::RegistryClient> target,
                           oci::RegistryClient::Create(options.registry));
  // The base's own registry, unless it is the target's.
  std::unique_ptr<oci::RegistryClient> other;
  if (!reference.registry.empty() && reference.registry != target->host()) {
    oci::RegistryOptions base_options;
    if (options.base_registry.has_value()) {
      base_options = *options.base_registry;
    } else {
      CIAGENT_ASSIGN_OR_RETURN(base_options,
                               oci::RegistryOptionsFor(reference.registry));
    }
    CIAGENT_ASSIGN_OR_RETURN(other,
                             oci::RegistryClient::Create(std::move(base_options)));
  }
  oci::RegistryClient& source = other != nullptr ? *other : *target;

  std::error_code error;
  std::filesystem::create_directories(options.work_dir, error);
  if (error) {
    return absl::UnavailableError(absl::StrCat(
        "image assembly: cannot create ", options.work_dir, ": ", error.message()));
  }
  absl::Cleanup remove_work = [&options] {
    std::error_code ignored;
    std::filesystem::remove_all(options.work_dir, ignored);
  };
  // The layer needs nothing from the base: it is written while the base is
  // read from its registry.
  const std::string layer_path = options.work_dir + "/layer.tar.gz";
  absl::StatusOr<LayerBlob> layer = absl::UnknownError("layer not written");
  std::thread writer([&] {
    layer = WriteBinaryLayer(files, image.path, options.created, layer_path);
  });
  absl::Cleanup join_writer = [&writer] {
    if (writer.joinable()) writer.join();
  };
  absl::StatusOr<ResolvedBase> resolved =
      ResolveBase(source, reference, platform);
  if (!resolved.ok()) {
    const absl::StatusCode code = resolved.status().code();
    if (other != nullptr && (code == absl::StatusCode::kUnauthenticated ||
                             code == absl::StatusCode::kPermissionDenied)) {
      // The client's hint names the agent's own registry variables.
      return absl::Status(
          code, absl::StrCat(resolved.status().message(),
                             "; credentials for ", source.host(),
                             " come from REGISTRY_AUTH_FILE"));
    }
    return resolved.status();
  }
  ResolvedBase& base = *resolved;
  AssemblyResult result;
  result.base = absl::StrCat(source.host(), "/", reference.repository, "@",
                             base.root_digest);
  result.base_manifest_digest = base.manifest.digest;
  const oci::Descriptor& base_config = base.parsed.config;
  absl::StatusOr<std::string> config_bytes =
      source.ReadBlob(reference.repository, base_config.digest,
                      static_cast<uint64_t>(base_config.size));
  if (!config_bytes.ok()) {
    return Annotate(config_bytes.status(),
                    absl::StrCat("config of base image ", result.base));
  }
  result.platform =
      base.platform.empty() ? ConfigPlatform(*config_bytes) : base.platform;
  if (!SameOsArch(result.platform, platform)) {
    return absl::FailedPreconditionError(absl::StrCat(
        "base image ", result.base, " is for ", result.platform,
        ", this agent builds for ", platform));
  }
  if (Stopped(options)) return absl::CancelledError("image assembly stopped");

  const bool docker = base.parsed.media_type == oci::kDockerManifest;
  std::vector<std::string> names;
  for (const LayerFile& file : files) names.push_back(file.name);
  writer.join();
  if (!layer.ok()) return layer.status();

  Pairs labels = image.labels;
  Pairs annotations;
  const std::string created = Rfc3339(options.created);
  for (auto [name, value] :
       {std::pair{"org.opencontainers.image.source", options.source},
        std::pair{"org.opencontainers.image.revision", options.revision},
        std::pair{"org.opencontainers.image.created", created}}) {
    if (value.empty()) continue;
    labels.emplace_back(name, value);
    annotations.emplace_back(name, value);
  }
  annotations.emplace_back(
      "org.opencontainers.image.base.name",
      reference.digest.empty()
          ? absl::StrCat(source.host(), "/", reference.repository, ":",
                         reference.tag)
          : absl::StrCat(source.host(), "/", reference.repository));
  annotations.emplace_back("org.opencontainers.image.base.digest",
                           base.root_digest);
  ConfigChanges changes{
      .entrypoint = std::move(entrypoint),
      .cmd = image.cmd,
      .env = image.env,
      .workdir = image.workdir,
      .user = image.user,
      .ports = image.ports,
      .labels = std::move(labels),
      .created = options.created,
      .diff_id = layer->diff_id,
      .created_by = absl::StrCat("COPY ", absl::StrJoin(names, " "), " ",
                                 image.path)};
  absl::StatusOr<std::string> config = EditImageConfig(*config_bytes, changes);
  if (!config.ok()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "base image ", result.base, ": ", config.status().message()));
  }
  const std::string config_digest = absl::StrCat("sha256:", Sha256Hex(*config));
  const std::string config_path = options.work_dir + "/config.json";
  CIAGENT_RETURN_IF_ERROR(WriteFile(config_path, *config));
  const oci::Descriptor config_descriptor{
      .media_type = docker ? oci::kDockerConfig : oci::kOciConfig,
      .digest = config_digest,
      .size = static_cast<int64_t>(config->size())};
  const oci::Descriptor layer_descriptor{
      .media_type = docker ? oci::kDockerLayerGzip : oci::kOciLayerGzip,
      .digest = layer->digest,
      .size = static_cast<int64_t>(layer->size)};
  absl::StatusOr<std::string> manifest = MakeImageManifest(
      base.manifest.bytes, config_descriptor, layer_descriptor, annotations);
  if (!manifest.ok()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "base image ", result.base, ": ", manifest.status().message()));
  }
  result.assembly_duration = absl::Now() - start;
  if (Stopped(options)) return absl::CancelledError("image assembly stopped");

  oci::ImageToPush push{
      .manifests = {{.digest = absl::StrCat("sha256:", Sha256Hex(*manifest)),
                     .media_type = base.parsed.media_type,
                     .bytes = *manifest}},
      .blobs = {{.digest = layer->digest, .size = layer->size, .path = layer_path},
                {.digest = config_digest,
                 .size = config->size(),
                 .path = config_path}},
      .source = &source,
      .source_repository = reference.repository};
  for (const oci::Descriptor& base_layer : base.parsed.layers) {
    push.remote_blobs.push_back(
        {.digest = base_layer.digest,
         .size = static_cast<uint64_t>(base_layer.size)});
  }
  oci::PushOptions push_options{.repository = options.repository,
                                .tags = options.tags,
                                .concurrency = options.concurrency,
                                .temp_dir = options.work_dir,
                                .on_blob = options.on_blob};
  CIAGENT_ASSIGN_OR_RETURN(result.push,
                           oci::PushImage(*target, push, push_options));
  result.reference = absl::StrCat(target->host(), "/", options.repository,
                                  ":", options.tags.front());
  result.digest = result.push.digest;
  result.media_type = result.push.media_type;
  result.layer_digest = layer->digest;
  result.layer_bytes = layer->size;
  result.config_digest = config_digest;
  return result;
}

}  // namespace ciagent
