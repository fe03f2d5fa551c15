#include "webhook_server.h"

#include <arpa/inet.h>
#include <microhttpd.h>
#include <netinet/in.h>

#include <cstring>
#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"

namespace ciagent {
namespace {

// One POST being read.
struct Upload {
  std::string body;
  bool too_large = false;
};

struct Context {
  WebhookServerOptions options;
  PushReceiver* receiver;
};

MHD_Result Respond(MHD_Connection* connection, unsigned status,
                   const std::string& body, const char* content_type) {
  MHD_Response* response = MHD_create_response_from_buffer(
      body.size(), const_cast<char*>(body.data()), MHD_RESPMEM_MUST_COPY);
  if (response == nullptr) return MHD_NO;
  MHD_add_response_header(response, MHD_HTTP_HEADER_CONTENT_TYPE, content_type);
  const MHD_Result queued = MHD_queue_response(connection, status, response);
  MHD_destroy_response(response);
  return queued;
}

MHD_Result RespondText(MHD_Connection* connection, unsigned status,
                       const std::string& text) {
  return Respond(connection, status, text + "\n", "text/plain; charset=utf-8");
}

std::string Header(MHD_Connection* connection, const char* name) {
  const char* value =
      MHD_lookup_connection_value(connection, MHD_HEADER_KIND, name);
  return value == nullptr ? "" : value;
}

WebhookDelivery DeliveryOf(MHD_Connection* connection, std::string body) {
  WebhookDelivery delivery;
  delivery.event = Header(connection, "X-Gitea-Event");
  if (delivery.event.empty()) delivery.event = Header(connection, "X-GitHub-Event");
  delivery.delivery_id = Header(connection, "X-Gitea-Delivery");
  if (delivery.delivery_id.empty()) {
    delivery.delivery_id = Header(connection, "X-GitHub-Delivery");
  }
  delivery.gitea_signature = Header(connection, "X-Gitea-Signature");
  delivery.hub_signature_256 = Header(connection, "X-Hub-Signature-256");
  delivery.other_signature = !Header(connection, "X-Hub-Signature").empty();
  delivery.body = std::move(body);
  return delivery;
}

// The first call for a request: its headers. Answers right away what needs
// no body; for a delivery, sets *state to a new Upload.
MHD_Result Begin(const Context& context, MHD_Connection* connection,
                 absl::string_view url, absl::string_view method,
                 void** state) {
  if (url == "/healthz" || url == "/metrics") {
    if (method != "GET" && method != "HEAD") {
      return RespondText(connection, MHD_HTTP_METHOD_NOT_ALLOWED, "GET only");
    }
    return url == "/healthz"
               ? RespondText(connection, MHD_HTTP_OK, "ok")
               : Respond(connection, MHD_HTTP_OK,
                         context.receiver->MetricsText(),
                         "text/plain; version=0.0.4");
  }
  if (url != context.options.path) {
    return RespondText(connection, MHD_HTTP_NOT_FOUND, "not found");
  }
  if (method != "POST") {
    return RespondText(connection, MHD_HTTP_METHOD_NOT_ALLOWED, "POST only");
  }
  if (!absl::StartsWithIgnoreCase(Header(connection, "Content-Type"),
                                  "application/json")) {
    return RespondText(connection, MHD_HTTP_UNSUPPORTED_MEDIA_TYPE,
                       "deliveries must be application/json");
  }
  uint64_t length = 0;
  const std::string announced = Header(connection, "Content-Length");
  if (!announced.empty() && absl::SimpleAtoi(announced, &length) &&
      length > context.options.max_body_bytes) {
    return RespondText(connection, MHD_HTTP_CONTENT_TOO_LARGE,
                       "body too large");
  }
  *state = new Upload;
  return MHD_YES;
}

MHD_Result Handle(void* cls, MHD_Connection* connection, const char* url,
                  const char* method, const char* /*version*/,
                  const char* upload_data, size_t* upload_data_size,
                  void** state) {
  const Context& context = *static_cast<const Context*>(cls);
  if (*state == nullptr) return Begin(context, connection, url, method, state);
  Upload& upload = *static_cast<Upload*>(*state);
  if (*upload_data_size > 0) {
    if (upload.body.size() + *upload_data_size > context.options.max_body_bytes) {
      upload.too_large = true;
      upload.body.clear();
    } else if (!upload.too_large) {
      upload.body.append(upload_data, *upload_data_size);
    }
    *upload_data_size = 0;
    return MHD_YES;
  }
  if (upload.too_large) {
    return RespondText(connection, MHD_HTTP_CONTENT_TOO_LARGE, "body too large");
  }
  WebhookResponse response = context.receiver->Receive(
      DeliveryOf(connection, std::move(upload.body)));
  return Respond(connection, response.status, response.body + "\n",
                 "application/json");
}

void Completed(void* /*cls*/, MHD_Connection* /*connection*/, void** state,
               MHD_RequestTerminationCode /*code*/) {
  delete static_cast<Upload*>(*state);
  *state = nullptr;
}

// "127.0.0.1:8080", "[::1]:8080", ":8080" (every IPv4 address).
absl::StatusOr<sockaddr_storage> ParseListen(absl::string_view listen,
                                             bool* ipv6) {
  const size_t colon = listen.rfind(':');
  int port = -1;
  if (colon == absl::string_view::npos ||
      !absl::SimpleAtoi(listen.substr(colon + 1), &port) || port < 0 ||
      port > 65535) {
    return absl::InvalidArgumentError(absl::StrCat(
        "--listen: expected host:port, e.g. 127.0.0.1:8080, got \"", listen,
        "\""));
  }
  absl::string_view host = listen.substr(0, colon);
  sockaddr_storage address{};
  *ipv6 = absl::ConsumePrefix(&host, "[") && absl::ConsumeSuffix(&host, "]");
  const std::string host_text(host.empty() ? "0.0.0.0" : host);
  if (*ipv6) {
    auto* v6 = reinterpret_cast<sockaddr_in6*>(&address);
    v6->sin6_family = AF_INET6;
    v6->sin6_port = htons(static_cast<uint16_t>(port));
    if (inet_pton(AF_INET6, host_text.c_str(), &v6->sin6_addr) == 1) {
      return address;
    }
  } else {
    auto* v4 = reinterpret_cast<sockaddr_in*>(&address);
    v4->sin_family = AF_INET;
    v4->sin_port = htons(static_cast<uint16_t>(port));
    if (inet_pton(AF_INET, host_text.c_str(), &v4->sin_addr) == 1) {
      return address;
    }
  }
  return absl::InvalidArgumentError(absl::StrCat(
      "--listen: \"", host_text, "\" is not an IP address"));
}

}  // namespace

struct WebhookServer::Daemon {
  Context context;
  MHD_Daemon* daemon = nullptr;
  ~Daemon() {
    if (daemon != nullptr) MHD_stop_daemon(daemon);
  }
};

absl::StatusOr<std::unique_ptr<WebhookServer>> WebhookServer::Start(
    const WebhookServerOptions& options, PushReceiver* receiver) {
  bool ipv6 = false;
  absl::StatusOr<sockaddr_storage> address = ParseListen(options.listen, &ipv6);
  if (!address.ok()) return address.status();
  if (!absl::StartsWith(options.path, "/")) {
    return absl::InvalidArgumentError("--path must start with '/'");
  }
  std::unique_ptr<WebhookServer> server(new WebhookServer());
  server->daemon_ = std::make_unique<Daemon>();
  Daemon& d = *server->daemon_;
  d.context = {.options = options, .receiver = receiver};
  unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_AUTO;
  if (ipv6) flags |= MHD_USE_IPv6;
  d.daemon = MHD_start_daemon(
      flags, 0, nullptr, nullptr, &Handle, &d.context,
      MHD_OPTION_SOCK_ADDR, reinterpret_cast<sockaddr*>(&*address),
      MHD_OPTION_NOTIFY_COMPLETED, &Completed, nullptr,
      MHD_OPTION_CONNECTION_TIMEOUT,
      static_cast<unsigned>(absl::ToInt64Seconds(options.request_timeout)),
      MHD_OPTION_CONNECTION_LIMIT, options.max_connections,
      MHD_OPTION_PER_IP_CONNECTION_LIMIT, options.max_connections_per_address,
      MHD_OPTION_THREAD_POOL_SIZE, options.threads, MHD_OPTION_END);
  if (d.daemon == nullptr) {
    return absl::UnavailableError(absl::StrCat(
        "webhook: cannot listen on ", options.listen,
        " (address in use, or not an address of this host)"));
  }
  const MHD_DaemonInfo* info =
      MHD_get_daemon_info(d.daemon, MHD_DAEMON_INFO_BIND_PORT);
  server->port_ = info != nullptr ? info->port : 0;
  return server;
}

WebhookServer::~WebhookServer() = default;

}  // namespace ciagent
