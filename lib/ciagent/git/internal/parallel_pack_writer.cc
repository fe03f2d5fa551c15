#include "ciagent/git/internal/parallel_pack_writer.h"

#include <git2/sys/odb_backend.h>

#include <memory>
#include <string>

#include "absl/strings/str_cat.h"
#include "ciagent/git/internal/pack_indexer.h"

namespace ciagent {
namespace {

// Higher than libgit2's own backends (loose 1, packed 2): asked first.
constexpr int kPriority = 1000;

struct Backend {
  git_odb_backend parent;  // first: libgit2 sees a git_odb_backend*
  std::string* pack_dir;
  int threads;
};

struct Writepack {
  git_odb_writepack parent;  // first: libgit2 sees a git_odb_writepack*
  PackIndexer* indexer;
  git_indexer_progress_cb progress_cb;
  void* progress_payload;
  git_indexer_progress* commit_stats;  // set while Commit runs
};

void CopyProgress(const PackIndexer& indexer, git_indexer_progress* stats) {
  const PackIndexerProgress progress = indexer.progress();
  stats->total_objects = static_cast<unsigned int>(progress.total_objects);
  stats->received_objects =
      static_cast<unsigned int>(progress.received_objects);
  stats->indexed_objects = static_cast<unsigned int>(progress.indexed_objects);
  stats->total_deltas = static_cast<unsigned int>(progress.total_deltas);
  stats->indexed_deltas = static_cast<unsigned int>(progress.indexed_deltas);
}

// Hands a failure to libgit2: a message it can report and an error code.
int ReportError(const absl::Status& status) {
  if (status.code() == absl::StatusCode::kCancelled) return GIT_EUSER;
  const int klass = status.code() == absl::StatusCode::kDataLoss
                        ? GIT_ERROR_INDEXER
                        : GIT_ERROR_OS;
  git_error_set_str(klass, std::string(status.message()).c_str());
  return -1;
}

int Append(git_odb_writepack* base, const void* data, size_t size,
           git_indexer_progress* stats) {
  auto* writepack = reinterpret_cast<Writepack*>(base);
  const absl::Status status = writepack->indexer->Append(
      absl::string_view(static_cast<const char*>(data), size));
  if (!status.ok()) return ReportError(status);
  CopyProgress(*writepack->indexer, stats);
  return 0;
}

int Commit(git_odb_writepack* base, git_indexer_progress* stats) {
  auto* writepack = reinterpret_cast<Writepack*>(base);
  writepack->commit_stats = stats;
  const absl::StatusOr<std::string> name = writepack->indexer->Commit();
  writepack->commit_stats = nullptr;
  CopyProgress(*writepack->indexer, stats);
  if (!name.ok()) return ReportError(name.status());
  if (writepack->progress_cb != nullptr) {
    writepack->progress_cb(stats, writepack->progress_payload);
  }
  return 0;
}

void FreeWritepack(git_odb_writepack* base) {
  auto* writepack = reinterpret_cast<Writepack*>(base);
  delete writepack->indexer;
  delete writepack;
}

int NewWritepack(git_odb_writepack** out, git_odb_backend* base,
                 git_odb* /*odb*/, git_indexer_progress_cb progress_cb,
                 void* progress_payload) {
  auto* backend = reinterpret_cast<Backend*>(base);
  auto* writepack = new Writepack{};
  writepack->parent.backend = base;
  writepack->parent.append = Append;
  writepack->parent.commit = Commit;
  writepack->parent.free = FreeWritepack;
  writepack->progress_cb = progress_cb;
  writepack->progress_payload = progress_payload;
  PackIndexerOptions options;
  options.threads = backend->threads;
  // Runs on the thread that called Commit, libgit2's: the fetch's callback
  // sees the resolution progress and may stop it.
  options.should_cancel = [writepack] {
    if (writepack->progress_cb == nullptr ||
        writepack->commit_stats == nullptr) {
      return false;
    }
    CopyProgress(*writepack->indexer, writepack->commit_stats);
    return writepack->progress_cb(writepack->commit_stats,
                                  writepack->progress_payload) != 0;
  };
  absl::StatusOr<std::unique_ptr<PackIndexer>> indexer =
      PackIndexer::Create(*backend->pack_dir, std::move(options));
  if (!indexer.ok()) {
    delete writepack;
    return ReportError(indexer.status());
  }
  writepack->indexer = indexer->release();
  *out = &writepack->parent;
  return 0;
}

void FreeBackend(git_odb_backend* base) {
  auto* backend = reinterpret_cast<Backend*>(base);
  delete backend->pack_dir;
  delete backend;
}

}  // namespace

absl::Status UseParallelPackWriter(git_odb* odb, const std::string& pack_dir,
                                   int threads) {
  auto* backend = new Backend{};
  git_odb_init_backend(&backend->parent, GIT_ODB_BACKEND_VERSION);
  backend->parent.writepack = NewWritepack;
  backend->parent.free = FreeBackend;
  backend->pack_dir = new std::string(pack_dir);
  backend->threads = threads;
  if (git_odb_add_backend(odb, &backend->parent, kPriority) != 0) {
    const git_error* e = git_error_last();
    FreeBackend(&backend->parent);
    return absl::InternalError(absl::StrCat("add the parallel pack writer: ",
                                            e != nullptr ? e->message : "?"));
  }
  return absl::OkStatus();
}

}  // namespace ciagent
