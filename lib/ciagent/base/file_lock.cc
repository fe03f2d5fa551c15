#include "ciagent/base/file_lock.h"

#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "ciagent/base/stop_signal.h"

namespace ciagent {
namespace {

constexpr absl::Duration kPollInterval = absl::Milliseconds(50);

}  // namespace

absl::StatusOr<FileLock> FileLock::Acquire(absl::string_view path,
                                           absl::Duration timeout) {
  return Lock(path, timeout, LOCK_EX);
}

absl::StatusOr<FileLock> FileLock::AcquireShared(absl::string_view path,
                                                 absl::Duration timeout) {
  return Lock(path, timeout, LOCK_SH);
}

absl::StatusOr<FileLock> FileLock::Lock(absl::string_view path,
                                        absl::Duration timeout, int mode) {
  std::string name(path);
  const int fd = ::open(name.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  if (fd < 0) {
    return absl::FailedPreconditionError(
        absl::StrCat("open lock ", name, ": ", std::strerror(errno)));
  }
  const absl::Time deadline = absl::Now() + timeout;
  while (true) {
    if (::flock(fd, mode | LOCK_NB) == 0)
      return FileLock(std::move(name), fd);
    const int error = errno;
    if (error != EWOULDBLOCK && error != EINTR) {
      ::close(fd);
      return absl::FailedPreconditionError(
          absl::StrCat("lock ", name, ": ", std::strerror(error)));
    }
    const absl::Duration left = deadline - absl::Now();
    if (left <= absl::ZeroDuration()) break;
    if (!SleepUnlessStopped(std::min(left, kPollInterval))) {
      ::close(fd);
      return absl::FailedPreconditionError(
          absl::StrCat("lock ", name, ": stop requested"));
    }
  }
  ::close(fd);
  return absl::UnavailableError(
      absl::StrCat("lock ", name, ": still held by another process after ",
                   absl::FormatDuration(timeout)));
}

absl::StatusOr<FileLock> FileLock::TryAcquire(absl::string_view path) {
  return Acquire(path, absl::ZeroDuration());
}

FileLock::FileLock(FileLock&& other) noexcept
    : path_(std::move(other.path_)), fd_(std::exchange(other.fd_, -1)) {}

FileLock& FileLock::operator=(FileLock&& other) noexcept {
  if (this != &other) {
    Release();
    path_ = std::move(other.path_);
    fd_ = std::exchange(other.fd_, -1);
  }
  return *this;
}

FileLock::~FileLock() { Release(); }

void FileLock::Release() {
  if (fd_ >= 0) {
    ::flock(fd_, LOCK_UN);
    ::close(fd_);
    fd_ = -1;
  }
}

}  // namespace ciagent
