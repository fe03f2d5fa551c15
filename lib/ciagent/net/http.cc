#include "ciagent/net/http.h"

#include <curl/curl.h>

#include <algorithm>
#include <mutex>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "absl/synchronization/mutex.h"

namespace ciagent {

std::string HttpResponse::Header(absl::string_view name) const {
  for (const auto& [key, value] : headers) {
    if (key == name) return value;
  }
  return "";
}

namespace {

// What one Send() shares with curl's callbacks.
struct Exchange {
  const HttpRequest* request;
  size_t max_response_bytes;
  size_t body_offset = 0;  // into request->body
  absl::Status body_error;
  HttpResponse response;
};

size_t ReadBody(char* buffer, size_t size, size_t count, void* user) {
  auto* exchange = static_cast<Exchange*>(user);
  const size_t capacity = size * count;
  const HttpRequest& request = *exchange->request;
  if (request.body_stream == nullptr) {
    const size_t n =
        std::min(capacity, request.body.size() - exchange->body_offset);
    std::copy_n(request.body.data() + exchange->body_offset, n, buffer);
    exchange->body_offset += n;
    return n;
  }
  absl::StatusOr<size_t> n = request.body_stream->Read(buffer, capacity);
  if (!n.ok()) {
    exchange->body_error = n.status();
    return CURL_READFUNC_ABORT;
  }
  return *n;
}

// curl rewinds when it must resend (a reused connection that turned out to
// be closed, an auth round trip).
int SeekBody(void* user, curl_off_t offset, int origin) {
  auto* exchange = static_cast<Exchange*>(user);
  if (offset != 0 || origin != SEEK_SET) return CURL_SEEKFUNC_CANTSEEK;
  exchange->body_offset = 0;
  if (exchange->request->body_stream != nullptr) {
    exchange->body_error = exchange->request->body_stream->Rewind();
    if (!exchange->body_error.ok()) return CURL_SEEKFUNC_FAIL;
  }
  return CURL_SEEKFUNC_OK;
}

size_t WriteBody(char* data, size_t size, size_t count, void* user) {
  auto* exchange = static_cast<Exchange*>(user);
  const size_t n = size * count;
  std::string& body = exchange->response.body;
  const size_t room = exchange->max_response_bytes -
                      std::min(exchange->max_response_bytes, body.size());
  body.append(data, std::min(n, room));
  return n;  // the rest is dropped, not an error
}

size_t WriteHeader(char* data, size_t size, size_t count, void* user) {
  auto* exchange = static_cast<Exchange*>(user);
  const size_t n = size * count;
  absl::string_view line(data, n);
  line = absl::StripTrailingAsciiWhitespace(line);
  if (absl::StartsWith(line, "HTTP/")) {
    // A new status line (after 100 Continue): only the last block counts.
    exchange->response.headers.clear();
    return n;
  }
  const size_t colon = line.find(':');
  if (colon == absl::string_view::npos || colon == 0) return n;
  exchange->response.headers.emplace_back(
      absl::AsciiStrToLower(line.substr(0, colon)),
      std::string(absl::StripAsciiWhitespace(line.substr(colon + 1))));
  return n;
}

absl::Status CurlError(CURLcode code, const HttpRequest& request,
                       const char* detail) {
  // URLs never carry credentials here; the query (upload state) is noise.
  absl::string_view url = request.url;
  url = url.substr(0, url.find('?'));
  std::string message =
      absl::StrCat(request.method, " ", url, ": ", curl_easy_strerror(code));
  if (detail[0] != '\0') absl::StrAppend(&message, " (", detail, ")");
  switch (code) {
    case CURLE_URL_MALFORMAT:
    case CURLE_UNSUPPORTED_PROTOCOL:
      return absl::InvalidArgumentError(message);
    case CURLE_PEER_FAILED_VERIFICATION:
    case CURLE_SSL_CACERT_BADFILE:
    case CURLE_SSL_CERTPROBLEM:
    case CURLE_SSL_ISSUER_ERROR:
      return absl::FailedPreconditionError(message);
    default:
      return absl::UnavailableError(message);
  }
}

class CurlTransport : public HttpTransport {
 public:
  explicit CurlTransport(CurlTransportOptions options)
      : options_(std::move(options)) {
    static std::once_flag init;
    std::call_once(init, [] { curl_global_init(CURL_GLOBAL_DEFAULT); });
  }
  ~CurlTransport() override {
    for (CURL* handle : idle_) curl_easy_cleanup(handle);
  }

  absl::StatusOr<HttpResponse> Send(const HttpRequest& request) override {
    CURL* handle = Acquire();
    if (handle == nullptr) {
      return absl::ResourceExhaustedError("curl_easy_init failed");
    }
    absl::StatusOr<HttpResponse> response = Perform(handle, request);
    Release(handle);
    return response;
  }

 private:
  CURL* Acquire() {
    {
      absl::MutexLock lock(&mu_);
      if (!idle_.empty()) {
        CURL* handle = idle_.back();
        idle_.pop_back();
        return handle;
      }
    }
    return curl_easy_init();
  }
  void Release(CURL* handle) {
    absl::MutexLock lock(&mu_);
    idle_.push_back(handle);
  }

  absl::StatusOr<HttpResponse> Perform(CURL* handle,
                                       const HttpRequest& request) {
    // Reset keeps the handle's open connection for the next request.
    curl_easy_reset(handle);
    Exchange exchange{.request = &request,
                      .max_response_bytes = options_.max_response_bytes};
    char error_buffer[CURL_ERROR_SIZE] = "";
    curl_easy_setopt(handle, CURLOPT_ERRORBUFFER, error_buffer);
    curl_easy_setopt(handle, CURLOPT_URL, request.url.c_str());
    curl_easy_setopt(handle, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(handle, CURLOPT_HTTP_VERSION, CURL_HTTP_VERSION_1_1);
    curl_easy_setopt(handle, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(handle, CURLOPT_FOLLOWLOCATION, 0L);
    curl_easy_setopt(handle, CURLOPT_USERAGENT, options_.user_agent.c_str());
    curl_easy_setopt(
        handle, CURLOPT_CONNECTTIMEOUT_MS,
        static_cast<long>(absl::ToInt64Milliseconds(options_.connect_timeout)));
    curl_easy_setopt(handle, CURLOPT_LOW_SPEED_LIMIT, 1024L);
    curl_easy_setopt(handle, CURLOPT_LOW_SPEED_TIME,
                     static_cast<long>(std::max<int64_t>(
                         1, absl::ToInt64Seconds(options_.stall_timeout))));
    curl_easy_setopt(handle, CURLOPT_TCP_KEEPALIVE, 1L);
    if (!options_.ca_file.empty()) {
      curl_easy_setopt(handle, CURLOPT_CAINFO, options_.ca_file.c_str());
    }
    curl_easy_setopt(handle, CURLOPT_HEADERFUNCTION, WriteHeader);
    curl_easy_setopt(handle, CURLOPT_HEADERDATA, &exchange);
    curl_easy_setopt(handle, CURLOPT_WRITEFUNCTION, WriteBody);
    curl_easy_setopt(handle, CURLOPT_WRITEDATA, &exchange);

    const bool has_body = request.body_stream != nullptr ||
                          !request.body.empty() || request.method == "PUT" ||
                          request.method == "PATCH" || request.method == "POST";
    if (request.method == "HEAD") {
      curl_easy_setopt(handle, CURLOPT_NOBODY, 1L);
    } else if (has_body) {
      const uint64_t size = request.body_stream != nullptr
                                ? request.body_stream->size()
                                : request.body.size();
      if (request.body_stream != nullptr) {
        if (absl::Status status = request.body_stream->Rewind(); !status.ok()) {
          return status;
        }
      }
      curl_easy_setopt(handle, CURLOPT_UPLOAD, 1L);
      curl_easy_setopt(handle, CURLOPT_INFILESIZE_LARGE,
                       static_cast<curl_off_t>(size));
      curl_easy_setopt(handle, CURLOPT_READFUNCTION, ReadBody);
      curl_easy_setopt(handle, CURLOPT_READDATA, &exchange);
      curl_easy_setopt(handle, CURLOPT_SEEKFUNCTION, SeekBody);
      curl_easy_setopt(handle, CURLOPT_SEEKDATA, &exchange);
      curl_easy_setopt(handle, CURLOPT_UPLOAD_BUFFERSIZE,
                       static_cast<long>(options_.upload_buffer_bytes));
      curl_easy_setopt(handle, CURLOPT_CUSTOMREQUEST, request.method.c_str());
    } else if (request.method != "GET") {
      curl_easy_setopt(handle, CURLOPT_CUSTOMREQUEST, request.method.c_str());
    }

    curl_slist* headers = nullptr;
    for (const auto& [name, value] : request.headers) {
      headers =
          curl_slist_append(headers, absl::StrCat(name, ": ", value).c_str());
    }
    // Registries answer at once; waiting for "100 Continue" costs a round
    // trip (or a second against servers that never send it).
    headers = curl_slist_append(headers, "Expect:");
    curl_easy_setopt(handle, CURLOPT_HTTPHEADER, headers);

    const CURLcode code = curl_easy_perform(handle);
    curl_slist_free_all(headers);
    if (!exchange.body_error.ok()) {
      return absl::AbortedError(exchange.body_error.message());
    }
    if (code != CURLE_OK) return CurlError(code, request, error_buffer);
    long status = 0;
    curl_easy_getinfo(handle, CURLINFO_RESPONSE_CODE, &status);
    exchange.response.status = static_cast<int>(status);
    return std::move(exchange.response);
  }

  const CurlTransportOptions options_;
  absl::Mutex mu_;
  std::vector<CURL*> idle_ ABSL_GUARDED_BY(mu_);
};

}  // namespace

std::unique_ptr<HttpTransport> MakeCurlTransport(CurlTransportOptions options) {
  return std::make_unique<CurlTransport>(std::move(options));
}

}  // namespace ciagent
