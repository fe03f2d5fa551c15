// ImageBuilder: builds the checkout's Dockerfile into an OCI image layout
// directory, without a Docker daemon, for the pipeline's `image` step (the
// OCI registry client pushes the layout afterwards).
//
// Builders:
//   buildah  daemonless, as root, vfs storage, chroot isolation:
//              buildah --root S --runroot R --storage-driver vfs
//                bud --isolation chroot -f <context>/<dockerfile>
//                -t <local name> [--platform P] [--build-arg K=V]... <context>
//              buildah ... push <local name> oci:<staging>:<tag>
//              buildah ... rmi <local name>     (persistent storage only)
//            Storage S is `storage_dir` (kept: base images stay cached), or
//            a temporary one removed afterwards. R and TMPDIR are always
//            temporary. `cache_ref` is ignored.
//   docker   docker buildx build --file <context>/<dockerfile>
//              --output type=oci,dest=<staging>,tar=false,name=<local name>
//              --provenance=false [--platform P] [--build-arg K=V]...
//              [--cache-from type=registry,ref=C
//               --cache-to type=registry,ref=C,mode=max] <context>
//            Needs a reachable daemon and a buildx builder whose driver
//            exports OCI layouts (docker-container, or the containerd image
//            store): the plain `docker` driver cannot.
//   auto     docker when `docker info` and `docker buildx version` succeed
//            (a daemon answers, e.g. at $DOCKER_HOST), else buildah.
//
// Files. Everything temporary lives in <layout_dir>.work (runroot, TMPDIR,
// the temporary storage, the layout being written), removed when BuildImage
// returns. An existing `layout_dir` is removed first; the new layout is
// renamed into place only when complete, so `layout_dir` exists afterwards
// only after a successful build. Its index.json names the image manifest
// with annotation org.opencontainers.image.ref.name = `tag`.
//
// Release executables. Dockerfiles of Rust projects conventionally
// `COPY target/release/<bin>`, while the pipeline's target dir may be a
// shared cache outside the checkout; each of `release_executables` is
// therefore hard-linked (copied across filesystems) to
// <context_dir>/target/release/<name> before the build, and left there.
// A `.dockerignore` that excludes `target` defeats this (both builders
// honour it).
//
// Environment. Builder commands run through RunProcess (process_runner.h)
// with exactly: PATH, HOME, TMPDIR (in the work dir); for buildah
// BUILDAH_ISOLATION=chroot and STORAGE_DRIVER=vfs; for docker the agent's
// DOCKER_HOST, DOCKER_CONTEXT, DOCKER_CONFIG and BUILDX_BUILDER when set;
// then `env` (registry credentials files, proxies), which wins. Before each
// command `output` gets one "agent" line, `$ <command>`; the builder's lines
// follow as "stdout" / "stderr".
//
// Example:
//   ImageBuildOptions options;
//   options.context_dir = "/ci/job/src";
//   options.layout_dir = "/ci/job/image";
//   options.tag = job.commit_sha;
//   options.release_executables = {{"app", "/cache/target/release/app"}};
//   options.should_stop = [&] { return renewer.cancel_requested(); };
//   CIAGENT_ASSIGN_OR_RETURN(ImageBuildResult image, BuildImage(options));
//   // push image.layout_dir, then report image.manifest_digest
//
// Errors (what the pipeline does with them):
//   kInvalidArgument    the checkout or the options are at fault, never
//                       retry: no Dockerfile, a Dockerfile path that is
//                       absolute or has '..', a bad tag or option, or the
//                       build failed on the Dockerfile ("image build failed
//                       on Dockerfile: buildah exited with code 125: Error:
//                       building at STEP ..."): a failed `image` step.
//   kFailedPrecondition no usable builder on this agent (buildah not
//                       installed, docker requested without docker, or the
//                       docker build failed because no daemon answers or
//                       its buildx driver cannot export OCI layouts): the
//                       job cannot build its image here.
//   kDeadlineExceeded   `timeout` passed; the builder was terminated.
//   kCancelled          `should_stop` said so; the builder was terminated.
//   kUnavailable        no space left on device, out of processes, or the
//                       build failed reaching a registry for a base image
//                       (buildah's "pinging container registry", "dial
//                       tcp", "i/o timeout", "toomanyrequests", HTTP
//                       502/503 after its own retries): requeue.
//   kInternal           the builder ran but left no usable layout (export
//                       failed, index.json without the tag), or a file
//                       operation in the work dir failed.
//
// Thread-safety: BuildImage runs on the calling thread and calls `output`
// and `should_stop` there only. Under a child subreaper (process_runner.h)
// run one build at a time per process, and nothing else concurrently.
#ifndef CIAGENT_IMAGE_IMAGE_BUILDER_H_
#define CIAGENT_IMAGE_IMAGE_BUILDER_H_

#include <cstdint>
#include <functional>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"

namespace ciagent {

// True when <source_dir>/<dockerfile> is a regular file (or a link to one).
// `dockerfile` is relative to `source_dir`; false for an absolute path or
// one with a '..' component.
bool HasDockerfile(absl::string_view source_dir,
                   absl::string_view dockerfile = "Dockerfile");

struct ImageBuildOptions {
  // The build context: the checkout. Required.
  std::string context_dir;
  // The Dockerfile, relative to context_dir; neither absolute nor with '..'.
  std::string dockerfile = "Dockerfile";
  // The OCI image layout directory to write; replaced if it exists, so it
  // must not hold context_dir or storage_dir. Required.
  std::string layout_dir;
  // The image's name in the layout (org.opencontainers.image.ref.name): an
  // OCI tag, [A-Za-z0-9_][A-Za-z0-9_.-]{0,127}.
  std::string tag = "latest";
  // "buildah", "docker" or "auto" (see the top of this file).
  std::string builder = "auto";
  // buildah's storage (--root), kept between builds so pulled base images
  // are reused; may be shared by agents (buildah locks it). Empty: a
  // temporary storage in the work dir, removed afterwards.
  std::string storage_dir;
  // Target platform, e.g. "linux/arm64"; empty: the host's.
  std::string platform;
  // --build-arg NAME=VALUE, in order; names non-empty, without '='. The
  // values appear in the logged command line and in the image's history:
  // no secrets.
  std::vector<std::pair<std::string, std::string>> build_args;
  // docker only: registry cache reference for --cache-from/--cache-to
  // (mode=max); empty: no cache. buildah ignores it.
  std::string cache_ref;
  // (name, path): each placed at <context_dir>/target/release/<name> before
  // the build (see Release executables above). Names without '/'.
  std::vector<std::pair<std::string, std::string>> release_executables;
  // PATH of the builder commands. Empty: the agent's PATH.
  std::string path;
  // Extra variables for the builder commands; they override the defaults.
  std::vector<std::pair<std::string, std::string>> env;
  // For the whole build, export included. Required: > 0.
  absl::Duration timeout = absl::Minutes(30);
  // SIGTERM -> SIGKILL delay when terminating the builder.
  absl::Duration grace = absl::Seconds(10);
  // Polled about every 100 ms while a builder command runs; true ends the
  // build (kCancelled).
  std::function<bool()> should_stop;
  // Receives the builder's output lines; `stream` is "stdout", "stderr" or
  // "agent". May be empty.
  std::function<void(absl::string_view stream, absl::string_view line)> output;
};

struct ImageBuildResult {
  // ImageBuildOptions::layout_dir, holding the complete layout.
  std::string layout_dir;
  // The builder that ran: "buildah" or "docker".
  std::string builder;
  // Digest of the image manifest that index.json names with the tag
  // ("sha256:<hex>"); its blob is in the layout.
  std::string manifest_digest;
  // Its media type (application/vnd.oci.image.manifest.v1+json, or an
  // image index for a multi-platform docker build).
  std::string manifest_media_type;
  absl::Duration duration = absl::ZeroDuration();
};

// Builds the image; see the top of this file.
absl::StatusOr<ImageBuildResult> BuildImage(const ImageBuildOptions& options);

// The commands BuildImage runs for a resolved `builder` ("buildah" or
// "docker"), with `image_name` as the builder's local name for the image
// (BuildImage picks a unique one). Validates the options (kInvalidArgument,
// as BuildImage) without touching the filesystem; paths are used as given.
struct ImageBuildCommands {
  // Builds the Dockerfile: its failure is the checkout's.
  std::vector<std::string> build;
  // Writes the layout to `staging_dir`; empty when `build` does.
  std::vector<std::string> export_layout;
  // Removes the local image from persistent storage; empty when none.
  std::vector<std::string> remove_image;
  // Directories BuildImage creates; all but a persistent storage_dir are
  // under `work_dir`, which it removes afterwards.
  std::string work_dir;     // <layout_dir>.work
  std::string staging_dir;  // <work_dir>/layout, renamed to layout_dir
  std::string storage_dir;  // buildah --root
  std::string runroot_dir;  // buildah --runroot
  std::string tmp_dir;      // TMPDIR
};
absl::StatusOr<ImageBuildCommands> PlanImageBuild(
    const ImageBuildOptions& options, absl::string_view builder,
    absl::string_view image_name);

// Digest and media type of the manifest that an OCI layout's index.json
// names `tag`. kInvalidArgument when `index_json` is not an image index;
// kNotFound when no entry carries that tag.
struct LayoutManifest {
  std::string digest;
  std::string media_type;
  int64_t size = 0;
};
absl::StatusOr<LayoutManifest> FindTaggedManifest(absl::string_view index_json,
                                                  absl::string_view tag);

}  // namespace ciagent

#endif  // CIAGENT_IMAGE_IMAGE_BUILDER_H_
