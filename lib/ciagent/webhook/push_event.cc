#include "ciagent/webhook/push_event.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <simdjson.h>

#include <algorithm>
#include <array>

#include "absl/algorithm/container.h"
#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/strip.h"
#include "ciagent/base/sha256.h"
#include "ciagent/job/repo_url.h"

namespace ciagent {
namespace {

constexpr size_t kDigestBytes = 32;

PushDecision Refuse(int status, std::string reason) {
  return {.http_status = status, .reason = std::move(reason), .job = {}};
}

PushDecision Ignore(std::string reason) {
  return {.http_status = 202, .reason = std::move(reason), .job = {}};
}

// Lower-case hex of exactly 64 digits to 32 bytes; nullopt otherwise.
std::optional<std::array<unsigned char, kDigestBytes>> DecodeDigest(
    absl::string_view hex) {
  if (hex.size() != 2 * kDigestBytes ||
      !absl::c_all_of(hex, absl::ascii_isxdigit)) {
    return std::nullopt;
  }
  const std::string bytes = absl::HexStringToBytes(absl::AsciiStrToLower(hex));
  std::array<unsigned char, kDigestBytes> digest;
  absl::c_copy(bytes, digest.begin());
  return digest;
}

// The host[:port] of an http(s) URL, or "" when it has user info or no
// authority.
std::string HostOf(absl::string_view url) {
  size_t scheme = url.find("://");
  if (scheme == absl::string_view::npos) return "";
  absl::string_view rest = url.substr(scheme + 3);
  absl::string_view authority = rest.substr(0, rest.find_first_of("/?#"));
  if (absl::StrContains(authority, '@')) return "";
  return absl::AsciiStrToLower(authority);
}

// '*' matches a run of characters other than '/'.
bool Matches(absl::string_view pattern, absl::string_view text) {
  if (pattern.empty()) return text.empty();
  if (pattern[0] == '*') {
    for (size_t i = 0; i <= text.size(); ++i) {
      if (Matches(pattern.substr(1), text.substr(i))) return true;
      if (i < text.size() && text[i] == '/') break;
    }
    return false;
  }
  return !text.empty() && pattern[0] == text[0] &&
         Matches(pattern.substr(1), text.substr(1));
}

// HMAC-SHA256 of `body` under `secret`; nullopt only if OpenSSL fails.
std::optional<std::array<unsigned char, kDigestBytes>> Hmac(
    absl::string_view secret, absl::string_view body) {
  std::array<unsigned char, EVP_MAX_MD_SIZE> digest;
  unsigned int length = 0;
  if (HMAC(EVP_sha256(), secret.data(), static_cast<int>(secret.size()),
           reinterpret_cast<const unsigned char*>(body.data()), body.size(),
           digest.data(), &length) == nullptr ||
      length != kDigestBytes) {
    return std::nullopt;
  }
  std::array<unsigned char, kDigestBytes> result;
  std::copy_n(digest.begin(), kDigestBytes, result.begin());
  return result;
}

}  // namespace

std::string PushSignature(absl::string_view secret, absl::string_view body) {
  std::optional<std::array<unsigned char, kDigestBytes>> digest =
      Hmac(secret, body);
  if (!digest.has_value()) return "";
  return absl::BytesToHexString(absl::string_view(
      reinterpret_cast<const char*>(digest->data()), digest->size()));
}

bool SignatureMatches(absl::string_view secret, absl::string_view body,
                      absl::string_view signature_hex) {
  std::optional<std::array<unsigned char, kDigestBytes>> given =
      DecodeDigest(signature_hex);
  std::optional<std::array<unsigned char, kDigestBytes>> expected =
      Hmac(secret, body);
  return given.has_value() && expected.has_value() &&
         CRYPTO_memcmp(expected->data(), given->data(), kDigestBytes) == 0;
}

std::string PushJobId(absl::string_view repo, absl::string_view branch,
                      absl::string_view commit) {
  const std::string digest =
      Sha256Hex(absl::StrCat(repo, std::string(1, '\0'), branch,
                             std::string(1, '\0'), commit));
  return absl::StrCat("push-", digest.substr(0, 24));
}

bool BranchSelected(absl::string_view branch,
                    const std::vector<std::string>& filters) {
  return filters.empty() ||
         absl::c_any_of(filters, [branch](const std::string& filter) {
           return Matches(filter, branch);
         });
}

PushDecision DecidePush(const WebhookDelivery& delivery,
                        absl::string_view secret,
                        const PushEventOptions& options) {
  if (!delivery.gitea_signature.empty()) {
    if (!SignatureMatches(secret, delivery.body, delivery.gitea_signature)) {
      return Refuse(401, "X-Gitea-Signature does not match the body");
    }
  } else if (!delivery.hub_signature_256.empty()) {
    absl::string_view hex = delivery.hub_signature_256;
    if (!absl::ConsumePrefix(&hex, "sha256=") ||
        !SignatureMatches(secret, delivery.body, hex)) {
      return Refuse(401, "X-Hub-Signature-256 does not match the body");
    }
  } else {
    return Refuse(401, delivery.other_signature
                           ? "only HMAC-SHA256 signatures are accepted"
                           : "no signature (X-Gitea-Signature or "
                             "X-Hub-Signature-256)");
  }
  if (delivery.event != "push") {
    return Ignore(absl::StrCat("event \"", delivery.event, "\" is not a push"));
  }

  simdjson::dom::parser parser;
  simdjson::dom::element root;
  if (parser.parse(delivery.body).get(root) != simdjson::SUCCESS ||
      !root.is_object()) {
    return Refuse(400, "body is not a JSON object");
  }
  std::string_view ref_json, after_json, clone_url_json;
  if (root["ref"].get(ref_json) != simdjson::SUCCESS ||
      root["after"].get(after_json) != simdjson::SUCCESS ||
      root["repository"]["clone_url"].get(clone_url_json) !=
          simdjson::SUCCESS) {
    return Refuse(400,
                  "not a push event: needs string fields ref, after and "
                  "repository.clone_url");
  }
  const absl::string_view ref(ref_json.data(), ref_json.size());
  const absl::string_view after(after_json.data(), after_json.size());
  const absl::string_view clone_url(clone_url_json.data(),
                                    clone_url_json.size());
  if (!after.empty() && absl::c_all_of(after, [](char c) { return c == '0'; })) {
    return Ignore("branch or tag deleted");
  }
  absl::string_view branch = ref;
  if (!absl::ConsumePrefix(&branch, "refs/heads/")) {
    return Ignore(absl::StrCat("not a branch: ", ref.substr(0, 200)));
  }

  Job job;
  job.repo = std::string(clone_url);
  job.branch = std::string(branch);
  // As ParseJob keeps it: lower case, so the job and its id are the same
  // whichever case the forge wrote.
  job.commit = absl::AsciiStrToLower(after);
  if (absl::Status valid = ValidateRepoUrl(job.repo, false); !valid.ok()) {
    return Refuse(absl::StrContains(valid.message(), "credentials") ? 403 : 400,
                  std::string(valid.message()));
  }
  if (!options.allow_http && absl::StartsWith(job.repo, "http://")) {
    return Refuse(403, "repository: only https clone URLs are accepted");
  }
  const std::string host = HostOf(job.repo);
  if (!absl::c_linear_search(options.allowed_hosts, host)) {
    return Refuse(403, absl::StrCat("repository host \"", host,
                                    "\" is not in --allowed-hosts"));
  }
  for (absl::Status valid :
       {ValidateBranchName(job.branch), ValidateCommit(job.commit)}) {
    if (!valid.ok()) return Refuse(400, std::string(valid.message()));
  }
  if (!BranchSelected(job.branch, options.branches)) {
    return Ignore(absl::StrCat("branch ", job.branch,
                               " not selected by --branches ",
                               absl::StrJoin(options.branches, ",")));
  }
  job.job_id = PushJobId(job.repo, job.branch, job.commit);
  job.steps = options.steps;
  job.timeout = options.timeout;
  return {.http_status = 202,
          .reason = absl::StrCat("push ", job.branch, " ", job.commit),
          .job = std::move(job)};
}

}  // namespace ciagent
