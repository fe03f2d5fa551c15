// OCI image layouts and image inspection for registry tests.
//
//   ASSERT_OK_AND_ASSIGN(TestLayout layout,
//       MakeOciLayout(dir, {.layers = 3, .layer_bytes = 1 << 20}));
//   ... push layout.dir ...
//   ASSERT_OK_AND_ASSIGN(std::string digest,
//       InspectDigest(registry->host() + "/owner/app:v1", {}));
//   EXPECT_EQ(digest, layout.root_digest);
//
// Layouts come from make_oci_layout.py (beside this file): deterministic
// real tar+gzip layers. InspectDigest asks skopeo, an independent client,
// what a tag points at. kNotFound when python3 or skopeo is missing.
#ifndef CIAGENT_TESTS_TESTING_OCI_LAYOUT_H_
#define CIAGENT_TESTS_TESTING_OCI_LAYOUT_H_

#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace ciagent::testing {

struct LayoutSpec {
  int layers = 2;
  int layer_bytes = 64 << 10;
  int seed = 1;
  std::string tag = "latest";
  // "linux/amd64,linux/arm64": one manifest each, listed in index.json,
  // or behind one nested image index when `nested_index`.
  std::string platforms;
  bool nested_index = false;
};

struct TestLayout {
  std::string dir;
  // What a tag should point at after the push: the manifest, or for
  // several platforms the index (index.json itself, or the nested one).
  std::string root_digest;
  // Every blob file's digest (manifests, configs, layers).
  std::vector<std::string> blob_digests;
};

absl::StatusOr<TestLayout> MakeOciLayout(const std::string& dir,
                                         const LayoutSpec& spec);

struct InspectOptions {
  std::string username;  // with password: --creds
  std::string password;
  std::string ca_file;  // https: trust this CA; empty: plain http
};

// The digest of the raw manifest `image` (host:port/repo:tag) points at,
// according to `skopeo inspect --raw`.
absl::StatusOr<std::string> InspectDigest(const std::string& image,
                                          const InspectOptions& options);

}  // namespace ciagent::testing

#endif  // CIAGENT_TESTS_TESTING_OCI_LAYOUT_H_
