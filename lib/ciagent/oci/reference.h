// Image references: where an image is pushed.
//
//   registry.example.com:3000/owner/app:1f2e3d   registry, repository, tag
//   127.0.0.1:5000/bench/app                     tag "latest"
//
// The first path component is the registry when it contains '.' or ':' or
// is "localhost"; otherwise the reference has no registry (the caller
// supplies one: REGISTRY_URL). Repository components are lowercase
// [a-z0-9] separated by '.', '_', '__' or '-'s, as the distribution spec
// requires; tags are [A-Za-z0-9_][A-Za-z0-9_.-]{0,127}. ParseImageReference
// refuses digest references (`@sha256:...`): a push needs a tag.
// ParsePullReference, for what is read (a base image), takes either:
//
//   registry.example.com/base/debian:12                by tag
//   registry.example.com/base/debian@sha256:<64 hex>   by digest
//   registry.example.com/base/debian:12@sha256:<hex>   the digest wins
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
  // "sha256:<hex>" when the reference names a digest (pull references
  // only); then it, not the tag, is what is read.
  std::string digest;

  // registry/repository:tag, or registry/repository@digest when a digest
  // is set (without the registry when it is empty).
  std::string ToString() const;
  // What a manifest request names: the digest when set, else the tag.
  const std::string& manifest_reference() const {
    return digest.empty() ? tag : digest;
  }
};

// kInvalidArgument naming the offending part.
absl::StatusOr<ImageReference> ParseImageReference(absl::string_view text);
// The same for an image to read: a tag, a digest or both. kInvalidArgument
// naming the offending part (a digest that is not sha256:<64 hex>).
absl::StatusOr<ImageReference> ParsePullReference(absl::string_view text);

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
