// subreaper_exec PROGRAM [ARG...]: makes itself a child subreaper, then
// execs PROGRAM, which keeps the setting (prctl(2): it survives execve).
//
// Used by scripts/test-arm64.sh in front of qemu-aarch64-static: QEMU 7.2's
// user-mode emulation answers EINVAL to prctl PR_SET_CHILD_SUBREAPER, which
// ci-build and the process runner need; set natively here, the emulated
// program is a real subreaper, and subreaper_shim.cc reports so to it.
#include <sys/prctl.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr, "usage: subreaper_exec PROGRAM [ARG...]\n");
    return 2;
  }
  if (prctl(PR_SET_CHILD_SUBREAPER, 1) != 0) {
    std::fprintf(stderr, "subreaper_exec: prctl: %s\n", std::strerror(errno));
    return 1;
  }
  execvp(argv[1], argv + 1);
  std::fprintf(stderr, "subreaper_exec: %s: %s\n", argv[1], std::strerror(errno));
  return 127;
}
