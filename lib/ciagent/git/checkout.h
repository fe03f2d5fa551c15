// Fresh checkout: the tree of a commit written into an empty work tree on
// several threads, with the same files and the same index that libgit2's
// git_checkout_tree(GIT_CHECKOUT_FORCE) would leave there, in less time.
//
// libgit2 writes a checkout file by file on one thread; most of that time
// is inflating objects and creating files, which parallelises. Here the
// calling thread walks the tree and validates every path; then `threads`
// threads write the regular files (and their directories), taking them a
// few of one directory at a time from directories spread apart, since
// files created in one directory at once wait for its lock; then the
// calling thread creates symbolic links and submodule directories and
// writes the index. What is written matches libgit2's checkout:
//   - files 0644 or 0755 before the umask (libgit2's open modes, not
//     git's 0666/0777), directories 0755;
//   - symbolic links as links, or when core.symlinks is false as plain
//     files holding the target; created after every regular file, so no
//     file is ever written through a link;
//   - gitlinks (submodules) as empty directories, nothing cloned;
//   - contents through the filters libgit2 applies (.gitattributes text /
//     eol / crlf / ident, core.autocrlf, core.eol, and filters registered
//     with git_filter_register, which must then be thread-safe: they run
//     on all the writing threads), loaded per file as libgit2 does.
//     .gitattributes files are written first (each filtered by those
//     above it, as libgit2 filters them), so every other file is filtered
//     by all of them, as git does. libgit2 1.5.1 only sees the ones it has
//     written by then: a file whose path sorts before a .gitattributes that
//     applies to it (".editorconfig" before ".gitattributes") is filtered
//     differently by libgit2, and as git filters it here;
//   - the index: every entry with the stat data of the file written, marked
//     up to date, so `git status` is clean at once and a later checkout of
//     another commit (libgit2 or git) rewrites only what differs.
// HEAD is not moved.
//
// Paths are validated as libgit2 does before anything is written: a tree
// with a "." or ".." component, a ".git" component (also its NTFS spellings
// such as ".GIT.", "git~1", unless core.protectNTFS is false, and its HFS+
// spellings when core.protectHFS is true), or a symbolic link named like
// .gitmodules is refused; so is a name containing '/', which libgit2 would
// split into directories. Files are created exclusively (O_EXCL,
// O_NOFOLLOW): a tree that names one path twice is refused too, and nothing
// outside the work tree is ever written.
//
// Threads: the calling thread uses `repo`; every other thread opens the
// repository again from its directory (configuration and attributes are
// read from disk, as git_repository_open does; settings made only in memory
// on `repo` are not seen by those threads) and has its own object caches.
//
// Errors (nothing is retried here; the work tree is left partly written on
// error and must be emptied before another attempt):
//   kInvalidArgument    threads < 1; the tree has a path that is refused or
//                       written twice (the message names it): never retry.
//   kNotFound           `commit` is not in the repository.
//   kFailedPrecondition `repo` is bare, or its work tree holds anything but
//                       .git; a filter or the configuration failed.
//   kUnavailable        a file could not be written (the message names it
//                       and the errno), or the index is locked.
//   kResourceExhausted  the disk or quota is full, or memory ran out.
//   kDataLoss           an object could not be read (corrupt or missing).
//
// Example (a repository just created in an emptied directory):
//   CIAGENT_RETURN_IF_ERROR(CheckoutFreshTree(repo, oid, UsableCpus()));
//   if (git_repository_set_head_detached(repo, &oid) != 0) ...
//
// Thread-safety: `repo` must not be used by another thread during the call;
// several calls may run at once on different repositories.
#ifndef CIAGENT_GIT_CHECKOUT_H_
#define CIAGENT_GIT_CHECKOUT_H_

#include <git2/oid.h>
#include <git2/types.h>

#include "absl/status/status.h"

namespace ciagent {

// Writes the tree of `commit` into the work tree of `repo`, which must be
// empty apart from .git, on `threads` threads, and writes the index (any
// previous index content is dropped).
[[nodiscard]] absl::Status CheckoutFreshTree(git_repository* repo,
                                             const git_oid& commit,
                                             int threads);

}  // namespace ciagent

#endif  // CIAGENT_GIT_CHECKOUT_H_
