// checkout_benchmark: CheckoutFreshTree next to libgit2's git_checkout_tree.
//
//   checkout_benchmark BARE_REPO [REV [ROUNDS [THREADS [SCRATCH_DIR]]]]
//
// Defaults: REV main, ROUNDS 7, THREADS 2, SCRATCH_DIR $TMPDIR or /tmp.
// Each round checks REV out twice into new work trees that borrow
// BARE_REPO's objects (objects/info/alternates, as the fetch module's work
// trees borrow the mirror's): once with git_checkout_tree(GIT_CHECKOUT_FORCE),
// once with CheckoutFreshTree on THREADS threads, in alternating order so
// that neither side always runs on a warmer machine. A first round warms the
// page cache and is not counted. Only the checkout call is timed (index
// written included); creating the repository, deleting the tree and
// sync(2) are not. Both sides run with strict hash verification off, as the
// fetch module sets it. Prints every time, then one line per side:
//
//   libgit2   median 1.234 s  min 1.200 s  (7 runs)
//   parallel  median 0.612 s  min 0.600 s  (7 runs)
//
// and the load average before and after. Exit status 1 when a checkout
// fails, 2 on wrong usage.
#include <git2.h>
#include <stdlib.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "ciagent/git/checkout.h"

namespace {

namespace fs = std::filesystem;

absl::Status Libgit2Failure(absl::string_view what) {
  const git_error* e = git_error_last();
  return absl::InternalError(
      absl::StrCat(what, ": ", e != nullptr ? e->message : "?"));
}

// A new repository at `path` with an empty work tree, borrowing the objects
// of `bare`.
absl::Status NewWorkTree(const std::string& path, const std::string& bare,
                         git_repository** out) {
  git_repository* repo = nullptr;
  if (git_repository_init(&repo, path.c_str(), 0) != 0) {
    return Libgit2Failure(absl::StrCat("init ", path));
  }
  git_repository_free(repo);
  std::ofstream(fs::path(path) / ".git/objects/info/alternates")
      << fs::absolute(bare).string() << "/objects\n";
  if (git_repository_open(out, path.c_str()) != 0) {
    return Libgit2Failure(absl::StrCat("open ", path));
  }
  return absl::OkStatus();
}

absl::Status Libgit2Checkout(git_repository* repo, const git_oid& commit) {
  git_object* object = nullptr;
  if (git_object_lookup(&object, repo, &commit, GIT_OBJECT_COMMIT) != 0) {
    return Libgit2Failure("look up the commit");
  }
  git_checkout_options options = GIT_CHECKOUT_OPTIONS_INIT;
  options.checkout_strategy = GIT_CHECKOUT_FORCE;
  const int rc = git_checkout_tree(repo, object, &options);
  git_object_free(object);
  if (rc != 0) return Libgit2Failure("git_checkout_tree");
  return absl::OkStatus();
}

struct Side {
  const char* name;
  std::vector<double> seconds;
};

void PrintSummary(Side& side) {
  std::sort(side.seconds.begin(), side.seconds.end());
  const size_t n = side.seconds.size();
  const double median =
      n % 2 == 1 ? side.seconds[n / 2]
                 : (side.seconds[n / 2 - 1] + side.seconds[n / 2]) / 2;
  std::printf("%-9s median %.3f s  min %.3f s  (%zu runs)\n", side.name, median,
              side.seconds.front(), n);
}

void PrintLoad(const char* when) {
  double load[3] = {0, 0, 0};
  getloadavg(load, 3);
  std::printf("load average %s: %.2f %.2f %.2f\n", when, load[0], load[1],
              load[2]);
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2 || argc > 6) {
    std::fprintf(stderr,
                 "usage: checkout_benchmark BARE_REPO [REV [ROUNDS "
                 "[THREADS [SCRATCH_DIR]]]]\n");
    return 2;
  }
  const std::string bare = argv[1];
  const std::string rev = argc > 2 ? argv[2] : "main";
  int rounds = 7;
  int threads = 2;
  if ((argc > 3 && !absl::SimpleAtoi(argv[3], &rounds)) ||
      (argc > 4 && !absl::SimpleAtoi(argv[4], &threads)) || rounds < 1) {
    std::fprintf(stderr, "checkout_benchmark: bad ROUNDS or THREADS\n");
    return 2;
  }
  const char* tmp = std::getenv("TMPDIR");
  std::string scratch_parent = argc > 5 ? argv[5] : (tmp ? tmp : "/tmp");
  std::string scratch = scratch_parent + "/checkout-bench-XXXXXX";
  if (mkdtemp(scratch.data()) == nullptr) {
    std::perror("checkout_benchmark: mkdtemp");
    return 1;
  }

  git_libgit2_init();
  git_libgit2_opts(GIT_OPT_ENABLE_STRICT_HASH_VERIFICATION, 0);
  git_oid commit;
  {
    git_repository* repo = nullptr;
    git_object* object = nullptr;
    if (git_repository_open_bare(&repo, bare.c_str()) != 0 ||
        git_revparse_single(&object, repo, rev.c_str()) != 0) {
      std::fprintf(stderr, "checkout_benchmark: %s\n",
                   Libgit2Failure(rev).ToString().c_str());
      return 1;
    }
    commit = *git_object_id(object);
    git_object_free(object);
    git_repository_free(repo);
  }

  Side libgit2{"libgit2", {}};
  Side parallel{"parallel", {}};
  PrintLoad("before");
  int exit_code = 0;
  for (int round = 0; round <= rounds && exit_code == 0; ++round) {
    for (int turn = 0; turn < 2 && exit_code == 0; ++turn) {
      const bool ours = (round + turn) % 2 == 1;
      const std::string path =
          absl::StrCat(scratch, "/r", round, ours ? "-parallel" : "-libgit2");
      git_repository* repo = nullptr;
      absl::Status status = NewWorkTree(path, bare, &repo);
      sync();
      absl::Duration elapsed;
      if (status.ok()) {
        const absl::Time start = absl::Now();
        status = ours ? ciagent::CheckoutFreshTree(repo, commit, threads)
                      : Libgit2Checkout(repo, commit);
        elapsed = absl::Now() - start;
      }
      git_repository_free(repo);
      if (!status.ok()) {
        std::fprintf(stderr, "checkout_benchmark: %s\n",
                     status.ToString().c_str());
        exit_code = 1;
        break;
      }
      const double seconds = absl::ToDoubleSeconds(elapsed);
      std::printf("round %d %-9s %.3f s%s\n", round,
                  ours ? "parallel" : "libgit2", seconds,
                  round == 0 ? " (warm-up)" : "");
      std::fflush(stdout);
      if (round > 0) (ours ? parallel : libgit2).seconds.push_back(seconds);
      std::error_code ec;
      fs::remove_all(path, ec);
      sync();
    }
  }
  fs::remove_all(scratch);
  if (exit_code != 0) return exit_code;
  PrintSummary(libgit2);
  PrintSummary(parallel);
  PrintLoad("after");
  git_libgit2_shutdown();
  return 0;
}
