// Owning pointers for libgit2 objects: each frees its object with the
// matching git_*_free when it goes out of scope.
//
//   git_repository* raw = nullptr;
//   if (git_repository_open(&raw, path) != 0) ...
//   RepoPtr repo(raw);
#ifndef CIAGENT_GIT_INTERNAL_LIBGIT2_PTR_H_
#define CIAGENT_GIT_INTERNAL_LIBGIT2_PTR_H_

#include <git2.h>

#include <memory>

namespace ciagent {

template <typename T, void (*Free)(T*)>
struct Libgit2Deleter {
  void operator()(T* p) const { Free(p); }
};

template <typename T, void (*Free)(T*)>
using Libgit2Ptr = std::unique_ptr<T, Libgit2Deleter<T, Free>>;

using BlobPtr = Libgit2Ptr<git_blob, git_blob_free>;
using CommitPtr = Libgit2Ptr<git_commit, git_commit_free>;
using ConfigPtr = Libgit2Ptr<git_config, git_config_free>;
using FilterListPtr = Libgit2Ptr<git_filter_list, git_filter_list_free>;
using IndexPtr = Libgit2Ptr<git_index, git_index_free>;
using RemotePtr = Libgit2Ptr<git_remote, git_remote_free>;
using RepoPtr = Libgit2Ptr<git_repository, git_repository_free>;
using SubmodulePtr = Libgit2Ptr<git_submodule, git_submodule_free>;
using TreePtr = Libgit2Ptr<git_tree, git_tree_free>;

}  // namespace ciagent

#endif  // CIAGENT_GIT_INTERNAL_LIBGIT2_PTR_H_
