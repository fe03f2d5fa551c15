// RegistryClient's blob uploads: monolithic (one streamed PUT) and chunked
// (PATCHes following the newest Location, resynchronised on failure).
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "absl/cleanup/cleanup.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "ciagent/base/sha256.h"
#include "ciagent/base/status_macros.h"
#include "ciagent/base/stop_signal.h"
#include "ciagent/oci/internal/registry_call.h"
#include "ciagent/oci/reference.h"
#include "ciagent/oci/registry_client.h"

namespace ciagent::oci {
namespace {

using internal::AppendQuery;
using internal::HttpError;
using internal::IsRetryableHttp;
using internal::PercentEncode;
using internal::RepositoryScope;
using internal::ShortDigest;

// "0-1023" (or "bytes=0-1023") -> 1024: the size the registry holds.
uint64_t RangeEndExclusive(absl::string_view range) {
  absl::ConsumePrefix(&range, "bytes=");
  const size_t dash = range.find('-');
  uint64_t end = 0;
  if (dash == absl::string_view::npos ||
      !absl::SimpleAtoi(range.substr(dash + 1), &end)) {
    return 0;
  }
  return end + 1;
}

// A file range as a request body, hashed as it is read when a digest is
// expected: the read that would send the last byte fails instead when the
// content does not match, so the registry never receives a complete (and
// so committable) blob.
class FileBody : public RequestBody {
 public:
  FileBody(int fd, uint64_t offset, uint64_t length,
           std::string expected_digest = "")
      : fd_(fd),
        offset_(offset),
        length_(length),
        expected_digest_(std::move(expected_digest)) {}

  uint64_t size() const override { return length_; }
  absl::Status Rewind() override {
    position_ = 0;
    hash_.Reset();
    return absl::OkStatus();
  }
  absl::StatusOr<size_t> Read(char* buffer, size_t capacity) override {
    const uint64_t want = std::min<uint64_t>(capacity, length_ - position_);
    if (want == 0) return 0;
    const ssize_t n = pread(fd_, buffer, want, offset_ + position_);
    if (n < 0) return absl::ErrnoToStatus(errno, "read blob");
    if (n == 0) return absl::DataLossError("blob file shrank while uploading");
    position_ += n;
    if (!expected_digest_.empty()) {
      hash_.Update(absl::string_view(buffer, n));
      if (position_ == length_) {
        const std::string actual = absl::StrCat("sha256:", hash_.HexDigest());
        if (actual != expected_digest_) {
          return absl::DataLossError(absl::StrCat(
              "local blob ", expected_digest_, " has content ", actual));
        }
      }
    }
    return static_cast<size_t>(n);
  }

 private:
  const int fd_;
  const uint64_t offset_;
  const uint64_t length_;
  const std::string expected_digest_;
  uint64_t position_ = 0;
  Sha256 hash_;
};

absl::Status HashFileInto(int fd, uint64_t size, Sha256* hash) {
  std::string buffer(1 << 20, '\0');
  for (uint64_t offset = 0; offset < size;) {
    const ssize_t n = pread(fd, buffer.data(), buffer.size(), offset);
    if (n < 0) return absl::ErrnoToStatus(errno, "read blob");
    if (n == 0) return absl::DataLossError("blob file shorter than its size");
    hash->Update(absl::string_view(buffer.data(), n));
    offset += n;
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<std::string> RegistryClient::StartUpload(
    absl::string_view repository, absl::string_view digest) {
  Call call{.request = {.method = "POST",
                        .url = absl::StrCat(base_url_, "/v2/", repository,
                                            "/blobs/uploads/")},
            .scopes = {RepositoryScope(repository, "pull,push")},
            .what = absl::StrCat("start upload of blob ", ShortDigest(digest),
                                 " to ", repository)};
  CIAGENT_ASSIGN_OR_RETURN(HttpResponse response, Execute(call));
  if (response.status != 202) {
    return HttpError(call.what, host_, response, call.attempts);
  }
  const std::string location = response.Header("location");
  if (location.empty()) {
    return absl::InternalError(
        absl::StrCat(call.what, ": ", host_, " answered 202 without Location"));
  }
  return ResolveLocation(location);
}

absl::Status RegistryClient::UploadBlob(absl::string_view repository,
                                        const BlobFile& blob) {
  const std::string what = absl::StrCat("push blob ", ShortDigest(blob.digest),
                                        " to ", host_, "/", repository);
  if (!IsValidDigest(blob.digest)) {
    return absl::InvalidArgumentError(
        absl::StrCat(what, ": not a sha256 digest"));
  }
  const int fd = open(blob.path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    return absl::DataLossError(absl::StrCat(what, ": cannot open ", blob.path,
                                            ": ", std::strerror(errno)));
  }
  absl::Cleanup close_fd = [fd] { close(fd); };
  struct stat st {};
  if (fstat(fd, &st) != 0 || static_cast<uint64_t>(st.st_size) != blob.size) {
    return absl::DataLossError(
        absl::StrCat(what, ": ", blob.path, " has ", st.st_size,
                     " bytes, the descriptor says ", blob.size));
  }
  absl::Status status =
      options_.chunk_bytes > 0
          ? UploadChunked(repository, blob, fd, options_.chunk_bytes)
          : UploadMonolithic(repository, blob, fd);
  if (status.code() == absl::StatusCode::kResourceExhausted &&
      options_.chunk_bytes == 0) {
    // 413: a proxy in front of the registry limits request bodies.
    status = UploadChunked(repository, blob, fd, options_.fallback_chunk_bytes);
  }
  return status;
}

absl::Status RegistryClient::UploadMonolithic(absl::string_view repository,
                                              const BlobFile& blob, int fd) {
  FileBody body(fd, 0, blob.size, blob.digest);
  Backoff backoff(options_.backoff);
  for (int attempt = 1;; ++attempt) {
    CIAGENT_ASSIGN_OR_RETURN(std::string location,
                             StartUpload(repository, blob.digest));
    Call call{
        .request = {.method = "PUT",
                    .url = AppendQuery(
                        location,
                        absl::StrCat("digest=", PercentEncode(blob.digest))),
                    .headers = {{"Content-Type", "application/octet-stream"}},
                    .body_stream = &body},
        .scopes = {RepositoryScope(repository, "pull,push")},
        .retry = false,
        .what = absl::StrCat("push blob ", ShortDigest(blob.digest), " to ",
                             repository)};
    absl::StatusOr<HttpResponse> response = Execute(call);
    absl::Duration delay = backoff.Next();
    if (!response.ok()) {
      if (response.status().code() == absl::StatusCode::kAborted) {
        return absl::DataLossError(response.status().message());
      }
      if (!IsTransient(response.status()) || attempt >= options_.max_attempts) {
        return Annotate(response.status(),
                        absl::StrCat("after ", attempt, " attempts"));
      }
    } else if (response->status == 201) {
      bytes_uploaded_ += blob.size;
      return absl::OkStatus();
    } else if (!IsRetryableHttp(response->status) ||
               attempt >= options_.max_attempts) {
      return HttpError(call.what, host_, *response, attempt);
    } else {
      delay = std::max(
          delay, std::min(ParseRetryAfter(response->Header("retry-after")),
                          options_.max_retry_after));
    }
    if (StopRequested()) {
      return absl::CancelledError(absl::StrCat(call.what, ": stopped"));
    }
    Sleep(delay);
  }
}

absl::Status RegistryClient::UploadChunked(absl::string_view repository,
                                           const BlobFile& blob, int fd,
                                           uint64_t chunk) {
  const std::string what = absl::StrCat("push blob ", ShortDigest(blob.digest),
                                        " to ", repository, " (chunked)");
  // Chunks are resent individually, so the digest is checked up front.
  Sha256 hash;
  CIAGENT_RETURN_IF_ERROR(HashFileInto(fd, blob.size, &hash));
  if (const std::string actual = absl::StrCat("sha256:", hash.HexDigest());
      actual != blob.digest) {
    return absl::DataLossError(absl::StrCat(what, ": local blob ", blob.digest,
                                            " has content ", actual));
  }
  CIAGENT_ASSIGN_OR_RETURN(std::string location,
                           StartUpload(repository, blob.digest));
  const std::vector<std::string> scopes = {
      RepositoryScope(repository, "pull,push")};
  Backoff backoff(options_.backoff);
  int failures = 0;
  uint64_t acknowledged = 0;  // bytes the registry confirmed holding
  for (uint64_t offset = 0; offset < blob.size;) {
    const uint64_t n = std::min(chunk, blob.size - offset);
    FileBody body(fd, offset, n);
    Call call{
        .request = {.method = "PATCH",
                    .url = location,
                    .headers = {{"Content-Type", "application/octet-stream"},
                                {"Content-Range",
                                 absl::StrCat(offset, "-", offset + n - 1)}},
                    .body_stream = &body},
        .scopes = scopes,
        .retry = false,
        .what = what};
    absl::StatusOr<HttpResponse> response = Execute(call);
    if (response.ok() && response->status == 202) {
      bytes_uploaded_ += n;
      if (std::string next = response->Header("location"); !next.empty()) {
        location = ResolveLocation(next);
      }
      const std::string range = response->Header("range");
      offset = range.empty() ? offset + n : RangeEndExclusive(range);
      acknowledged = offset;
      continue;
    }
    const bool resync = response.ok() && response->status == 416;
    const bool transient = response.ok() ? IsRetryableHttp(response->status)
                                         : IsTransient(response.status());
    if (!resync && !transient) {
      return response.ok() ? HttpError(what, host_, *response, failures + 1)
                           : response.status();
    }
    if (++failures >= options_.max_attempts) {
      return response.ok()
                 ? HttpError(what, host_, *response, failures)
                 : Annotate(response.status(),
                            absl::StrCat("after ", failures, " attempts"));
    }
    if (!resync) Sleep(backoff.Next());
    // Ask where the upload stands and go on from there.
    Call status_call{.request = {.url = location},
                     .scopes = scopes,
                     .what = absl::StrCat(what, ": upload status")};
    CIAGENT_ASSIGN_OR_RETURN(HttpResponse status, Execute(status_call));
    if (status.status != 204 && status.status != 202) {
      return HttpError(status_call.what, host_, status, status_call.attempts);
    }
    if (std::string next = status.Header("location"); !next.empty()) {
      location = ResolveLocation(next);
    }
    // "0-0" means zero bytes as well as one (distribution writes 0-0 for
    // an empty upload); what the registry acknowledged before decides.
    const uint64_t held = RangeEndExclusive(status.Header("range"));
    offset = held == 1 && acknowledged == 0 ? 0 : held;
  }
  Call finish{
      .request = {.method = "PUT",
                  .url = AppendQuery(
                      location,
                      absl::StrCat("digest=", PercentEncode(blob.digest))),
                  .headers = {{"Content-Type", "application/octet-stream"}}},
      .scopes = scopes,
      .what = absl::StrCat(what, ": finish")};
  CIAGENT_ASSIGN_OR_RETURN(HttpResponse response, Execute(finish));
  if (response.status != 201) {
    return HttpError(finish.what, host_, response, finish.attempts);
  }
  return absl::OkStatus();
}

}  // namespace ciagent::oci
