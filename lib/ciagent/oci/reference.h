// Image references: where an image is pushed.
//
//   registry.example.com:3000/owner/app:1f2e3d   registry, repository, tag
//   127.0.0.1:5000/bench/app                     tag "latest"
//
// The first path component is the registry when it contains '.' or ':' or
// is "localhost"; otherwise the reference has no registry (the caller
// supplies one: REGISTRY_URL). Repository components are lowercase
// [a-z0-9] separated by '.', '_', '__' or '-'s, as the distribution spec
// requires; tags are [A-Za-z0-9_][A-Za-z0-9_.-]{0,127}. Digest references
// (`@sha256:...`) are not accepted: a push needs a tag.
#ifndef CIAGENT_OCI_REFERENCE_H_
#define CIAGENT_OCI_REFERENCE_H_

#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace ciagent::oci {

struct ImageReference {
  std::string registry;    // "host[:port]", may be empty
  std::string repository;  // "owner/app"
  std::string tag = "latest";

  // registry/repository:tag (without the registry when it is empty).
  std::string ToString() const;
};

// kInvalidArgument naming the offending part.
absl::StatusOr<ImageReference> ParseImageReference(absl::string_view text);

bool IsValidRepositoryName(absl::string_view name);
bool IsValidTag(absl::string_view tag);

// Turns arbitrary text (a branch name such as "feature/Login-2") into a
// valid tag: invalid characters become '-', at most 128 characters; ""
// when nothing usable is left.
std::string SanitizeTag(absl::string_view text);

// "sha256:" followed by 64 lowercase hex digits: the only digest algorithm
// this client writes or accepts from a layout.
bool IsValidDigest(absl::string_view digest);

}  // namespace ciagent::oci

#endif  // CIAGENT_OCI_REFERENCE_H_
