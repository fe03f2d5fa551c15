// PushLayout: an OCI image layout directory to a registry. PushImage: an
// image whose blobs are partly local files and partly held by another
// repository, on this registry or another (an image assembled on a base).
//
// Order, so that a registry never sees a manifest naming something it does
// not have: every config and layer blob first (in parallel, bounded by
// `concurrency`), then the manifests by digest, children before the index
// naming them, and last the root under each tag. Each blob is first looked
// up (HEAD): a blob the registry has is not sent again, so a re-push sends
// no blob bytes. A missing blob is mounted from one of `mount_from` (same
// registry, no bytes sent) when possible, else uploaded. A missing remote
// blob (PushImage) is mounted from its repository when that is on the same
// registry, else copied: downloaded to a temporary file in `temp_dir`
// (streamed, its digest verified, registry_client.h) and uploaded from it.
//
//   CIAGENT_ASSIGN_OR_RETURN(auto client, RegistryClient::Create(options));
//   CIAGENT_ASSIGN_OR_RETURN(
//       PushResult pushed,
//       PushLayout(*client, "/work/job/image",
//                  {.repository = "owner/app", .tags = {"1f2e3d", "main"}}));
//   // pushed.digest: what the tags now point at
//
// Errors are the client's (registry_client.h) and ReadLayout's (layout.h);
// the first failing blob stops the others and names itself.
//
// Thread-safety: PushLayout may run concurrently with other calls on the
// same client; `on_blob` is called from worker threads, one call at a time.
#ifndef CIAGENT_OCI_PUSH_H_
#define CIAGENT_OCI_PUSH_H_

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "ciagent/oci/manifest.h"
#include "ciagent/oci/registry_client.h"

namespace ciagent::oci {

enum class BlobAction { kExisted, kMounted, kUploaded, kCopied };
const char* BlobActionName(BlobAction action);

struct BlobPushed {
  std::string digest;
  uint64_t size = 0;
  BlobAction action = BlobAction::kUploaded;
  absl::Duration duration;
};

struct PushOptions {
  std::string repository;         // "owner/app"; required
  std::vector<std::string> tags;  // at least one; the first is "the" tag
  // Which index.json entry to push (its ref name); see layout.h.
  std::string ref_name;
  int concurrency = 4;
  // Repositories on the same registry to mount missing blobs from.
  std::vector<std::string> mount_from;
  // Where copied blobs pass through (PushImage); empty: $TMPDIR, else /tmp.
  std::string temp_dir;
  std::function<void(const BlobPushed&)> on_blob;
};

struct PushResult {
  std::string digest;      // of the root manifest or index
  std::string media_type;  // of the root
  std::vector<std::string> tags;
  int blobs = 0;
  int blobs_existing = 0;
  int blobs_mounted = 0;
  int blobs_uploaded = 0;
  int blobs_copied = 0;  // from another registry
  int manifests = 0;
  uint64_t bytes_uploaded = 0;  // copied blobs included
  absl::Duration duration;
};

absl::StatusOr<PushResult> PushLayout(RegistryClient& client,
                                      absl::string_view layout_dir,
                                      const PushOptions& options);

// A blob another repository holds.
struct RemoteBlob {
  std::string digest;
  uint64_t size = 0;
};

struct ImageToPush {
  // Every manifest and index, children before the index naming them; the
  // last is the root, pushed under each tag. At least one.
  std::vector<ManifestDocument> manifests;
  // Blobs on local disk (a new layer, a config).
  std::vector<BlobFile> blobs;
  // Blobs `source_repository` on `source` holds (a base image's layers).
  std::vector<RemoteBlob> remote_blobs;
  RegistryClient* source = nullptr;  // required with remote_blobs; not owned
  std::string source_repository;
};

// Pushes `image` to `client` (see the top of this file). `options.ref_name`
// is not used. Errors: the clients' (registry_client.h) of either registry.
absl::StatusOr<PushResult> PushImage(RegistryClient& client,
                                     const ImageToPush& image,
                                     const PushOptions& options);

}  // namespace ciagent::oci

#endif  // CIAGENT_OCI_PUSH_H_
