#include "ciagent/metrics/pushgateway.h"

#include <memory>

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "ciagent/base/backoff.h"
#include "ciagent/base/stop_signal.h"

namespace ciagent {
namespace {

bool IsPlain(absl::string_view value) {
  if (value.empty()) return false;
  for (char c : value) {
    if (!absl::ascii_isalnum(static_cast<unsigned char>(c)) && c != '.' &&
        c != '_' && c != '-') {
      return false;
    }
  }
  return true;
}

// "/label/value", or "/label@base64/<base64url>" for other values.
std::string GroupingSegment(absl::string_view label, absl::string_view value) {
  if (IsPlain(value)) return absl::StrCat("/", label, "/", value);
  // An empty value is "=" in the gateway's base64 convention.
  std::string encoded = value.empty() ? "=" : absl::WebSafeBase64Escape(value);
  return absl::StrCat("/", label, "@base64/", encoded);
}

}  // namespace

absl::Status PushMetrics(const PushgatewayOptions& options,
                         absl::string_view text) {
  std::unique_ptr<HttpTransport> owned;
  HttpTransport* transport = options.transport;
  if (transport == nullptr) {
    owned = MakeCurlTransport({.ca_file = options.ca_file});
    transport = owned.get();
  }
  HttpRequest request{
      .method = "PUT",
      .url = absl::StrCat(absl::StripSuffix(options.url, "/"), "/metrics",
                          GroupingSegment("job", options.job)),
      .headers = {{"Content-Type", "text/plain; version=0.0.4"}},
      .body = std::string(text)};
  for (const auto& [label, value] : options.grouping) {
    absl::StrAppend(&request.url, GroupingSegment(label, value));
  }
  Backoff backoff(
      {.initial = absl::Milliseconds(200), .max = absl::Seconds(2)});
  absl::Status last;
  for (int attempt = 1; attempt <= std::max(1, options.attempts); ++attempt) {
    absl::StatusOr<HttpResponse> response = transport->Send(request);
    if (response.ok() && (response->status == 200 || response->status == 202)) {
      return absl::OkStatus();
    }
    const std::string what =
        absl::StrCat("push metrics to ", absl::StripSuffix(options.url, "/"));
    if (response.ok() && response->status == 400) {
      return absl::InvalidArgumentError(absl::StrCat(
          what, ": HTTP 400: ",
          absl::StripAsciiWhitespace(response->body.substr(0, 300))));
    }
    if (response.ok() && response->status < 500) {
      return absl::InternalError(
          absl::StrCat(what, ": HTTP ", response->status));
    }
    last = response.ok() ? absl::UnavailableError(
                               absl::StrCat(what, ": HTTP ", response->status))
                         : response.status();
    if (attempt < options.attempts && !SleepUnlessStopped(backoff.Next())) {
      break;
    }
  }
  return absl::UnavailableError(last.message());
}

}  // namespace ciagent
