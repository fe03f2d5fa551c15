// Module `metrics` (docs/architecture.md, "Layers") owns shipping a job's
// Prometheus text to a Pushgateway. It must not know about what the metrics
// mean (pipeline/report.h writes them) and the queue.
//
// PushMetrics: a job's Prometheus text to a Pushgateway.
//
// Agent pods live for one job and are gone before Prometheus scrapes them;
// pushing the metrics when the job ends keeps them. The text (e.g.
// pipeline/report.h PrometheusText) replaces the group's previous metrics:
//
//   PUT <url>/metrics/job/<job>/<label>/<value>...
//
// Grouping values outside [A-Za-z0-9._-] are sent base64url-encoded
// (`<label>@base64/<value>`), as the Pushgateway expects for values with
// slashes. Groups are never removed by the gateway itself: with one group
// per pod (`instance=<pod name>`), delete old groups (its API, or a restart
// without persistence) or the gateway grows with every pod.
//
//   CIAGENT_RETURN_IF_ERROR(PushMetrics(
//       {.url = "http://pushgateway:9091",
//        .grouping = {{"instance", pod_name}}},
//       PrometheusText(result, job_id)));
//
// Errors: kUnavailable (unreachable, 5xx; after `attempts` tries),
// kInvalidArgument (the gateway rejected the text: 400), kInternal (any
// other answer). Thread-safe.
#ifndef CIAGENT_METRICS_PUSHGATEWAY_H_
#define CIAGENT_METRICS_PUSHGATEWAY_H_

#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "ciagent/net/http.h"

namespace ciagent {

struct PushgatewayOptions {
  // http(s)://host:port[/path] of the gateway. Required.
  std::string url;
  // The group's `job` label (Prometheus' job label of the pushed series).
  std::string job = "ciagent";
  // Further grouping labels, in order, e.g. {{"instance", "agent-7f9c"}}.
  std::vector<std::pair<std::string, std::string>> grouping;
  std::string ca_file;
  int attempts = 3;
  // The HTTP seam; null: libcurl. Not owned.
  HttpTransport* transport = nullptr;
};

absl::Status PushMetrics(const PushgatewayOptions& options,
                         absl::string_view text);

}  // namespace ciagent

#endif  // CIAGENT_METRICS_PUSHGATEWAY_H_
