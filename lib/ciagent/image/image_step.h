// Module `image` (docs/architecture.md, "Layers") owns container images: the
// Dockerfile builders and the pipeline's image step that builds and pushes. It
// must not know about the queue; it builds on the pipeline's results and the
// oci client.
//
// The pipeline's `image` step: when the checkout has a Dockerfile, build it
// daemonlessly (image_builder.h) and push the result with libciagent's own
// registry client (oci/push.h) as <registry>/<repository>:<tag> for each
// tag. The Dockerfile, the build context, the build args and the
// repository come from the pipeline's configuration (ImageStepContext::image,
// pipeline_config.h ImageConfig: `[workspace.metadata.ciagent.image]`);
// `repository` below is used when the configuration names none.
//
//   ImageStepOptions image;
//   image.registry = *RegistryOptionsFromEnv();
//   image.repository = job.image ? job.image->name :
//   ImageRepositoryFor(job.repo); image.tags = ImageTagsFor(job);
//   pipeline.image_step = MakeImageStep(std::move(image));
//
// With `base` in the configuration the image is assembled instead
// (assembly.h): the base's layers plus one layer of the release binaries,
// written and pushed by the agent itself, no Dockerfile, builder or root
// needed; the record's builder is "assembly". Bad input (base not found,
// no manifest for the agent's platform, a binary the build did not make, a
// path outside /) fails the step with the reason; an unreachable registry
// requeues the job.
//
// Otherwise the step is skipped ("no Dockerfile") without a Dockerfile. The build's context is
// the checkout (or its `context` directory) with the build step's release executables placed at
// target/release/<name>, so a `FROM scratch` + `COPY target/release/app`
// Dockerfile works whatever CARGO_TARGET_DIR is. Outcomes:
//   ok          pushed; the image record holds the reference and digest
//   failed      the Dockerfile failed to build, no builder on this agent,
//               the registry refused (credentials, permissions, invalid
//               manifest): the reason says which
//   timeout / cancelled   as for the other steps
//   an error    the registry unreachable after retries, no space left: the
//               agent's problem, the job is requeued
// The layout (<work_dir>/image) is removed after the push. The checkout
// and work dir are the pipeline's (ImageStepContext).
#ifndef CIAGENT_IMAGE_IMAGE_STEP_H_
#define CIAGENT_IMAGE_IMAGE_STEP_H_

#include <string>
#include <utility>
#include <vector>

#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "ciagent/pipeline/pipeline.h"
#include "ciagent/job/job.h"
#include "ciagent/oci/registry_client.h"

namespace ciagent {

struct ImageStepOptions {
  // The layout is written to <work_dir>/image.
  // image_builder.h: buildah, docker, auto; or "assembly": only assembled
  // images (an agent without root or builder), a Dockerfile without
  // `image.base` fails the step saying so.
  std::string builder = "auto";
  // buildah's storage, kept between jobs (base images); empty: temporary.
  std::string storage_dir;
  std::string platform;  // empty: the host's
  // PATH and extra variables of the builder commands.
  std::string path;
  std::vector<std::pair<std::string, std::string>> env;
  absl::Duration grace = absl::Seconds(10);
  oci::RegistryOptions registry;
  // "owner/app"; required. The configuration's image name, when set, is
  // pushed to instead (it already holds the job's, which wins).
  std::string repository;
  std::vector<std::string> tags;  // at least one
  int push_concurrency = 4;
  // Assembly only (`image.base`): the repository URL for the image's
  // source label and annotation, and the commit; empty: the checkout's
  // HEAD. The commit's time is the image's creation time.
  std::string source;
  std::string revision;
};

ImageStep MakeImageStep(ImageStepOptions options);

// The image repository of a job that names none: the repository URL's path
// lowercased, without ".git" ("https://git.example.com/Acme/App.git" ->
// "acme/app"); characters a repository name cannot hold become '-'.
std::string ImageRepositoryFor(absl::string_view repo_url);

// The job's image tag (or its commit), then its branch made a valid tag
// when that differs ("feature/x" -> "feature-x").
std::vector<std::string> ImageTagsFor(const Job& job);

}  // namespace ciagent

#endif  // CIAGENT_IMAGE_IMAGE_STEP_H_
