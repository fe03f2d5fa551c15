#include "ciagent/job/repo_url.h"

#include <curl/curl.h>

#include <cstddef>
#include <memory>
#include <optional>
#include <string>

#include "absl/algorithm/container.h"
#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
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

absl::Status CredentialsError() {
  return Invalid("must not embed credentials (found '@' before the path)");
}

absl::Status HostCharactersError() {
  return Invalid(
      "host must contain only [A-Za-z0-9._-] (IPv6 addresses go in [])");
}

// The host name of an http(s) URL as written (not an IPv6 literal).
absl::Status ValidateWrittenHostName(absl::string_view host) {
  if (host.empty()) return Invalid("host must not be empty");
  if (!absl::c_all_of(host, [](char c) {
        return absl::ascii_isalnum(static_cast<unsigned char>(c)) || c == '.' ||
               c == '-' || c == '_';
      })) {
    return HostCharactersError();
  }
  return absl::OkStatus();
}

absl::Status PortError() {
  return Invalid("port must be a number in 1..65535");
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
        "scheme must be https:// or http:// (got \"file\"; file:// URLs need "
        "JobParseOptions::allow_file_urls)");
  }
  return Invalid(absl::StrCat(
      "scheme must be ",
      allow_file_urls ? "https://, http:// or file://" : "https:// or http://",
      " (got ", QuotedScheme(url), ")"));
}

// Why byte `c` may not appear in a repository URL, or "" when it may. A query
// or fragment has no place either: git appends its own path and query. (They
// are found here rather than in libcurl's parts because libcurl reports no
// fragment for a bare '#'.)
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

// One URL as libcurl's URL API reads it.
class CurlUrl {
 public:
  // CURLU_NON_SUPPORT_SCHEME: which schemes are allowed is decided above,
  // not by the protocols this libcurl was built with.
  CURLUcode Parse(absl::string_view url) {
    if (handle_ == nullptr) return CURLUE_OUT_OF_MEMORY;
    const std::string text(url);  // curl_url_set takes a C string
    return curl_url_set(handle_.get(), CURLUPART_URL, text.c_str(),
                        CURLU_NON_SUPPORT_SCHEME | CURLU_DISALLOW_USER);
  }

  // The part as libcurl reads it (decoded and normalized, see curl_url_get),
  // or the CURLUcode saying why there is none.
  CURLUcode Get(CURLUPart part, unsigned int flags, std::string* out) const {
    char* text = nullptr;
    const CURLUcode code = curl_url_get(handle_.get(), part, &text, flags);
    if (code == CURLUE_OK) {
      out->assign(text);
      curl_free(text);
    }
    return code;
  }

  std::optional<std::string> Get(CURLUPart part) const {
    std::string text;
    if (Get(part, 0, &text) != CURLUE_OK) return std::nullopt;
    return text;
  }

 private:
  struct Cleanup {
    void operator()(CURLU* handle) const { curl_url_cleanup(handle); }
  };
  std::unique_ptr<CURLU, Cleanup> handle_{curl_url()};
};

// The rule a URL broke when libcurl refused it with `code`. libcurl's codes
// are coarse; `authority` (as written) words the IPv6 ones as precisely as
// a reader needs.
absl::Status CurlRefusal(CURLUcode code, absl::string_view authority) {
  const bool ipv6 = absl::StartsWith(authority, "[");
  const size_t close = authority.find(']');
  switch (code) {
    case CURLUE_NO_HOST:
      return Invalid("host must not be empty");
    case CURLUE_BAD_HOSTNAME:
      return HostCharactersError();
    case CURLUE_BAD_IPV6:
      if (close == absl::string_view::npos) {
        return Invalid("IPv6 host must end with ']'");
      }
      return Invalid("IPv6 host must be a valid IPv6 address");
    case CURLUE_BAD_PORT_NUMBER:
      // libcurl looks at the port before the host; a bad host is named
      // first, as it was before libcurl parsed these URLs.
      if (!ipv6) {
        CIAGENT_RETURN_IF_ERROR(
            ValidateWrittenHostName(authority.substr(0, authority.rfind(':'))));
      } else if (close != absl::string_view::npos &&
                 close + 1 < authority.size() && authority[close + 1] != ':') {
        return Invalid("IPv6 host must be followed by ':' and a port");
      }
      return PortError();
    case CURLUE_USER_NOT_ALLOWED:
      return CredentialsError();
    case CURLUE_OUT_OF_MEMORY:
      return absl::ResourceExhaustedError("repo: libcurl is out of memory");
    default:
      return Invalid(absl::StrCat("must be a URL libcurl can parse (",
                                  curl_url_strerror(code), ")"));
  }
}

// libcurl refuses to decode a path holding %00-%1F, and so do we: no git
// server needs one, and a decoded NUL or newline is trouble downstream.
absl::Status ValidateDecodedPath(const CurlUrl& parsed) {
  std::string path;
  const CURLUcode code = parsed.Get(CURLUPART_PATH, CURLU_URLDECODE, &path);
  if (code == CURLUE_URLDECODE) {
    return Invalid("path must not percent-encode control characters (%00-%1F)");
  }
  if (code == CURLUE_OUT_OF_MEMORY) return CurlRefusal(code, "");
  return absl::OkStatus();
}

// The host and port of an http(s) URL that libcurl parsed; `authority` is
// what was written between "://" and the path: non-empty, free of '@'.
absl::Status ValidateHostAndPort(const CurlUrl& parsed,
                                 absl::string_view authority) {
  const bool ipv6 = absl::StartsWith(authority, "[");
  // libcurl has checked an IPv6 address (inet_pton) and found the ']', and
  // allows nothing but ":port" after it.
  const size_t host_end = ipv6 ? authority.find(']') + 1 : authority.rfind(':');
  const absl::string_view host = authority.substr(0, host_end);
  if (ipv6) {
    if (parsed.Get(CURLUPART_ZONEID).has_value()) {
      return Invalid(
          "IPv6 host must not have a zone id (%25 and an interface name)");
    }
  } else {
    CIAGENT_RETURN_IF_ERROR(ValidateWrittenHostName(host));
    // libcurl reads 127.1, 0177.0.0.1 and 2130706433 as 127.0.0.1; so may
    // the resolver that git uses, but a reader of the job would not.
    const std::optional<std::string> read = parsed.Get(CURLUPART_HOST);
    if (!read.has_value() || !absl::EqualsIgnoreCase(*read, host)) {
      return Invalid(
          "IPv4 host must be written as four decimal numbers (a.b.c.d)");
    }
  }
  if (host_end == absl::string_view::npos || host_end == authority.size()) {
    return absl::OkStatus();
  }
  // libcurl has checked the digits and the range, but accepts an empty
  // port, port 0 and any number of leading zeros.
  const absl::string_view port = authority.substr(host_end + 1);
  const std::optional<std::string> number = parsed.Get(CURLUPART_PORT);
  if (port.empty() || port.size() > 5 || !number.has_value() ||
      *number == "0") {
    return PortError();
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status ValidateRepoUrl(absl::string_view url, bool allow_file_urls) {
  if (url.size() > kMaxRepoUrlBytes) {
    return Invalid(absl::StrCat("must be at most ", kMaxRepoUrlBytes,
                                " bytes (got ", url.size(), ")"));
  }
  // The scheme as written: libcurl would also take "HTTPS:" and "https:/".
  absl::string_view rest = url;
  const bool is_http = absl::ConsumePrefix(&rest, "https://") ||
                       absl::ConsumePrefix(&rest, "http://");
  const bool is_file =
      !is_http && allow_file_urls && absl::ConsumePrefix(&rest, "file://");
  if (!is_http && !is_file) return SchemeError(url, allow_file_urls);
  // Credentials are refused with one fixed message before anything else is
  // looked at, whatever else is wrong with the URL.
  const size_t authority_end = rest.find_first_of("/?#");
  const absl::string_view authority = rest.substr(0, authority_end);
  if (absl::StrContains(authority, '@')) return CredentialsError();
  CIAGENT_RETURN_IF_ERROR(ValidateUrlBytes(url));
  if (is_file) {
    if (!authority.empty() && authority != "localhost") {
      return Invalid("file:// URLs must have an empty host (file:///path)");
    }
    if (authority_end == absl::string_view::npos ||
        rest.size() == authority_end + 1) {
      return Invalid("file:// URLs must have a path (file:///path)");
    }
  } else if (authority.empty()) {
    // libcurl would read "https:///app.git" as host "app.git".
    return Invalid("host must not be empty");
  }
  CurlUrl parsed;
  if (const CURLUcode code = parsed.Parse(url); code != CURLUE_OK) {
    return CurlRefusal(code, authority);
  }
  if (is_http) {
    CIAGENT_RETURN_IF_ERROR(ValidateHostAndPort(parsed, authority));
  }
  return ValidateDecodedPath(parsed);
}

}  // namespace ciagent
