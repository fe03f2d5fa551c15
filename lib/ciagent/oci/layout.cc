#include "ciagent/oci/layout.h"

#include <sys/stat.h>

#include <algorithm>
#include <fstream>
#include <set>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "ciagent/base/sha256.h"
#include "ciagent/base/status_macros.h"
#include "ciagent/oci/manifest.h"

namespace ciagent::oci {
namespace {

// Manifests are kilobytes; anything this large is not one.
constexpr int64_t kMaxManifestBytes = 4 << 20;
// index -> index -> manifest is the deepest real layouts go.
constexpr int kMaxDepth = 4;

absl::StatusOr<std::string> ReadSmallFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError(absl::StrCat(path, ": cannot be read"));
  std::ostringstream bytes;
  bytes << in.rdbuf();
  return bytes.str();
}

std::string BlobPath(absl::string_view dir, absl::string_view digest) {
  // Digests are validated as sha256:<hex> before this: no path tricks.
  return absl::StrCat(dir, "/blobs/sha256/", digest.substr(7));
}

class LayoutReader {
 public:
  explicit LayoutReader(absl::string_view dir) : dir_(dir) {}

  // Reads the manifest or index `descriptor` names and, first, everything
  // it refers to.
  absl::Status Visit(const Descriptor& descriptor, int depth) {
    if (depth > kMaxDepth) {
      return absl::InvalidArgumentError(absl::StrCat(
          "layout ", dir_, ": indexes nested deeper than ", kMaxDepth));
    }
    if (!visited_.insert(descriptor.digest).second) return absl::OkStatus();
    if (descriptor.size > kMaxManifestBytes) {
      return absl::InvalidArgumentError(
          absl::StrCat("layout ", dir_, ": manifest ", descriptor.digest,
                       " claims ", descriptor.size, " bytes"));
    }
    CIAGENT_ASSIGN_OR_RETURN(std::string bytes,
                             ReadSmallFile(BlobPath(dir_, descriptor.digest)));
    if (const std::string actual = absl::StrCat("sha256:", Sha256Hex(bytes));
        actual != descriptor.digest ||
        static_cast<int64_t>(bytes.size()) != descriptor.size) {
      return absl::DataLossError(
          absl::StrCat("layout ", dir_, ": manifest ", descriptor.digest,
                       " does not match its descriptor (content ", actual, ", ",
                       bytes.size(), " bytes)"));
    }
    absl::StatusOr<Manifest> manifest = ParseManifest(bytes);
    if (!manifest.ok()) {
      return Annotate(manifest.status(),
                      absl::StrCat("layout ", dir_, ": ", descriptor.digest));
    }
    if (manifest->is_index()) {
      for (const Descriptor& child : manifest->manifests) {
        CIAGENT_RETURN_IF_ERROR(Visit(child, depth + 1));
      }
    } else {
      CIAGENT_RETURN_IF_ERROR(AddBlob(manifest->config));
      for (const Descriptor& layer : manifest->layers) {
        CIAGENT_RETURN_IF_ERROR(AddBlob(layer));
      }
    }
    image_.manifests.push_back({.digest = descriptor.digest,
                                .media_type = manifest->media_type,
                                .bytes = std::move(bytes)});
    return absl::OkStatus();
  }

  absl::Status AddBlob(const Descriptor& descriptor) {
    if (!blob_digests_.insert(descriptor.digest).second) {
      return absl::OkStatus();
    }
    BlobFile blob{.digest = descriptor.digest,
                  .size = static_cast<uint64_t>(descriptor.size),
                  .path = BlobPath(dir_, descriptor.digest)};
    struct stat st {};
    if (stat(blob.path.c_str(), &st) != 0) {
      return absl::NotFoundError(absl::StrCat(
          "layout ", dir_, ": blob ", descriptor.digest, " is missing"));
    }
    if (static_cast<uint64_t>(st.st_size) != blob.size) {
      return absl::DataLossError(
          absl::StrCat("layout ", dir_, ": blob ", descriptor.digest, " has ",
                       st.st_size, " bytes, its descriptor says ", blob.size));
    }
    image_.blobs.push_back(std::move(blob));
    return absl::OkStatus();
  }

  LayoutImage Finish() && {
    std::stable_sort(
        image_.blobs.begin(), image_.blobs.end(),
        [](const BlobFile& a, const BlobFile& b) { return a.size > b.size; });
    return std::move(image_);
  }

  void AddRoot(ManifestDocument root) {
    image_.manifests.push_back(std::move(root));
  }

 private:
  const std::string dir_;
  std::set<std::string> visited_;
  std::set<std::string> blob_digests_;
  LayoutImage image_;
};

}  // namespace

absl::StatusOr<LayoutImage> ReadLayout(absl::string_view dir,
                                       absl::string_view ref_name) {
  const std::string layout_file = absl::StrCat(dir, "/oci-layout");
  struct stat st {};
  if (stat(std::string(dir).c_str(), &st) != 0 || !S_ISDIR(st.st_mode)) {
    return absl::NotFoundError(
        absl::StrCat("layout ", dir, ": no such directory"));
  }
  if (stat(layout_file.c_str(), &st) != 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "layout ", dir, ": no oci-layout file; not an OCI image layout"));
  }
  CIAGENT_ASSIGN_OR_RETURN(std::string index_bytes,
                           ReadSmallFile(absl::StrCat(dir, "/index.json")));
  absl::StatusOr<Manifest> index = ParseManifest(index_bytes);
  if (!index.ok() || !index->is_index()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "layout ", dir, ": index.json is not an image index",
        index.ok() ? "" : absl::StrCat(" (", index.status().message(), ")")));
  }
  std::vector<Descriptor> entries;
  std::set<std::string> names;
  for (const Descriptor& entry : index->manifests) {
    names.insert(entry.ref_name.empty() ? "(unnamed)" : entry.ref_name);
    if (ref_name.empty() || entry.ref_name == ref_name)
      entries.push_back(entry);
  }
  if (entries.empty()) {
    return absl::NotFoundError(
        absl::StrCat("layout ", dir, ": no image named \"", ref_name,
                     "\" (has: ", absl::StrJoin(names, ", "), ")"));
  }
  LayoutReader reader(dir);
  if (entries.size() == 1) {
    CIAGENT_RETURN_IF_ERROR(reader.Visit(entries.front(), 0));
    return std::move(reader).Finish();
  }
  // Several entries: one image per platform, pushed as one index.
  for (const Descriptor& entry : entries) {
    CIAGENT_RETURN_IF_ERROR(reader.Visit(entry, 1));
  }
  if (!ref_name.empty() && entries.size() != index->manifests.size()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "layout ", dir, ": several but not all entries are named \"", ref_name,
        "\"; cannot push them as one index"));
  }
  reader.AddRoot({.digest = absl::StrCat("sha256:", Sha256Hex(index_bytes)),
                  .media_type = index->media_type,
                  .bytes = std::move(index_bytes)});
  return std::move(reader).Finish();
}

}  // namespace ciagent::oci
