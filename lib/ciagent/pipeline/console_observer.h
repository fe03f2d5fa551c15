// ConsoleObserver: shows a pipeline run on a terminal (ci-build --local):
// each output line prefixed with its step, a line per step transition.
//
// Example:
//   ConsoleObserver console(stdout);
//   CIAGENT_ASSIGN_OR_RETURN(PipelineResult result,
//                            RunPipeline(options, &console));
//   std::fputs(HumanSummary(result).c_str(), stdout);
//
// Thread-safety: as PipelineObserver (one thread). Does not own `out`.
#ifndef CIAGENT_PIPELINE_CONSOLE_OBSERVER_H_
#define CIAGENT_PIPELINE_CONSOLE_OBSERVER_H_

#include <cstdio>

#include "ciagent/pipeline/pipeline.h"

namespace ciagent {

class ConsoleObserver : public PipelineObserver {
 public:
  explicit ConsoleObserver(std::FILE* out) : out_(out) {}

  void StepStarted(absl::string_view step) override;
  void StepOutput(absl::string_view step, absl::string_view stream,
                  absl::string_view line) override;
  void StepFinished(const StepRecord& record) override;

 private:
  std::FILE* out_;
};

}  // namespace ciagent

#endif  // CIAGENT_PIPELINE_CONSOLE_OBSERVER_H_
