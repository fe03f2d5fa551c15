#include "ciagent/base/stop_signal.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstring>
#include <mutex>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"

namespace ciagent {
namespace {

std::atomic<bool> stop_requested{false};
std::atomic<int> stop_signal{0};
// Self-pipe: the handler writes one byte so poll() in sleepers wakes up.
int wake_pipe[2] = {-1, -1};
std::once_flag pipe_once;
absl::Status pipe_status;

void CreateWakePipe() {
  if (::pipe2(wake_pipe, O_CLOEXEC | O_NONBLOCK) != 0) {
    pipe_status = absl::InternalError(
        absl::StrCat("create stop pipe: ", std::strerror(errno)));
  }
}

void Wake() {
  if (wake_pipe[1] < 0) return;
  const char byte = 1;
  const int saved_errno = errno;
  [[maybe_unused]] ssize_t n = ::write(wake_pipe[1], &byte, 1);
  errno = saved_errno;
}

void OnStopSignal(int signo) {
  stop_signal.store(signo, std::memory_order_relaxed);
  stop_requested.store(true, std::memory_order_release);
  Wake();
}

}  // namespace

absl::Status InstallStopHandlers() {
  std::call_once(pipe_once, CreateWakePipe);
  if (!pipe_status.ok()) return pipe_status;
  struct sigaction action;
  std::memset(&action, 0, sizeof(action));
  action.sa_handler = OnStopSignal;
  sigemptyset(&action.sa_mask);
  action.sa_flags = SA_RESTART;
  for (int signo : {SIGTERM, SIGINT}) {
    if (::sigaction(signo, &action, nullptr) != 0) {
      return absl::InternalError(absl::StrCat(
          "install handler for signal ", signo, ": ", std::strerror(errno)));
    }
  }
  return absl::OkStatus();
}

bool StopRequested() { return stop_requested.load(std::memory_order_acquire); }

int StopSignalNumber() { return stop_signal.load(std::memory_order_relaxed); }

bool SleepUnlessStopped(absl::Duration duration) {
  std::call_once(pipe_once, CreateWakePipe);
  const absl::Time deadline = absl::Now() + duration;
  while (!StopRequested()) {
    const absl::Duration left = deadline - absl::Now();
    if (left <= absl::ZeroDuration()) return true;
    if (wake_pipe[0] < 0) {
      absl::SleepFor(std::min(left, absl::Milliseconds(50)));
      continue;
    }
    struct pollfd fd = {wake_pipe[0], POLLIN, 0};
    // Round up so a sub-millisecond remainder does not spin.
    const int timeout_ms =
        static_cast<int>(absl::ToInt64Milliseconds(left + absl::Microseconds(999)));
    ::poll(&fd, 1, timeout_ms);
    // The byte stays in the pipe on purpose: every sleeper must see it.
  }
  return false;
}

void RequestStop() {
  std::call_once(pipe_once, CreateWakePipe);
  stop_requested.store(true, std::memory_order_release);
  Wake();
}

void ResetStopForTesting() {
  std::call_once(pipe_once, CreateWakePipe);
  stop_requested.store(false, std::memory_order_release);
  stop_signal.store(0, std::memory_order_relaxed);
  char buf[64];
  while (wake_pipe[0] >= 0 && ::read(wake_pipe[0], buf, sizeof(buf)) > 0) {
  }
}

}  // namespace ciagent
