// RegistryClient's pulls: manifests by tag or digest, blobs streamed to a
// file in Range requests and verified against their digest.
#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "absl/cleanup/cleanup.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "ciagent/base/atomic_file.h"
#include "ciagent/base/sha256.h"
#include "ciagent/base/status_macros.h"
#include "ciagent/oci/internal/registry_call.h"
#include "ciagent/oci/manifest.h"
#include "ciagent/oci/reference.h"
#include "ciagent/oci/registry_client.h"

namespace ciagent::oci {
namespace {

using internal::HttpError;
using internal::RepositoryScope;
using internal::ShortDigest;

constexpr int kMaxRedirects = 5;

bool IsRedirect(int status) {
  return status == 301 || status == 302 || status == 303 || status == 307 ||
         status == 308;
}

std::string DigestOf(absl::string_view bytes) {
  return absl::StrCat("sha256:", Sha256Hex(bytes));
}


}  // namespace

absl::StatusOr<HttpResponse> RegistryClient::ExecuteFollowing(Call& call) {
  // Execute leaves the last attempt's headers (Authorization included) in
  // the request: each hop starts again from the caller's.
  const HttpHeaders headers = call.request.headers;
  for (int redirects = 0;; ++redirects) {
    call.request.headers = headers;
    CIAGENT_ASSIGN_OR_RETURN(HttpResponse response, Execute(call));
    if (!IsRedirect(response.status) || redirects == kMaxRedirects) {
      return response;
    }
    const std::string location = response.Header("location");
    if (location.empty()) return response;
    // Execute sends Authorization only to the registry's own origin.
    call.request.url = ResolveLocation(location);
    call.request.method = "GET";
  }
}

absl::StatusOr<ManifestDocument> RegistryClient::GetManifest(
    absl::string_view repository, absl::string_view reference) {
  Call call{
      .request = {.url = absl::StrCat(base_url_, "/v2/", repository,
                                      "/manifests/", reference),
                  .headers = {{"Accept", internal::ManifestAccept()}}},
      .scopes = {RepositoryScope(repository, "pull")},
      .what = absl::StrCat("get manifest ", repository,
                           IsValidDigest(reference) ? "@" : ":", reference)};
  CIAGENT_ASSIGN_OR_RETURN(HttpResponse response, ExecuteFollowing(call));
  if (response.status != 200) {
    return HttpError(call.what, host_, response, call.attempts);
  }
  ManifestDocument document{.digest = DigestOf(response.body),
                            .bytes = std::move(response.body)};
  if (IsValidDigest(reference) && document.digest != reference) {
    return absl::DataLossError(absl::StrCat(call.what, ": ", host_,
                                            " sent content ", document.digest));
  }
  if (std::string announced = response.Header("docker-content-digest");
      !announced.empty() && announced != document.digest) {
    return absl::DataLossError(
        absl::StrCat(call.what, ": ", host_, " announced ", announced,
                     " but sent content ", document.digest));
  }
  // The Content-Type may carry parameters; the document's own mediaType
  // decides when the header says nothing useful.
  std::string type = response.Header("content-type");
  type = std::string(absl::StripAsciiWhitespace(type.substr(0, type.find(';'))));
  if (!IsManifestMediaType(type)) {
    absl::StatusOr<Manifest> parsed = ParseManifest(document.bytes);
    if (!parsed.ok()) {
      return absl::InvalidArgumentError(
          absl::StrCat(call.what, ": ", parsed.status().message()));
    }
    type = parsed->media_type;
  }
  document.media_type = std::move(type);
  return document;
}

absl::StatusOr<std::string> RegistryClient::ReadBlob(
    absl::string_view repository, absl::string_view digest, uint64_t size) {
  const std::string what = absl::StrCat("get blob ", ShortDigest(digest),
                                        " from ", host_, "/", repository);
  if (size > options_.download_range_bytes) {
    return absl::FailedPreconditionError(
        absl::StrCat(what, ": ", size, " bytes is too large to read into "
                     "memory; download it"));
  }
  Call call{.request = {.url = absl::StrCat(base_url_, "/v2/", repository,
                                            "/blobs/", digest)},
            .scopes = {RepositoryScope(repository, "pull")},
            .what = what};
  CIAGENT_ASSIGN_OR_RETURN(HttpResponse response, ExecuteFollowing(call));
  if (response.status != 200) {
    return HttpError(call.what, host_, response, call.attempts);
  }
  bytes_downloaded_ += static_cast<int64_t>(response.body.size());
  if (response.body.size() != size || DigestOf(response.body) != digest) {
    return absl::DataLossError(
        absl::StrCat(what, ": received ", response.body.size(),
                     " bytes with digest ", DigestOf(response.body)));
  }
  return std::move(response.body);
}

absl::Status RegistryClient::DownloadBlob(absl::string_view repository,
                                          const BlobFile& blob) {
  const std::string what = absl::StrCat("get blob ", ShortDigest(blob.digest),
                                        " from ", host_, "/", repository);
  if (!IsValidDigest(blob.digest)) {
    return absl::InvalidArgumentError(
        absl::StrCat(what, ": not a sha256 digest"));
  }
  const int fd =
      open(blob.path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) {
    return absl::UnavailableError(absl::StrCat(
        what, ": cannot create ", blob.path, ": ", std::strerror(errno)));
  }
  bool complete = false;
  absl::Cleanup close_fd = [&] {
    close(fd);
    if (!complete) unlink(blob.path.c_str());
  };
  const uint64_t range =
      std::max<uint64_t>(1, options_.download_range_bytes);
  Sha256 hash;
  uint64_t offset = 0;
  // A zero-byte blob is still asked for once: the registry must have it.
  do {
    const uint64_t last = std::min(blob.size, offset + range) - 1;
    Call call{.request = {.url = absl::StrCat(base_url_, "/v2/", repository,
                                              "/blobs/", blob.digest)},
              .scopes = {RepositoryScope(repository, "pull")},
              .what = what};
    if (blob.size > 0) {
      call.request.headers.emplace_back("Range",
                                        absl::StrCat("bytes=", offset, "-", last));
    }
    CIAGENT_ASSIGN_OR_RETURN(HttpResponse response, ExecuteFollowing(call));
    if (response.status == 200) {
      // The registry ignored Range and sent the whole blob (which fits, or
      // the transport cut it and the size check below says so).
      if (offset != 0) {
        return absl::InternalError(absl::StrCat(
            what, ": ", host_, " answered a Range request after the first "
            "with the whole blob"));
      }
    } else if (response.status != 206) {
      return HttpError(call.what, host_, response, call.attempts);
    }
    if (response.body.size() > blob.size - offset ||
        (response.status == 206 && response.body.size() != last + 1 - offset)) {
      return absl::DataLossError(absl::StrCat(
          what, ": received ", response.body.size(), " bytes at offset ",
          offset, " of a ", blob.size, "-byte blob"));
    }
    hash.Update(response.body);
    CIAGENT_RETURN_IF_ERROR(WriteAll(fd, response.body, blob.path));
    bytes_downloaded_ += static_cast<int64_t>(response.body.size());
    offset += response.body.size();
    if (response.status == 200) break;
  } while (offset < blob.size);
  if (offset != blob.size) {
    return absl::DataLossError(absl::StrCat(what, ": received ", offset,
                                            " of ", blob.size, " bytes"));
  }
  if (const std::string actual = absl::StrCat("sha256:", hash.HexDigest());
      actual != blob.digest) {
    return absl::DataLossError(
        absl::StrCat(what, ": received content ", actual));
  }
  complete = true;
  return absl::OkStatus();
}

}  // namespace ciagent::oci
