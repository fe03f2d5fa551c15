#include "ciagent/base/atomic_file.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"

namespace ciagent {
namespace {

absl::Status IoError(absl::string_view op, absl::string_view path, int error) {
  return absl::UnavailableError(
      absl::StrCat(op, " ", path, ": ", std::strerror(error)));
}

std::string DirectoryOf(const std::string& path) {
  const size_t slash = path.find_last_of('/');
  if (slash == std::string::npos) return ".";
  if (slash == 0) return "/";
  return path.substr(0, slash);
}

}  // namespace

absl::Status WriteAll(int fd, absl::string_view contents,
                      absl::string_view path) {
  size_t written = 0;
  while (written < contents.size()) {
    const ssize_t n =
        ::write(fd, contents.data() + written, contents.size() - written);
    if (n < 0 && errno == EINTR) continue;
    // write() returning 0 for a non-empty buffer is treated as disk full.
    if (n <= 0) return IoError("write", path, n < 0 ? errno : ENOSPC);
    written += static_cast<size_t>(n);
  }
  return absl::OkStatus();
}

absl::Status WriteFileAtomically(absl::string_view path,
                                 absl::string_view contents, mode_t mode) {
  const std::string target(path);
  // mkstemp wants a writable, NUL-terminated template.
  std::string temp_name = absl::StrCat(target, ".tmp.XXXXXX");
  std::vector<char> temp(temp_name.begin(), temp_name.end());
  temp.push_back('\0');
  const int fd = ::mkostemp(temp.data(), O_CLOEXEC);
  if (fd < 0) return IoError("create", target, errno);
  temp_name.assign(temp.data());

  absl::Status status = WriteAll(fd, contents, target);
  if (status.ok() && ::fchmod(fd, mode) != 0) {
    status = IoError("chmod", target, errno);
  }
  if (status.ok() && ::fsync(fd) != 0) status = IoError("sync", target, errno);
  if (::close(fd) != 0 && status.ok()) status = IoError("close", target, errno);
  if (status.ok() && ::rename(temp_name.c_str(), target.c_str()) != 0) {
    status = IoError("rename", target, errno);
  }
  if (!status.ok()) {
    ::unlink(temp_name.c_str());
    return status;
  }
  // Make the rename itself durable. The file is in place whatever happens
  // here, so a failure to sync the directory is not reported.
  const int dir =
      ::open(DirectoryOf(target).c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dir >= 0) {
    ::fsync(dir);
    ::close(dir);
  }
  return absl::OkStatus();
}

}  // namespace ciagent
