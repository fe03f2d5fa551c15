#include "ciagent/job/repo_url.h"

#include <cstddef>
#include <string>

#include "absl/algorithm/container.h"
#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/strip.h"
#include "ciagent/base/json_writer.h"
#include "ciagent/base/status_macros.h"

namespace ciagent {
namespace {

constexpr size_t kMaxRepoUrlBytes = 2048;

absl::Status Invalid(absl::string_view rule) {
  return absl::InvalidArgumentError(absl::StrCat("repo: ", rule));
}

// The scheme of `url` when it has one that is safe to quote in a message.
std::string QuotedScheme(absl::string_view url) {
  const size_t end = url.find("://");
  const absl::string_view scheme = url.substr(0, end);
  const bool plausible =
      end != absl::string_view::npos && !scheme.empty() &&
      scheme.size() <= 16 &&
      absl::ascii_isalpha(static_cast<unsigned char>(scheme[0])) &&
      absl::c_all_of(scheme, [](char c) {
        return absl::ascii_isalnum(static_cast<unsigned char>(c)) || c == '+' ||
               c == '.' || c == '-';
      });
  return plausible ? JsonQuote(scheme) : std::string("no scheme");
}

absl::Status SchemeError(absl::string_view url, bool allow_file_urls) {
  if (!allow_file_urls && absl::StartsWith(url, "file://")) {
    return Invalid(
        "scheme must be https:// or http:// (got \"file\"; file:// "
        "URLs need JobParseOptions::allow_file_urls)");
  }
  return Invalid(absl::StrCat(
      "scheme must be ",
      allow_file_urls ? "https://, http:// or file://" : "https:// or http://",
      " (got ", QuotedScheme(url), ")"));
}

// Why byte `c` may not appear in a repository URL, or "" when it may. A query
// or fragment has no place either: git appends its own path and query.
absl::string_view ForbiddenUrlByte(unsigned char c) {
  if (c <= 0x20 || c == 0x7F) {
    return "must not contain whitespace or control characters";
  }
  if (c >= 0x80) return "must be ASCII (percent-encode other characters)";
  if (c == '\\') return "must not contain '\\'";
  if (c == '#') return "must not contain a fragment";
  if (c == '?') return "must not contain a query";
  return "";
}

absl::Status ValidateUrlBytes(absl::string_view url) {
  for (size_t i = 0; i < url.size(); ++i) {
    const unsigned char c = static_cast<unsigned char>(url[i]);
    const absl::string_view rule = ForbiddenUrlByte(c);
    if (!rule.empty()) {
      return Invalid(
          absl::StrFormat("%s (byte 0x%02x at offset %d)", rule, c, i));
    }
  }
  return absl::OkStatus();
}

absl::Status ValidatePort(absl::string_view port) {
  int value = 0;
  const bool digits =
      !port.empty() && port.size() <= 5 && absl::c_all_of(port, [](char c) {
        return absl::ascii_isdigit(static_cast<unsigned char>(c));
      });
  if (digits && absl::SimpleAtoi(port, &value) && value >= 1 &&
      value <= 65535) {
    return absl::OkStatus();
  }
  return Invalid("port must be a number in 1..65535");
}

// `authority` is host[:port] of an http(s) URL, already free of '@'.
absl::Status ValidateHostAndPort(absl::string_view authority) {
  absl::string_view host = authority;
  absl::string_view port;
  bool has_port = false;
  if (absl::StartsWith(authority, "[")) {  // IPv6 literal
    const size_t close = authority.find(']');
    if (close == absl::string_view::npos) {
      return Invalid("IPv6 host must end with ']'");
    }
    host = authority.substr(1, close - 1);
    port = authority.substr(close + 1);
    has_port = absl::ConsumePrefix(&port, ":");
    if (!has_port && !port.empty()) {
      return Invalid("IPv6 host must be followed by ':' and a port");
    }
    if (host.empty() || !absl::c_all_of(host, [](char c) {
          return absl::ascii_isxdigit(static_cast<unsigned char>(c)) ||
                 c == ':' || c == '.';
        })) {
      return Invalid("IPv6 host must contain only hex digits, ':' and '.'");
    }
  } else {
    const size_t colon = authority.rfind(':');
    if (colon != absl::string_view::npos) {
      host = authority.substr(0, colon);
      port = authority.substr(colon + 1);
      has_port = true;
    }
    if (host.empty()) return Invalid("host must not be empty");
    if (!absl::c_all_of(host, [](char c) {
          return absl::ascii_isalnum(static_cast<unsigned char>(c)) ||
                 c == '.' || c == '-' || c == '_';
        })) {
      return Invalid(
          "host must contain only [A-Za-z0-9._-] (IPv6 "
          "addresses go in [])");
    }
  }
  return has_port ? ValidatePort(port) : absl::OkStatus();
}

}  // namespace

absl::Status ValidateRepoUrl(absl::string_view url, bool allow_file_urls) {
  if (url.size() > kMaxRepoUrlBytes) {
    return Invalid(absl::StrCat("must be at most ", kMaxRepoUrlBytes,
                                " bytes (got ", url.size(), ")"));
  }
  absl::string_view rest = url;
  const bool is_http = absl::ConsumePrefix(&rest, "https://") ||
                       absl::ConsumePrefix(&rest, "http://");
  const bool is_file =
      !is_http && allow_file_urls && absl::ConsumePrefix(&rest, "file://");
  if (!is_http && !is_file) return SchemeError(url, allow_file_urls);
  const size_t authority_end = rest.find_first_of("/?#");
  const absl::string_view authority = rest.substr(0, authority_end);
  if (absl::StrContains(authority, '@')) {
    return Invalid("must not embed credentials (found '@' before the path)");
  }
  CIAGENT_RETURN_IF_ERROR(ValidateUrlBytes(url));
  if (is_http) return ValidateHostAndPort(authority);
  if (!authority.empty() && authority != "localhost") {
    return Invalid("file:// URLs must have an empty host (file:///path)");
  }
  if (authority_end == absl::string_view::npos ||
      rest.size() == authority_end + 1) {
    return Invalid("file:// URLs must have a path (file:///path)");
  }
  return absl::OkStatus();
}

}  // namespace ciagent
