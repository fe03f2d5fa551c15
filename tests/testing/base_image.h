// Base images for assembly tests and benchmarks, made the way an image
// author would, with independent tools: a small root filesystem (an
// /etc/passwd with a non-root user, /tmp, and optionally `filler_bytes` of
// pseudo-random files) becomes an OCI layout with umoci and is pushed with
// skopeo to a registry. Several platforms: one image each, pushed by
// digest, then an image index naming them is put under the tag.
//
//   ASSERT_OK_AND_ASSIGN(BaseImage base, PushBaseImage({
//       .registry = registry->host(), .repository = "base/tiny",
//       .platforms = {"linux/amd64", "linux/arm64"}, .work_dir = tmp}));
//   // base.reference: "127.0.0.1:<port>/base/tiny:1"; base.digest: the index
//
// Credentials go to an auth.json (mode 0600) in `work_dir`, never argv.
// RunAssembledBinary and ReadBackImage check an image as a user would:
// skopeo copies it to a layout, umoci unpacks it, the binary runs from the
// unpacked root filesystem.
//
// Errors: kNotFound when umoci or skopeo is missing; kInternal naming the
// tool and its stderr when one fails.
#ifndef CIAGENT_TESTS_TESTING_BASE_IMAGE_H_
#define CIAGENT_TESTS_TESTING_BASE_IMAGE_H_

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace ciagent::testing {

struct BaseImageSpec {
  std::string registry;  // "127.0.0.1:<port>"
  std::string repository = "base/tiny";
  std::string tag = "1";
  // One platform: a plain image; several: an index of one image each.
  std::vector<std::string> platforms = {"linux/amd64"};
  // For the registry (skopeo through an auth file).
  std::string username;
  std::string password;
  // Pseudo-random bytes in the root filesystem (a few MiB for benchmarks).
  int64_t filler_bytes = 0;
  // Scratch space: the root filesystem, the layout, the auth file.
  std::string work_dir;
};

struct BaseImage {
  std::string reference;  // registry/repository:tag
  std::string digest;     // what the tag points at (manifest or index)
  // platform => digest of its image manifest.
  std::map<std::string, std::string> manifests;
  int layers = 0;  // per platform
};

absl::StatusOr<BaseImage> PushBaseImage(const BaseImageSpec& spec);

// An auth.json (mode 0600) at `path` with credentials for each registry.
struct RegistryLogin {
  std::string registry;
  std::string username;
  std::string password;
};
absl::Status WriteAuthFile(const std::string& path,
                           const std::vector<RegistryLogin>& logins);

struct ReadBackOptions {
  std::string auth_file;  // empty: anonymous
  std::string work_dir;   // the layout and bundle go here
};

struct ReadBack {
  std::string raw_manifest;  // skopeo inspect --raw
  std::string config;        // skopeo inspect --config (the raw config)
  std::string rootfs;        // umoci unpack's root filesystem
};

// skopeo inspect (--raw, --config), skopeo copy to an OCI layout, umoci
// unpack: the image `reference` as another client sees it.
absl::StatusOr<ReadBack> ReadBackImage(const std::string& reference,
                                       const ReadBackOptions& options);

// Runs `path_in_image` with `args` inside `rootfs` (chroot as root, which
// proves it is found there without anything from the host; else run
// directly) and returns its stdout.
absl::StatusOr<std::string> RunFromRootfs(const std::string& rootfs,
                                          const std::string& path_in_image,
                                          const std::vector<std::string>& args);

// A statically linked Rust program at `dir`/`name` that prints
// "hello from <first argument>": kNotFound without rustc.
absl::StatusOr<std::string> BuildHelloBinary(const std::string& dir,
                                             const std::string& name);

}  // namespace ciagent::testing

#endif  // CIAGENT_TESTS_TESTING_BASE_IMAGE_H_
