#include "ciagent/oci/internal/registry_call.h"

#include <simdjson.h>

#include <algorithm>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/strip.h"
#include "ciagent/oci/manifest.h"

namespace ciagent::oci::internal {
namespace {

namespace dom = simdjson::dom;

// "code: message" of the first error in a registry's error body, else the
// start of the body on one line.
std::string RegistryErrorText(absl::string_view body) {
  dom::parser parser;
  dom::element root;
  dom::array errors;
  dom::object first;
  if (parser.parse(body.data(), body.size()).get(root) == simdjson::SUCCESS &&
      root["errors"].get_array().get(errors) == simdjson::SUCCESS &&
      errors.at(0).get_object().get(first) == simdjson::SUCCESS) {
    std::string_view code, message;
    if (first["code"].get_string().get(code) != simdjson::SUCCESS) code = "";
    if (first["message"].get_string().get(message) != simdjson::SUCCESS) {
      message = "";
    }
    return absl::StrCat(absl::string_view(code.data(), code.size()), ": ",
                        absl::string_view(message.data(), message.size()));
  }
  std::string text(body.substr(0, 200));
  std::replace_if(
      text.begin(), text.end(), [](char c) { return c == '\n' || c == '\r'; },
      ' ');
  return std::string(absl::StripAsciiWhitespace(text));
}

}  // namespace

bool IsRetryableHttp(int status) {
  return status == 408 || status == 429 || (status >= 500 && status <= 599);
}

// RFC 3986 unreserved characters stay; everything else is %XX.
std::string PercentEncode(absl::string_view text) {
  std::string out;
  for (unsigned char c : text) {
    if (absl::ascii_isalnum(c) || c == '-' || c == '.' || c == '_' ||
        c == '~') {
      out.push_back(static_cast<char>(c));
    } else {
      constexpr char kHex[] = "0123456789ABCDEF";
      out.push_back('%');
      out.push_back(kHex[c >> 4]);
      out.push_back(kHex[c & 15]);
    }
  }
  return out;
}

std::string AppendQuery(absl::string_view url, absl::string_view query) {
  return absl::StrCat(url, absl::StrContains(url, '?') ? "&" : "?", query);
}

std::string ShortDigest(absl::string_view digest) {
  return std::string(digest.substr(0, 19));  // sha256: + 12 hex digits
}

std::string RepositoryScope(absl::string_view repository,
                            absl::string_view actions) {
  return absl::StrCat("repository:", repository, ":", actions);
}

absl::Status HttpError(absl::string_view what, absl::string_view host,
                       const HttpResponse& response, int attempts) {
  std::string message =
      absl::StrCat(what, ": HTTP ", response.status, " from ", host);
  if (attempts > 1) absl::StrAppend(&message, " after ", attempts, " attempts");
  if (std::string detail = RegistryErrorText(response.body); !detail.empty()) {
    absl::StrAppend(&message, ": ", detail);
  }
  const int status = response.status;
  if (status == 400) return absl::InvalidArgumentError(message);
  if (status == 401) return absl::UnauthenticatedError(message);
  if (status == 403) return absl::PermissionDeniedError(message);
  if (status == 404) return absl::NotFoundError(message);
  if (status == 413) return absl::ResourceExhaustedError(message);
  if (IsRetryableHttp(status)) return absl::UnavailableError(message);
  return absl::InternalError(message);
}

std::string ManifestAccept() {
  return absl::StrJoin(
      {kOciIndex, kOciManifest, kDockerManifestList, kDockerManifest}, ", ");
}

}  // namespace ciagent::oci::internal
