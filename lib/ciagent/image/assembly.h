// Image assembly: a Rust service's image written directly as OCI data -- a
// base image plus one layer holding the release binaries -- without a
// Dockerfile, a builder, a daemon or root (what `ko` does for Go).
//
// AssembleImage:
//   1. resolves the base through its registry: a tag or digest; an index
//      (multi-platform) gives the manifest of `platform` (the agent's own by
//      default: its build target);
//   2. writes one layer: the binaries under `path` in a tar with sorted
//      entries (the directories of `path`, then the files), uid/gid 0, mode
//      0755, mtime = `created`, no extended attributes, gzip-compressed;
//   3. writes the config: the base's, with rootfs.diff_ids and history
//      extended by the new layer, and Entrypoint, Cmd, Env, WorkingDir,
//      User, ExposedPorts and Labels set (ImageConfig in pipeline_config.h:
//      `[workspace.metadata.ciagent.image]`), plus the labels
//      org.opencontainers.image.{source,revision,created};
//   4. writes the manifest: the base's layers and the new one, in the base
//      manifest's family (OCI, or Docker schema 2 for a Docker base), with
//      the OCI annotations source, revision, created, base.name and
//      base.digest (OCI only: Docker manifests have no annotations);
//   5. pushes (oci/push.h PushImage): the base's layers mounted when base and
//      target share a registry, else copied blob by blob (streamed, digests
//      verified); then the layer and config; then the manifest under each
//      tag.
//
// Reproducible: nothing depends on the clock, the host, the user, the
// number of CPUs or the order of files on disk. The same binaries, base
// manifest, settings and `created` (the commit's time) give the same
// manifest digest on any agent with the same zlib. The layer is gzip at
// the fastest level, compressed in fixed 512 KiB blocks on up to 4 threads
// (pigz's scheme: each block with the previous 32 KiB as its dictionary),
// header mtime 0.
//
//   AssemblyOptions options;
//   options.image = config.image;            // base = "reg/base/debian:12"
//   options.executables = {{"app", "/cache/target/release/app"}};
//   options.created = commit_time;
//   options.revision = job.commit;
//   options.source = job.repo;
//   options.registry = *oci::RegistryOptionsFromEnv();
//   options.repository = "acme/app";
//   options.tags = {job.commit, "main"};
//   options.work_dir = "/ci/job/assembly";
//   CIAGENT_ASSIGN_OR_RETURN(AssemblyResult image, AssembleImage(options));
//   // image.digest: what the tags point at
//
// Errors (what the image step does with them):
//   kInvalidArgument    the configuration or the build is at fault: a
//                       binary the build did not make, a `path` outside /,
//                       several binaries and no entrypoint, a base that is
//                       not an image: a failed step.
//   kNotFound           the base (repository, tag or digest) does not exist,
//                       or has no manifest for the platform: a failed step.
//   kFailedPrecondition the base is for another platform than the agent's.
//   kUnauthenticated, kPermissionDenied   a registry refused the
//                       credentials: a failed step.
//   kDataLoss           a registry sent content not matching its digest.
//   kUnavailable        a registry unreachable after retries, or the work
//                       dir not writable (disk full): requeue.
//   kCancelled          `should_stop` said so.
// Every message names the base or the binary it is about.
//
// Thread-safety: AssembleImage returns when all its threads are done: one
// writes the layer (compressing on up to 4) while the calling thread reads
// the base; the push runs on up to `concurrency`, and `on_blob` is called
// from those, one call at a time. `should_stop` is called on the calling
// thread. Concurrent calls need distinct work dirs.
#ifndef CIAGENT_IMAGE_ASSEMBLY_H_
#define CIAGENT_IMAGE_ASSEMBLY_H_

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "ciagent/oci/push.h"
#include "ciagent/oci/registry_client.h"
#include "ciagent/pipeline/pipeline_config.h"

namespace ciagent {

struct AssemblyOptions {
  // What to assemble: `base` (required) and the assembly keys.
  ImageConfig image;
  // The build's release executables, (name, path on disk). `image.binaries`
  // picks from them; empty picks all.
  std::vector<std::pair<std::string, std::string>> executables;
  // "os/arch[/variant]" to pick from a multi-platform base; empty: the
  // agent's (oci::HostPlatform()).
  std::string platform;
  // The image's creation time and the layer's file times: the commit's.
  absl::Time created = absl::UnixEpoch();
  // Repository URL and commit, for labels and annotations; empty: left out.
  std::string source;
  std::string revision;
  // Target registry, repository ("owner/app") and tags (at least one).
  oci::RegistryOptions registry;
  std::string repository;
  std::vector<std::string> tags;
  // The base's registry when `image.base` names a host other than the
  // target's; nullopt: oci::RegistryOptionsFor(that host).
  std::optional<oci::RegistryOptions> base_registry;
  // Where the layer and config are written (created; removed afterwards,
  // the directory too). Required.
  std::string work_dir;
  int concurrency = 4;
  std::function<void(const oci::BlobPushed&)> on_blob;
  // Polled between the phases; true ends with kCancelled.
  std::function<bool()> should_stop;
};

struct AssemblyResult {
  // "host/repository@sha256:..." of the base image as read (the index's,
  // when the base is multi-platform) and of the platform's manifest.
  std::string base;
  std::string base_manifest_digest;
  std::string platform;  // of the base manifest used, e.g. "linux/amd64"
  // "host/repository:first-tag" pushed, and its manifest, layer and config.
  std::string reference;
  std::string digest;
  std::string media_type;
  std::string layer_digest;
  uint64_t layer_bytes = 0;
  std::string config_digest;
  oci::PushResult push;
  absl::Duration assembly_duration;  // resolve + write, push excluded
};

absl::StatusOr<AssemblyResult> AssembleImage(const AssemblyOptions& options);

// The parts of AssembleImage that need no registry, for tests and tools.

// One file of the layer: its name under the layer's directory and where
// its bytes are.
struct LayerFile {
  std::string name;
  std::string source_path;
};

struct LayerBlob {
  std::string digest;   // sha256 of the gzip file: the blob
  std::string diff_id;  // sha256 of the uncompressed tar
  uint64_t size = 0;    // of the gzip file
};

// Writes the layer tar.gz of `files` under `directory` (absolute) to
// `out_path`. kInvalidArgument: a name with '/' or twice, a directory
// outside /, a file that is not a regular file (naming it); kUnavailable:
// `out_path` not writable.
absl::StatusOr<LayerBlob> WriteBinaryLayer(std::vector<LayerFile> files,
                                           absl::string_view directory,
                                           absl::Time mtime,
                                           const std::string& out_path);

// What the new config changes in the base's.
struct ConfigChanges {
  std::vector<std::string> entrypoint;
  std::vector<std::string> cmd;
  std::vector<std::pair<std::string, std::string>> env;     // over the base's
  std::string workdir;                                      // "": the base's
  std::string user;
  std::vector<std::string> ports;                           // "8080/tcp"
  std::vector<std::pair<std::string, std::string>> labels;  // over the base's
  absl::Time created = absl::UnixEpoch();
  std::string diff_id;     // of the new layer
  std::string created_by;  // its history entry
};

// The config JSON: `base_config` with `changes` (see the top of this file).
// Keys are written in a fixed order, those it does not know copied from the
// base. kInvalidArgument when `base_config` is not an image config.
absl::StatusOr<std::string> EditImageConfig(absl::string_view base_config,
                                            const ConfigChanges& changes);

// The manifest JSON: `base_manifest`'s layers and `layer`, `config` as the
// config, and `annotations` (OCI manifests only). kInvalidArgument when
// `base_manifest` is not an image manifest.
absl::StatusOr<std::string> MakeImageManifest(
    absl::string_view base_manifest, const oci::Descriptor& config,
    const oci::Descriptor& layer,
    const std::vector<std::pair<std::string, std::string>>& annotations);

}  // namespace ciagent

#endif  // CIAGENT_IMAGE_ASSEMBLY_H_
