// Why cargo could not get a dependency, read from what it printed on stderr.
//
// A cargo command that cannot fetch a git dependency or reach a registry
// fails like a compile error would: exit code 101 and a chain of
// "Caused by:" lines. The pipeline tells the job's problems from the
// agent's with this reader:
//   kAuthentication  a git dependency or a registry refused us, or asked for
//                    credentials we do not have: the job fails, and
//                    DescribeDependencyFailure says which of "host not in
//                    the allowed list", "no token configured" and "token
//                    rejected" it was (the operator's fix differs).
//   kUnavailable     the dependency's server could not be reached, answered
//                    5xx or 429, or timed out (after cargo's own retries):
//                    an infrastructure failure, the job is requeued.
//
// Only cargo's dependency errors count: the chain must start at
// `error: failed to get ...`, `error: failed to download ...` or another
// line naming a source cargo was loading, so a test that prints
// "Connection refused" is not mistaken for one. git's own `fatal:` lines
// (the git CLI, net.git-fetch-with-cli) come before the chain and carry the
// cause there; they are kept for it.
//
// Thread-safety: a reader belongs to one command's output.
#ifndef CIAGENT_PIPELINE_DEPENDENCY_FAILURE_H_
#define CIAGENT_PIPELINE_DEPENDENCY_FAILURE_H_

#include <optional>
#include <string>
#include <vector>

#include "absl/strings/string_view.h"
#include "ciagent/pipeline/private_dependencies.h"

namespace ciagent {

struct DependencyFailure {
  enum class Kind { kAuthentication, kUnavailable };
  Kind kind = Kind::kAuthentication;
  // The git dependency's URL (without query, fragment or user info), when
  // the failure is a git source's.
  std::string git_url;
  // The registry's name (cargo's `Updating `<name>` index`) or, failing
  // that, the URL cargo could not download; when a registry's.
  std::string registry;
  // What cargo or git gave as the cause, one line.
  std::string cause;
};

class DependencyFailureReader {
 public:
  // One stderr line of the cargo command, in order.
  void AddLine(absl::string_view line);
  // Set once the command's output shows a dependency failure.
  std::optional<DependencyFailure> failure() const;

 private:
  std::string registry_;       // the last `Updating `X` index`
  std::vector<std::string> git_fatal_;  // git CLI's `fatal:` lines
  std::vector<std::string> chain_;      // from the dependency error on
  bool in_chain_ = false;
};

// The step's reason, e.g.
//   authentication failed for git dependency https://h/org/internal.git
//   (host allowed, token rejected)
//   git dependency https://h/org/internal.git unavailable: unexpected http
//   status code: 503
std::string DescribeDependencyFailure(const DependencyFailure& failure,
                                      const PrivateDependencies& dependencies);

}  // namespace ciagent

#endif  // CIAGENT_PIPELINE_DEPENDENCY_FAILURE_H_
