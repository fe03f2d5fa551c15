// Module `webhook` (docs/architecture.md, "Layers") owns the producer side of
// the flow "push → webhook → job": reading a Gitea (or GitHub-style) push
// delivery, proving it came from the forge, and turning it into a job on the
// queue. It must not know how jobs are run.
//
// This header is the pure part: bytes and headers in, a decision out, no I/O
// (push_receiver.h enqueues; tools/ci-queue serves HTTP). A delivery is
// decided in this order, the first rule that applies winning:
//   401  no signature, a signature in another algorithm, or a wrong one:
//        HMAC-SHA256 of the raw body with the shared secret, hex, from
//        `X-Gitea-Signature` or else `X-Hub-Signature-256: sha256=<hex>`,
//        compared in constant time;
//   400  not a push event's JSON (malformed, missing `ref`, `after` or
//        `repository.clone_url`, or values a job refuses);
//   403  a clone URL whose host is not allowed, or one with credentials;
//   202  ignored, with the reason: another event (X-Gitea-Event or
//        X-GitHub-Event other than "push"), a branch deletion (`after` all
//        zeros), a tag push, or a branch the filters do not select;
//   202  a job: refs/heads/<branch> → branch, `after` → commit,
//        `repository.clone_url` → repo, the receiver's steps and timeout.
// The job id is derived from repository, branch and commit
// (PushJobId), so a redelivery of the same push names the same job and the
// receiver can enqueue it once.
//
// Thread-safe: no state.
#ifndef CIAGENT_WEBHOOK_PUSH_EVENT_H_
#define CIAGENT_WEBHOOK_PUSH_EVENT_H_

#include <optional>
#include <string>
#include <vector>

#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "ciagent/job/job.h"

namespace ciagent {

// One HTTP delivery, as the server received it.
struct WebhookDelivery {
  // X-Gitea-Event, else X-GitHub-Event; "" when neither was sent.
  std::string event;
  // X-Gitea-Delivery, else X-GitHub-Delivery: for the log.
  std::string delivery_id;
  // X-Gitea-Signature (hex).
  std::string gitea_signature;
  // X-Hub-Signature-256 ("sha256=<hex>").
  std::string hub_signature_256;
  // Set when the delivery carried only a signature in another algorithm
  // (X-Hub-Signature: sha1=...), so the refusal can say so.
  bool other_signature = false;
  std::string body;
};

struct PushEventOptions {
  // Hosts (host or host:port, as in the clone URL) whose repositories may
  // become jobs; empty: none (every delivery is refused).
  std::vector<std::string> allowed_hosts;
  // Branch filters: exact names, or patterns where '*' matches any run of
  // characters but '/' ("release/*"); empty: every branch.
  std::vector<std::string> branches;
  // Steps and timeout of the jobs; empty / nullopt: the agent's defaults.
  std::vector<std::string> steps;
  std::optional<absl::Duration> timeout;
  // Accept http:// clone URLs (tests and local setups).
  bool allow_http = true;
};

struct PushDecision {
  // The HTTP status to answer: 202 (a job, or ignored), 400, 401, 403.
  int http_status = 400;
  // Why it was refused or ignored; for a job, "push <branch> <commit>".
  std::string reason;
  // Set when the delivery is a push to enqueue.
  std::optional<Job> job;
};

// The lower-case hex HMAC-SHA256 of `body` under `secret`: what a forge
// sends as X-Gitea-Signature (and after "sha256=" in X-Hub-Signature-256).
// For producers and tests that sign deliveries.
std::string PushSignature(absl::string_view secret, absl::string_view body);

// True when `signature_hex` (either case) is the HMAC-SHA256 of `body`
// under `secret`; compared in constant time.
bool SignatureMatches(absl::string_view secret, absl::string_view body,
                      absl::string_view signature_hex);

// Decides what to do with `delivery` (see the header comment).
PushDecision DecidePush(const WebhookDelivery& delivery,
                        absl::string_view secret,
                        const PushEventOptions& options);

// "push-<24 hex>": the first 96 bits of SHA-256 over repo, branch and
// commit (NUL-separated). The same push always names the same job.
std::string PushJobId(absl::string_view repo, absl::string_view branch,
                      absl::string_view commit);

// True when `branch` is selected by `filters` (see PushEventOptions).
bool BranchSelected(absl::string_view branch,
                    const std::vector<std::string>& filters);

}  // namespace ciagent

#endif  // CIAGENT_WEBHOOK_PUSH_EVENT_H_
