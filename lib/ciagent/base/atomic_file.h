// WriteFileAtomically: replace a file's contents so that a reader (or a
// crash) sees either the old file or the whole new one, never a part.
//
// The contents go to a temporary file beside the target (same directory,
// hence same filesystem), which is flushed to disk and then renamed over
// the target; the directory is synced too, so the rename survives a power
// loss. Concurrent writers of one path do not corrupt it: each uses its own
// temporary file and the last rename wins.
//
// Example:
//   CIAGENT_RETURN_IF_ERROR(
//       WriteFileAtomically(work_dir + "/result.json", ResultJson(result)));
//   CIAGENT_RETURN_IF_ERROR(WriteFileAtomically(claim_path, json, 0600));
//
// Thread-safe (it keeps no state). WriteAll is the loop it writes with, for
// callers that stream into a file of their own.
#ifndef CIAGENT_BASE_ATOMIC_FILE_H_
#define CIAGENT_BASE_ATOMIC_FILE_H_

#include <sys/types.h>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"

namespace ciagent {

// Writes `contents` to `path`, creating or replacing it, with permission
// bits exactly `mode` (the umask does not apply). The directory must exist.
//
// kUnavailable on any I/O error — missing directory, no permission, disk
// full — naming the operation and the path; disk full is an infrastructure
// failure (a queued job is requeued). On error the target is unchanged and
// no temporary file is left behind.
absl::Status WriteFileAtomically(absl::string_view path,
                                 absl::string_view contents,
                                 mode_t mode = 0644);

// Writes all of `contents` to the open descriptor `fd`, across short writes
// and EINTR. kUnavailable naming `path` (what `fd` is, for the message) on
// an I/O error or a full disk.
absl::Status WriteAll(int fd, absl::string_view contents,
                      absl::string_view path);

}  // namespace ciagent

#endif  // CIAGENT_BASE_ATOMIC_FILE_H_
