// OCI image layout directories: what `buildah push IMAGE oci:DIR:TAG` and
// `docker buildx build --output type=oci,tar=false` write.
//
//   DIR/oci-layout         {"imageLayoutVersion":"1.0.0"}
//   DIR/index.json         an image index: the entry points
//   DIR/blobs/sha256/<hex> every manifest, index, config and layer
//
// ReadLayout picks the image to push and lists everything it consists of.
// The root is the index.json entry whose org.opencontainers.image.ref.name
// is `ref_name`; without a ref name, the only entry, or -- when index.json
// has several (one per platform) -- index.json itself as a multi-platform
// index. Manifests and indexes are read and verified against their digests
// (they are small); config and layer blobs are only checked for presence
// and size: they are hashed while being uploaded (registry_client.h).
//
// Errors: kNotFound (no such directory, no entry with ref_name, a blob
// missing), kDataLoss (a manifest not matching its digest, a blob of the
// wrong size), kInvalidArgument (not a layout, unparseable manifests).
#ifndef CIAGENT_OCI_LAYOUT_H_
#define CIAGENT_OCI_LAYOUT_H_

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "ciagent/oci/manifest.h"
#include "ciagent/oci/registry_client.h"

namespace ciagent::oci {

struct LayoutImage {
  // Every manifest and index, children before the index naming them; the
  // root (the one to tag) is last.
  std::vector<ManifestDocument> manifests;
  // Config and layer blobs, each once, largest first.
  std::vector<BlobFile> blobs;

  const ManifestDocument& root() const { return manifests.back(); }
};

absl::StatusOr<LayoutImage> ReadLayout(absl::string_view dir,
                                       absl::string_view ref_name = "");

}  // namespace ciagent::oci

#endif  // CIAGENT_OCI_LAYOUT_H_
