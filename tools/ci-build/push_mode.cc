#include "push_mode.h"

#include <cstdio>
#include <string>
#include <vector>

#include "absl/flags/declare.h"
#include "absl/flags/flag.h"
#include "absl/strings/str_split.h"
#include "absl/time/time.h"
#include "ciagent/base/exit_code.h"
#include "ciagent/base/json_writer.h"
#include "ciagent/base/log.h"
#include "ciagent/base/status_macros.h"
#include "ciagent/oci/push.h"
#include "ciagent/oci/reference.h"

ABSL_FLAG(std::string, push_layout, "",
          "push mode: an OCI image layout directory to push to --image");
ABSL_DECLARE_FLAG(std::string, image);

ABSL_FLAG(std::string, extra_tags, "",
          "push mode: comma-separated further tags for the same image");
ABSL_FLAG(std::string, layout_ref, "",
          "push mode: the layout's image to push (its ref name); default: "
          "the only one, or all platforms as one index");
ABSL_FLAG(int, push_concurrency, 4, "blobs uploaded in parallel");
ABSL_FLAG(std::string, mount_from, "",
          "comma-separated repositories to mount missing blobs from");

namespace ciagent {
namespace {

constexpr int kExitRetryLater = 75;

int PushFailed(const absl::Status& status) {
  const int code = status.code() == absl::StatusCode::kUnavailable
                       ? kExitRetryLater
                       : ExitCodeFor(status);
  LogError("push failed", {{"error", status}, {"exit_code", code}});
  return code;
}

absl::StatusOr<oci::PushResult> Push() {
  CIAGENT_ASSIGN_OR_RETURN(
      oci::ImageReference image,
      oci::ParseImageReference(absl::GetFlag(FLAGS_image)));
  CIAGENT_ASSIGN_OR_RETURN(oci::RegistryOptions options,
                           oci::RegistryOptionsFor(image.registry));
  CIAGENT_ASSIGN_OR_RETURN(auto client,
                           oci::RegistryClient::Create(std::move(options)));
  oci::PushOptions push{.repository = image.repository,
                        .tags = {image.tag},
                        .ref_name = absl::GetFlag(FLAGS_layout_ref),
                        .concurrency = absl::GetFlag(FLAGS_push_concurrency)};
  for (absl::string_view tag : absl::StrSplit(absl::GetFlag(FLAGS_extra_tags),
                                              ',', absl::SkipEmpty())) {
    push.tags.emplace_back(tag);
  }
  for (absl::string_view from : absl::StrSplit(absl::GetFlag(FLAGS_mount_from),
                                               ',', absl::SkipEmpty())) {
    push.mount_from.emplace_back(from);
  }
  push.on_blob = [](const oci::BlobPushed& blob) {
    LogInfo("blob", {{"digest", blob.digest},
                     {"size", blob.size},
                     {"action", oci::BlobActionName(blob.action)},
                     {"duration_ms", blob.duration}});
  };
  return oci::PushLayout(*client, absl::GetFlag(FLAGS_push_layout), push);
}

}  // namespace

bool PushModeRequested() { return !absl::GetFlag(FLAGS_push_layout).empty(); }

int RunPushLayout() {
  absl::StatusOr<oci::PushResult> pushed = Push();
  if (!pushed.ok()) return PushFailed(pushed.status());
  JsonObjectBuilder json;
  json.Add("image", absl::GetFlag(FLAGS_image))
      .Add("digest", pushed->digest)
      .Add("media_type", pushed->media_type)
      .Add("blobs", pushed->blobs)
      .Add("blobs_uploaded", pushed->blobs_uploaded)
      .Add("blobs_existing", pushed->blobs_existing)
      .Add("blobs_mounted", pushed->blobs_mounted)
      .Add("manifests", pushed->manifests)
      .Add("bytes_uploaded", static_cast<int64_t>(pushed->bytes_uploaded))
      .Add("duration_ms", absl::ToInt64Milliseconds(pushed->duration));
  std::printf("%s\n", std::move(json).Build().c_str());
  return kExitOk;
}

}  // namespace ciagent
