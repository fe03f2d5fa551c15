// ci-build --push-layout: pushes an existing OCI image layout to a registry,
// for embedding users, for pushing what another builder produced, and for
// the push benchmark. Registry settings come from the environment
// (REGISTRY_URL or the image's own registry, REGISTRY_USERNAME,
// REGISTRY_TOKEN[_FILE], CI_CA_FILE).
#ifndef CIAGENT_TOOLS_CI_BUILD_PUSH_MODE_H_
#define CIAGENT_TOOLS_CI_BUILD_PUSH_MODE_H_

namespace ciagent {

// True when --push-layout was given.
bool PushModeRequested();

// Pushes, prints one JSON summary line on stdout and returns the exit code:
// 0 pushed; 2 rejected: a bad layout or reference, credentials or
// permissions refused, a manifest the registry refuses; 75 the registry
// unavailable after retries (try later); 1 anything else (a layout blob not
// matching its digest, 413 even for chunked uploads).
int RunPushLayout();

}  // namespace ciagent

#endif  // CIAGENT_TOOLS_CI_BUILD_PUSH_MODE_H_
