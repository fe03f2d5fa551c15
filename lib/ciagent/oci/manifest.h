// OCI and Docker manifests and indexes: the parts a push needs.
//
// A push walks a tree of content-addressed blobs: an index lists manifests
// (one per platform), a manifest names its config and layers. This parser
// reads one such document and returns its descriptors; it does no I/O and
// accepts any bytes without crashing (fuzzed), since layouts and registries
// are input.
//
//   CIAGENT_ASSIGN_OR_RETURN(Manifest m, ParseManifest(bytes));
//   if (m.is_index()) { for (const Descriptor& child : m.manifests) ... }
//   else { push m.config, then m.layers ... }
#ifndef CIAGENT_OCI_MANIFEST_H_
#define CIAGENT_OCI_MANIFEST_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace ciagent::oci {

inline constexpr char kOciManifest[] =
    "application/vnd.oci.image.manifest.v1+json";
inline constexpr char kOciIndex[] = "application/vnd.oci.image.index.v1+json";
inline constexpr char kDockerManifest[] =
    "application/vnd.docker.distribution.manifest.v2+json";
inline constexpr char kDockerManifestList[] =
    "application/vnd.docker.distribution.manifest.list.v2+json";

// Layer and config media types of the two manifest families.
inline constexpr char kOciConfig[] = "application/vnd.oci.image.config.v1+json";
inline constexpr char kOciLayerGzip[] =
    "application/vnd.oci.image.layer.v1.tar+gzip";
inline constexpr char kDockerConfig[] =
    "application/vnd.docker.container.image.v1+json";
inline constexpr char kDockerLayerGzip[] =
    "application/vnd.docker.image.rootfs.diff.tar.gzip";

// True for the index / manifest-list media types.
bool IsIndexMediaType(absl::string_view media_type);
// True for the four media types above.
bool IsManifestMediaType(absl::string_view media_type);

struct Descriptor {
  std::string media_type;
  std::string digest;    // validated: sha256:<64 hex>
  int64_t size = 0;      // >= 0
  std::string platform;  // "os/arch[/variant]" when the descriptor has one
  std::string ref_name;  // annotation org.opencontainers.image.ref.name
};

struct Manifest {
  // The document's mediaType field; when absent, inferred: "manifests"
  // means an OCI index, "layers" an OCI manifest.
  std::string media_type;
  Descriptor config;                  // manifests only
  std::vector<Descriptor> layers;     // manifests only
  std::vector<Descriptor> manifests;  // indexes only

  bool is_index() const { return IsIndexMediaType(media_type); }
};

// kInvalidArgument for anything that is not a schemaVersion 2 manifest or
// index with valid descriptors (the message says which field). At most
// 10000 descriptors.
absl::StatusOr<Manifest> ParseManifest(absl::string_view json);

// A manifest or index as stored: its bytes exactly as hashed.
struct ManifestDocument {
  std::string digest;
  std::string media_type;
  std::string bytes;
};

// The platform this process runs on, as an index names it: "linux/amd64",
// "linux/arm64", "linux/arm/v7", ... (GOARCH names, as OCI uses them).
std::string HostPlatform();

// The entry of `index` for `platform` ("os/arch[/variant]"): an exact
// match, else the same os/arch when `platform` has no variant (or a
// descriptor names none); arm64's "v8" is the same as no variant.
// kNotFound naming the platforms the index has.
absl::StatusOr<Descriptor> SelectPlatform(const Manifest& index,
                                          absl::string_view platform);

}  // namespace ciagent::oci

#endif  // CIAGENT_OCI_MANIFEST_H_
