// Module `net` (docs/architecture.md, "Layers") owns HTTP for the modules
// above: one request in, one response out, over libcurl, behind a seam tests
// can script. It must not know about what is spoken over it (registries,
// Pushgateway) and the job.
//
// HTTP for the registry client and the metrics push: one request in, one
// response out.
//
// HttpTransport is the seam: the registry client speaks HTTP only through
// it, so unit tests of its auth and retry logic can script responses, while
// the real transport (MakeCurlTransport) is libcurl. Integration tests run
// the client against a real registry.
//
// Request bodies are either a string or a RequestBody, a stream that can be
// rewound (a retry or an auth round trip resends it) and read again: blobs
// are streamed from their files, never loaded into memory.
//
//   auto transport = MakeCurlTransport({.ca_file = ca});
//   HttpRequest request{.method = "HEAD", .url = url};
//   CIAGENT_ASSIGN_OR_RETURN(HttpResponse response,
//                            transport->Send(request));
//   if (response.status == 200) ...
//
// Transport errors (no HTTP status at all):
//   kUnavailable        connection refused/reset, timeouts, DNS failure:
//                       retry.
//   kFailedPrecondition TLS verification failed, bad CA file: fix the
//                       configuration.
//   kInvalidArgument    malformed URL.
//   kAborted            the body stream failed or refused to go on (e.g. a
//                       FileBody whose content does not match its digest);
//                       the message is the stream's.
// Every HTTP status, 4xx and 5xx included, is a response, not an error.
//
// Thread-safety: a transport's Send may be called from many threads at
// once. The curl transport keeps a pool of handles, each with its own
// keep-alive connection, so N concurrent senders use N connections.
#ifndef CIAGENT_NET_HTTP_H_
#define CIAGENT_NET_HTTP_H_

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"

namespace ciagent {

class RequestBody {
 public:
  virtual ~RequestBody() = default;
  virtual uint64_t size() const = 0;
  // Back to the first byte; called before every send.
  virtual absl::Status Rewind() = 0;
  // Up to `capacity` bytes into `buffer`; 0 at the end. An error aborts the
  // request with that status.
  virtual absl::StatusOr<size_t> Read(char* buffer, size_t capacity) = 0;
};

using HttpHeaders = std::vector<std::pair<std::string, std::string>>;

struct HttpRequest {
  std::string method = "GET";
  std::string url;
  HttpHeaders headers;
  std::string body;                    // sent when body_stream is null
  RequestBody* body_stream = nullptr;  // not owned; outlives Send
};

struct HttpResponse {
  int status = 0;
  HttpHeaders headers;  // names lowercased, in arrival order
  std::string body;     // truncated at the transport's max_response_bytes

  // The first value of header `name` (lowercase), "" when absent.
  std::string Header(absl::string_view name) const;
};

class HttpTransport {
 public:
  virtual ~HttpTransport() = default;
  virtual absl::StatusOr<HttpResponse> Send(const HttpRequest& request) = 0;
};

struct CurlTransportOptions {
  // PEM bundle of CAs to trust instead of the system's; empty: system.
  std::string ca_file;
  absl::Duration connect_timeout = absl::Seconds(10);
  // A transfer slower than 1 KiB/s for this long is abandoned (kUnavailable):
  // catches dead connections without capping how long a big blob may take.
  absl::Duration stall_timeout = absl::Seconds(60);
  // Bytes handed to the socket per write. Large buffers matter for
  // throughput: 64 KiB writes cap a loopback upload well below disk speed.
  size_t upload_buffer_bytes = 1 << 20;
  size_t max_response_bytes = 4 << 20;
  std::string user_agent = "libciagent";
};

std::unique_ptr<HttpTransport> MakeCurlTransport(
    CurlTransportOptions options = {});

}  // namespace ciagent

#endif  // CIAGENT_NET_HTTP_H_
