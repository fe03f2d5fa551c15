#include "ciagent/oci/push.h"

#include <algorithm>
#include <atomic>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "ciagent/base/status_macros.h"
#include "ciagent/oci/layout.h"
#include "ciagent/oci/reference.h"

namespace ciagent::oci {
namespace {

absl::StatusOr<BlobAction> PushBlob(RegistryClient& client,
                                    const PushOptions& options,
                                    const BlobFile& blob) {
  CIAGENT_ASSIGN_OR_RETURN(bool exists,
                           client.BlobExists(options.repository, blob.digest));
  if (exists) return BlobAction::kExisted;
  for (const std::string& from : options.mount_from) {
    if (from == options.repository) continue;
    absl::StatusOr<bool> mounted =
        client.MountBlob(options.repository, blob.digest, from);
    // A source we may not read is no reason to fail: upload instead.
    if (mounted.ok() && *mounted) return BlobAction::kMounted;
  }
  CIAGENT_RETURN_IF_ERROR(client.UploadBlob(options.repository, blob));
  return BlobAction::kUploaded;
}

// Runs PushBlob over `blobs` on up to `concurrency` threads; the first error
// stops the workers from taking more blobs.
absl::Status PushBlobs(RegistryClient& client, const PushOptions& options,
                       const std::vector<BlobFile>& blobs, PushResult* result) {
  std::atomic<size_t> next{0};
  absl::Mutex mu;
  absl::Status first_error;
  auto work = [&] {
    for (size_t i; (i = next.fetch_add(1)) < blobs.size();) {
      {
        absl::MutexLock lock(&mu);
        if (!first_error.ok()) return;
      }
      const absl::Time start = absl::Now();
      absl::StatusOr<BlobAction> action = PushBlob(client, options, blobs[i]);
      absl::MutexLock lock(&mu);
      if (!action.ok()) {
        if (first_error.ok()) first_error = action.status();
        return;
      }
      switch (*action) {
        case BlobAction::kExisted:
          ++result->blobs_existing;
          break;
        case BlobAction::kMounted:
          ++result->blobs_mounted;
          break;
        case BlobAction::kUploaded:
          ++result->blobs_uploaded;
          result->bytes_uploaded += blobs[i].size;
          break;
      }
      if (options.on_blob) {
        options.on_blob({.digest = blobs[i].digest,
                         .size = blobs[i].size,
                         .action = *action,
                         .duration = absl::Now() - start});
      }
    }
  };
  const size_t threads =
      std::min<size_t>(std::max(1, options.concurrency), blobs.size());
  std::vector<std::thread> workers;
  for (size_t i = 1; i < threads; ++i) workers.emplace_back(work);
  work();
  for (std::thread& worker : workers) worker.join();
  return first_error;
}

}  // namespace

const char* BlobActionName(BlobAction action) {
  switch (action) {
    case BlobAction::kExisted:
      return "existed";
    case BlobAction::kMounted:
      return "mounted";
    case BlobAction::kUploaded:
      return "uploaded";
  }
  return "unknown";
}

absl::StatusOr<PushResult> PushLayout(RegistryClient& client,
                                      absl::string_view layout_dir,
                                      const PushOptions& options) {
  const absl::Time start = absl::Now();
  if (!IsValidRepositoryName(options.repository)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "push: invalid repository name \"", options.repository, "\""));
  }
  if (options.tags.empty()) {
    return absl::InvalidArgumentError("push: no tag given");
  }
  for (const std::string& tag : options.tags) {
    if (!IsValidTag(tag)) {
      return absl::InvalidArgumentError(
          absl::StrCat("push: invalid tag \"", tag, "\""));
    }
  }
  CIAGENT_ASSIGN_OR_RETURN(LayoutImage image,
                           ReadLayout(layout_dir, options.ref_name));
  PushResult result{.blobs = static_cast<int>(image.blobs.size())};
  CIAGENT_RETURN_IF_ERROR(PushBlobs(client, options, image.blobs, &result));
  for (size_t i = 0; i + 1 < image.manifests.size(); ++i) {
    const ManifestDocument& child = image.manifests[i];
    CIAGENT_RETURN_IF_ERROR(client
                                .PutManifest(options.repository, child.digest,
                                             child.media_type, child.bytes)
                                .status());
    ++result.manifests;
  }
  const ManifestDocument& root = image.root();
  for (const std::string& tag : options.tags) {
    CIAGENT_ASSIGN_OR_RETURN(result.digest,
                             client.PutManifest(options.repository, tag,
                                                root.media_type, root.bytes));
    result.tags.push_back(tag);
  }
  ++result.manifests;
  result.media_type = root.media_type;
  result.duration = absl::Now() - start;
  return result;
}

}  // namespace ciagent::oci
