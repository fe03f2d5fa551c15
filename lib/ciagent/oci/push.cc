#include "ciagent/oci/push.h"

#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "ciagent/base/status_macros.h"
#include "ciagent/oci/layout.h"
#include "ciagent/oci/reference.h"

namespace ciagent::oci {
namespace {

// One blob to push: a local file, or (remote) one the source holds.
struct PendingBlob {
  BlobFile file;
  bool remote = false;
};

std::string TempDir(const PushOptions& options) {
  if (!options.temp_dir.empty()) return options.temp_dir;
  const char* tmp = std::getenv("TMPDIR");
  return tmp != nullptr && tmp[0] != '\0' ? tmp : "/tmp";
}

// A remote blob the target cannot mount: through a temporary file.
absl::Status CopyBlob(RegistryClient& client, const ImageToPush& image,
                      const PushOptions& options, const BlobFile& blob) {
  const std::string path =
      absl::StrCat(TempDir(options), "/ciagent-copy-", getpid(), "-",
                   blob.digest.substr(7, 16));
  BlobFile local = blob;
  local.path = path;
  absl::Status status =
      image.source->DownloadBlob(image.source_repository, local);
  if (status.ok()) status = client.UploadBlob(options.repository, local);
  unlink(path.c_str());
  return status;
}

absl::StatusOr<BlobAction> PushBlob(RegistryClient& client,
                                    const ImageToPush& image,
                                    const PushOptions& options,
                                    const PendingBlob& blob) {
  CIAGENT_ASSIGN_OR_RETURN(
      bool exists, client.BlobExists(options.repository, blob.file.digest));
  if (exists) return BlobAction::kExisted;
  std::vector<std::string> mount_from = options.mount_from;
  const bool same_registry =
      blob.remote && image.source->base_url() == client.base_url();
  if (same_registry) {
    mount_from.insert(mount_from.begin(), image.source_repository);
  }
  for (const std::string& from : mount_from) {
    if (from == options.repository) continue;
    absl::StatusOr<bool> mounted =
        client.MountBlob(options.repository, blob.file.digest, from);
    // A source we may not read is no reason to fail: upload instead.
    if (mounted.ok() && *mounted) return BlobAction::kMounted;
  }
  if (blob.remote) {
    CIAGENT_RETURN_IF_ERROR(CopyBlob(client, image, options, blob.file));
    return same_registry ? BlobAction::kUploaded : BlobAction::kCopied;
  }
  CIAGENT_RETURN_IF_ERROR(client.UploadBlob(options.repository, blob.file));
  return BlobAction::kUploaded;
}

// Runs PushBlob over `blobs` on up to `concurrency` threads; the first error
// stops the workers from taking more blobs.
absl::Status PushBlobs(RegistryClient& client, const ImageToPush& image,
                       const PushOptions& options,
                       const std::vector<PendingBlob>& blobs,
                       PushResult* result) {
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
      absl::StatusOr<BlobAction> action =
          PushBlob(client, image, options, blobs[i]);
      absl::MutexLock lock(&mu);
      if (!action.ok()) {
        if (first_error.ok()) first_error = action.status();
        return;
      }
      const BlobFile& blob = blobs[i].file;
      switch (*action) {
        case BlobAction::kExisted:
          ++result->blobs_existing;
          break;
        case BlobAction::kMounted:
          ++result->blobs_mounted;
          break;
        case BlobAction::kUploaded:
          ++result->blobs_uploaded;
          result->bytes_uploaded += blob.size;
          break;
        case BlobAction::kCopied:
          ++result->blobs_copied;
          result->bytes_uploaded += blob.size;
          break;
      }
      if (options.on_blob) {
        options.on_blob({.digest = blob.digest,
                         .size = blob.size,
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

absl::Status ValidateTarget(const PushOptions& options) {
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
  return absl::OkStatus();
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
    case BlobAction::kCopied:
      return "copied";
  }
  return "unknown";
}

absl::StatusOr<PushResult> PushImage(RegistryClient& client,
                                     const ImageToPush& image,
                                     const PushOptions& options) {
  const absl::Time start = absl::Now();
  CIAGENT_RETURN_IF_ERROR(ValidateTarget(options));
  if (image.manifests.empty()) {
    return absl::InvalidArgumentError("push: no manifest given");
  }
  if (!image.remote_blobs.empty() && image.source == nullptr) {
    return absl::InvalidArgumentError("push: remote blobs without a source");
  }
  std::vector<PendingBlob> blobs;
  for (const RemoteBlob& remote : image.remote_blobs) {
    blobs.push_back(
        {.file = {.digest = remote.digest, .size = remote.size}, .remote = true});
  }
  for (const BlobFile& file : image.blobs) blobs.push_back({.file = file});
  // Largest first: the longest transfer starts at once.
  std::stable_sort(blobs.begin(), blobs.end(),
                   [](const PendingBlob& a, const PendingBlob& b) {
                     return a.file.size > b.file.size;
                   });
  PushResult result{.blobs = static_cast<int>(blobs.size())};
  CIAGENT_RETURN_IF_ERROR(PushBlobs(client, image, options, blobs, &result));
  for (size_t i = 0; i + 1 < image.manifests.size(); ++i) {
    const ManifestDocument& child = image.manifests[i];
    CIAGENT_RETURN_IF_ERROR(client
                                .PutManifest(options.repository, child.digest,
                                             child.media_type, child.bytes)
                                .status());
    ++result.manifests;
  }
  const ManifestDocument& root = image.manifests.back();
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

absl::StatusOr<PushResult> PushLayout(RegistryClient& client,
                                      absl::string_view layout_dir,
                                      const PushOptions& options) {
  const absl::Time start = absl::Now();
  CIAGENT_RETURN_IF_ERROR(ValidateTarget(options));
  CIAGENT_ASSIGN_OR_RETURN(LayoutImage layout,
                           ReadLayout(layout_dir, options.ref_name));
  ImageToPush image{.manifests = std::move(layout.manifests),
                    .blobs = std::move(layout.blobs)};
  CIAGENT_ASSIGN_OR_RETURN(PushResult result,
                           PushImage(client, image, options));
  result.duration = absl::Now() - start;
  return result;
}

}  // namespace ciagent::oci
