// Repository URLs: which `repo` values a job may name. The agent hands the
// URL to git (libgit2) to fetch from, so the rules are about what reaches the
// network and what could leak into logs:
//   - scheme https:// or http://, in lowercase; file:// only when the caller
//     allows it (tests and local demos), with an empty or "localhost" host
//     and a path;
//   - no credentials: nothing before an '@' in the authority (tokens travel
//     in GIT_TOKEN, never in a job);
//   - no query or fragment: git appends its own path and query;
//   - ASCII only, no whitespace, control characters or '\', and no control
//     character percent-encoded in the path (%00-%1F);
//   - host: a name of [A-Za-z0-9._-], or an IPv6 address in [] without a
//     zone id (the interface name of one machine means nothing to another);
//   - the host must be written as libcurl reads it: no percent-encoding,
//     an IPv4 address only as four decimal numbers (127.1 or 0x7f.0.0.1
//     would name another host than the one a reader sees);
//   - port, when given, 1 to 5 digits in 1..65535;
//   - at most 2048 bytes.
//
// libcurl's URL API (curl_url) parses the URL: the authority, IPv6 literals,
// port numbers, host syntax. libcurl is lenient where a browser is (it reads
// "https:///x" as host "x", accepts an empty port, port 0, "HTTPS:" and
// "https:/"), so the rules above it does not hold are checked on the bytes as
// written, and its reading of the host must match the host as written.
//
// Errors: kInvalidArgument "repo: <rule>", e.g.
//   repo: must not embed credentials (found '@' before the path)
//   repo: port must be a number in 1..65535
// Messages never quote the URL, which may carry a token; only a scheme that
// looks like one is quoted. kResourceExhausted only if libcurl cannot
// allocate.
//
// Thread-safe; does no I/O.
#ifndef CIAGENT_JOB_REPO_URL_H_
#define CIAGENT_JOB_REPO_URL_H_

#include "absl/status/status.h"
#include "absl/strings/string_view.h"

namespace ciagent {

// OK when `url` may be the `repo` of a job (file:// URLs only when
// `allow_file_urls`); kInvalidArgument naming the first rule it breaks.
absl::Status ValidateRepoUrl(absl::string_view url, bool allow_file_urls);

}  // namespace ciagent

#endif  // CIAGENT_JOB_REPO_URL_H_
