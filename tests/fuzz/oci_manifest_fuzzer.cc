// libFuzzer target for the OCI manifest/index parser, which reads layouts
// and registry answers. Beyond "no crash, no sanitizer report":
//   - every accepted descriptor has a valid sha256 digest and a size >= 0;
//   - a manifest has no `manifests`, an index no config or layers;
//   - rejections are kInvalidArgument with a short message.
// Any violation calls abort() so the fuzzer records the input.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>

#include "absl/strings/string_view.h"
#include "ciagent/oci/manifest.h"
#include "ciagent/oci/reference.h"

namespace {

void Check(bool condition, const char* what) {
  if (!condition) {
    std::fprintf(stderr, "oci_manifest_fuzzer: violated: %s\n", what);
    std::abort();
  }
}

void CheckDescriptor(const ciagent::oci::Descriptor& descriptor) {
  Check(ciagent::oci::IsValidDigest(descriptor.digest),
        "descriptors have valid digests");
  Check(descriptor.size >= 0, "descriptor sizes are not negative");
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const absl::string_view input(reinterpret_cast<const char*>(data), size);
  absl::StatusOr<ciagent::oci::Manifest> manifest =
      ciagent::oci::ParseManifest(input);
  if (!manifest.ok()) {
    Check(manifest.status().code() == absl::StatusCode::kInvalidArgument,
          "rejections are kInvalidArgument");
    Check(manifest.status().message().size() < 300,
          "rejection messages are short");
    return 0;
  }
  Check(ciagent::oci::IsManifestMediaType(manifest->media_type),
        "accepted media types are manifest types");
  if (manifest->is_index()) {
    Check(manifest->layers.empty(), "indexes have no layers");
    for (const auto& child : manifest->manifests) CheckDescriptor(child);
  } else {
    Check(manifest->manifests.empty(), "manifests have no children");
    CheckDescriptor(manifest->config);
    for (const auto& layer : manifest->layers) CheckDescriptor(layer);
  }
  return 0;
}
