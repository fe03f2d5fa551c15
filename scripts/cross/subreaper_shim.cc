// An aarch64 LD_PRELOAD library for programs run under qemu-user by
// scripts/test-arm64.sh: prctl PR_SET_CHILD_SUBREAPER and
// PR_GET_CHILD_SUBREAPER, which QEMU 7.2 does not emulate (EINVAL), answer
// as the kernel would: the process QEMU was exec'd as is a real subreaper
// (subreaper_exec.cc made it one), a process it forks is not (the setting
// is not inherited) and cannot become one. Every other option goes to libc.
#include <dlfcn.h>
#include <errno.h>
#include <sys/prctl.h>
#include <unistd.h>

#include <cstdarg>
#include <cstdlib>

namespace {

pid_t subreaper_pid = 0;

__attribute__((constructor)) void Init() {
  subreaper_pid = getpid();
  // The program's children (cargo, git, ...) are native programs, or ours
  // started again through the wrapper: neither needs this library.
  unsetenv("LD_PRELOAD");
}

}  // namespace

extern "C" int prctl(int option, ...) noexcept {
  va_list args;
  va_start(args, option);
  unsigned long arg[4];
  for (unsigned long& a : arg) a = va_arg(args, unsigned long);
  va_end(args);
  const bool subreaper = getpid() == subreaper_pid;
  if (option == PR_SET_CHILD_SUBREAPER && arg[0] == 1) {
    if (subreaper) return 0;
    errno = EINVAL;
    return -1;
  }
  if (option == PR_GET_CHILD_SUBREAPER) {
    *reinterpret_cast<int*>(arg[0]) = subreaper ? 1 : 0;
    return 0;
  }
  using Prctl = int (*)(int, ...);
  static const auto real = reinterpret_cast<Prctl>(dlsym(RTLD_NEXT, "prctl"));
  return real(option, arg[0], arg[1], arg[2], arg[3]);
}
