#include "ciagent/image/image_step.h"

#include <git2.h>
#include <sys/utsname.h>

#include <filesystem>
#include <optional>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "ciagent/base/file_lock.h"
#include "ciagent/base/status_macros.h"
#include "ciagent/image/assembly.h"
#include "ciagent/image/image_builder.h"
#include "ciagent/cache/prune.h"
#include "ciagent/oci/push.h"
#include "ciagent/oci/reference.h"

namespace ciagent {
namespace {

StepRecord Finished(StepStatus status, std::string reason = "") {
  StepRecord record;
  record.status = status;
  record.exit_code = status == StepStatus::kOk ? 0 : 1;
  record.reason = std::move(reason);
  return record;
}

// How a build error ends the step (image_builder.h's codes).
absl::StatusOr<StepRecord> BuildFailure(const absl::Status& status) {
  switch (status.code()) {
    case absl::StatusCode::kDeadlineExceeded:
      return Finished(StepStatus::kTimeout, std::string(status.message()));
    case absl::StatusCode::kCancelled:
      return Finished(StepStatus::kCancelled, std::string(status.message()));
    case absl::StatusCode::kUnavailable:
      return Annotate(status, "image build");
    default:
      return Finished(StepStatus::kFailed, std::string(status.message()));
  }
}

// The commit `revision` (HEAD when empty) of the checkout: its id and
// committer time. Without a repository there, SOURCE_DATE_EPOCH (the
// reproducible-builds convention), else the Unix epoch: never the clock.
struct SourceCommit {
  std::string id;
  absl::Time time = absl::UnixEpoch();
  std::string note;  // how the time was found, for the log
};

SourceCommit ReadSourceCommit(const std::string& source_dir,
                              const std::string& revision) {
  SourceCommit commit{.id = revision};
  const char* epoch = std::getenv("SOURCE_DATE_EPOCH");
  int64_t seconds = 0;
  git_libgit2_init();
  git_repository* repo = nullptr;
  git_object* object = nullptr;
  if (git_repository_open_ext(&repo, source_dir.c_str(),
                              GIT_REPOSITORY_OPEN_NO_SEARCH, nullptr) == 0 &&
      git_revparse_single(&object, repo,
                          revision.empty() ? "HEAD" : revision.c_str()) == 0 &&
      git_object_type(object) == GIT_OBJECT_COMMIT) {
    const git_commit* head = reinterpret_cast<const git_commit*>(object);
    commit.id = git_oid_tostr_s(git_commit_id(head));
    commit.time = absl::FromUnixSeconds(git_commit_time(head));
    commit.note = absl::StrCat("commit ", commit.id.substr(0, 12));
  } else if (epoch != nullptr && absl::SimpleAtoi(epoch, &seconds)) {
    commit.time = absl::FromUnixSeconds(seconds);
    commit.note = "SOURCE_DATE_EPOCH (no git repository in the checkout)";
  } else {
    commit.note = "the Unix epoch (no git repository in the checkout)";
  }
  git_object_free(object);
  git_repository_free(repo);
  git_libgit2_shutdown();
  return commit;
}

class ImageStepRun {
 public:
  explicit ImageStepRun(const ImageStepOptions& options) : options_(options) {}

  absl::StatusOr<StepRecord> Run(const ImageStepContext& context,
                                 ImageRecord* image) {
    const ImageConfig defaults;
    const ImageConfig& config =
        context.image != nullptr ? *context.image : defaults;
    repository_ = config.name.empty() ? options_.repository : config.name;
    if (config.assembled()) return Assemble(context, config, image);
    if (!HasDockerfile(context.source_dir, config.dockerfile)) {
      return Finished(StepStatus::kSkipped,
                      absl::StrCat("no ", config.dockerfile));
    }
    if (options_.builder == "assembly") {
      return Finished(
          StepStatus::kFailed,
          absl::StrCat("this agent assembles images only (image builder "
                       "\"assembly\": no root, no buildah): set image.base "
                       "in Cargo.toml instead of building ",
                       config.dockerfile));
    }
    // The builder takes the Dockerfile relative to the context, which
    // holds it (ParsePipelineConfig checks that).
    const bool whole_checkout = config.context == ".";
    const std::string layout_dir = context.work_dir + "/image";
    ImageBuildOptions build{
        .context_dir = whole_checkout
                           ? context.source_dir
                           : absl::StrCat(context.source_dir, "/",
                                          config.context),
        .dockerfile = whole_checkout ? config.dockerfile
                                     : config.dockerfile.substr(
                                           config.context.size() + 1),
        .layout_dir = layout_dir,
        .tag = options_.tags.front(),
        .builder = options_.builder,
        .storage_dir = options_.storage_dir,
        .platform = options_.platform,
        .build_args = config.build_args,
        .path = options_.path,
        .env = options_.env,
        .timeout = context.time_left,
        .grace = options_.grace,
        .should_stop = context.should_stop,
        .output = context.output};
    build.cache_ref = CacheRef();
    for (const Artifact& artifact : context.so_far.artifacts) {
      build.release_executables.emplace_back(artifact.name, artifact.path);
    }
    // A kept storage is a cache entry: a shared lock keeps the pruner off
    // it while the build runs, and its stamp records the use.
    std::optional<FileLock> storage_lock;
    if (!options_.storage_dir.empty()) {
      absl::StatusOr<FileLock> lock = FileLock::AcquireShared(
          options_.storage_dir + ".lock", absl::Minutes(5));
      if (!lock.ok()) return Annotate(lock.status(), "image storage");
      storage_lock = *std::move(lock);
      if (absl::Status touched = TouchLastUseStamp(options_.storage_dir);
          !touched.ok()) {
        context.output("agent", absl::StrCat("image storage not stamped: ",
                                             touched.message()));
      }
    }
    absl::StatusOr<ImageBuildResult> built = BuildImage(build);
    if (!built.ok()) return BuildFailure(built.status());
    image->builder = built->builder;
    image->build_duration = built->duration;
    absl::StatusOr<StepRecord> pushed = Push(context, layout_dir, image);
    std::error_code ignored;
    std::filesystem::remove_all(layout_dir, ignored);
    return pushed;
  }

 private:
  // `base` set: the image is written directly, no Dockerfile (assembly.h).
  absl::StatusOr<StepRecord> Assemble(const ImageStepContext& context,
                                      const ImageConfig& config,
                                      ImageRecord* image) {
    const SourceCommit commit =
        ReadSourceCommit(context.source_dir, options_.revision);
    AssemblyOptions assembly{.image = config,
                             .platform = options_.platform,
                             .created = commit.time,
                             .source = options_.source,
                             .revision = commit.id,
                             .registry = options_.registry,
                             .repository = repository_,
                             .tags = options_.tags,
                             .work_dir = context.work_dir + "/assembly",
                             .concurrency = options_.push_concurrency,
                             .on_blob = BlobLogger(context),
                             .should_stop = context.should_stop};
    for (const Artifact& artifact : context.so_far.artifacts) {
      assembly.executables.emplace_back(artifact.name, artifact.path);
    }
    context.output("agent", absl::StrCat("assembling ", repository_, ":",
                                         options_.tags.front(), " on ",
                                         config.base, ", created at ",
                                         absl::FormatTime(commit.time), " (",
                                         commit.note, ")"));
    absl::StatusOr<AssemblyResult> built = AssembleImage(assembly);
    if (!built.ok()) {
      switch (built.status().code()) {
        case absl::StatusCode::kUnavailable:  // the registry or the disk
          return Annotate(built.status(), "image assembly");
        case absl::StatusCode::kCancelled:
          return Finished(StepStatus::kCancelled,
                          std::string(built.status().message()));
        default:
          return Finished(StepStatus::kFailed,
                          std::string(built.status().message()));
      }
    }
    image->reference = built->reference;
    image->digest = built->digest;
    image->tags = built->push.tags;
    image->builder = "assembly";
    image->blobs_uploaded = built->push.blobs_uploaded + built->push.blobs_copied;
    image->blobs_existing = built->push.blobs_existing + built->push.blobs_mounted;
    image->bytes_uploaded = static_cast<int64_t>(built->push.bytes_uploaded);
    image->build_duration = built->assembly_duration;
    image->push_duration = built->push.duration;
    context.output("agent", absl::StrCat("base ", built->base, " (",
                                         built->platform, ")"));
    context.output("agent", absl::StrCat("pushed ", image->reference, "@",
                                         built->digest));
    return Finished(StepStatus::kOk);
  }

  static std::function<void(const oci::BlobPushed&)> BlobLogger(
      const ImageStepContext& context) {
    return [&context](const oci::BlobPushed& blob) {
      context.output(
          "agent",
          absl::StrCat(blob.digest.substr(0, 19), " ",
                       oci::BlobActionName(blob.action), " (", blob.size,
                       " bytes, ", absl::ToInt64Milliseconds(blob.duration),
                       " ms)"));
    };
  }

  absl::StatusOr<StepRecord> Push(const ImageStepContext& context,
                                  const std::string& layout_dir,
                                  ImageRecord* image) {
    absl::StatusOr<std::unique_ptr<oci::RegistryClient>> client =
        oci::RegistryClient::Create(options_.registry);
    if (!client.ok()) {
      return Finished(StepStatus::kFailed,
                      std::string(client.status().message()));
    }
    const std::string reference = absl::StrCat(
        (*client)->host(), "/", repository_, ":", options_.tags.front());
    context.output("agent", absl::StrCat("pushing ", reference));
    oci::PushOptions push{.repository = repository_,
                          .tags = options_.tags,
                          .concurrency = options_.push_concurrency};
    push.on_blob = BlobLogger(context);
    absl::StatusOr<oci::PushResult> pushed =
        oci::PushLayout(**client, layout_dir, push);
    if (!pushed.ok()) {
      switch (pushed.status().code()) {
        case absl::StatusCode::kUnavailable:  // another attempt may get through
          return pushed.status();
        case absl::StatusCode::kCancelled:  // stopped while retrying
          return Finished(StepStatus::kCancelled,
                          std::string(pushed.status().message()));
        default:
          return Finished(StepStatus::kFailed,
                          std::string(pushed.status().message()));
      }
    }
    image->reference = reference;
    image->digest = pushed->digest;
    image->tags = pushed->tags;
    image->blobs_uploaded = pushed->blobs_uploaded;
    image->blobs_existing = pushed->blobs_existing + pushed->blobs_mounted;
    image->bytes_uploaded = static_cast<int64_t>(pushed->bytes_uploaded);
    image->push_duration = pushed->duration;
    context.output("agent",
                   absl::StrCat("pushed ", reference, "@", pushed->digest));
    return Finished(StepStatus::kOk);
  }

  // docker buildx's registry cache, one per architecture beside the image:
  // <registry>/<repository>:buildcache-<arch> (buildah ignores it).
  std::string CacheRef() const {
    std::string arch = options_.platform;  // "linux/arm64": linux-arm64
    if (arch.empty()) {
      struct utsname host {};
      uname(&host);
      const absl::string_view machine = host.machine;
      arch = machine == "x86_64"    ? "amd64"
             : machine == "aarch64" ? "arm64"
                                    : std::string(machine);
    }
    return absl::StrCat(RegistryHost(), "/", repository_, ":buildcache-",
                        oci::SanitizeTag(arch));
  }

  std::string RegistryHost() const {
    absl::string_view host = options_.registry.registry;
    if (const size_t scheme = host.find("://"); scheme != host.npos) {
      host.remove_prefix(scheme + 3);
    }
    return std::string(absl::StripSuffix(host, "/"));
  }

  const ImageStepOptions& options_;
  // The configuration's image name, else options_.repository.
  std::string repository_;
};

}  // namespace

ImageStep MakeImageStep(ImageStepOptions options) {
  return [options = std::move(options)](const ImageStepContext& context,
                                        ImageRecord* image) {
    return ImageStepRun(options).Run(context, image);
  };
}

std::string ImageRepositoryFor(absl::string_view repo_url) {
  absl::string_view path = repo_url;
  if (const size_t scheme = path.find("://"); scheme != path.npos) {
    path.remove_prefix(scheme + 3);
    path.remove_prefix(std::min(path.size(), path.find('/')));
  }
  path = absl::StripPrefix(path, "/");
  path = absl::StripSuffix(absl::StripSuffix(path, "/"), ".git");
  std::string name;
  for (char c : path) {
    const char lower = absl::ascii_tolower(static_cast<unsigned char>(c));
    const bool keep = absl::ascii_isalnum(static_cast<unsigned char>(lower)) ||
                      lower == '/' || lower == '.' || lower == '_' ||
                      lower == '-';
    name.push_back(keep ? lower : '-');
  }
  return name;
}

std::vector<std::string> ImageTagsFor(const Job& job) {
  std::vector<std::string> tags = {
      job.image && !job.image->tag.empty() ? job.image->tag : job.commit};
  if (std::string branch = oci::SanitizeTag(job.branch);
      !branch.empty() && branch != tags.front()) {
    tags.push_back(std::move(branch));
  }
  return tags;
}

}  // namespace ciagent
