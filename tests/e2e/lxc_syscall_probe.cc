// Copied into a container's rootfs by lxc_confinement_e2e_test: calls system calls a
// container's seccomp filter denies, with harmless arguments, and prints NAME=ERRNO for each
// (0: the call succeeded). Linked statically: the busybox rootfs has no libc.
#include <fcntl.h>
#include <linux/bpf.h>
#include <linux/keyctl.h>
#include <sys/mount.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>

namespace {

void report(const char* name, long rc) { std::printf("%s=%d\n", name, rc < 0 ? errno : 0); }

}  // namespace

int main() {
  report("init_module", ::syscall(SYS_init_module, nullptr, 0, ""));
  report("finit_module", ::syscall(SYS_finit_module, -1, "", 0));
  report("kexec_load", ::syscall(SYS_kexec_load, 0, 0, nullptr, 0));
  report("open_by_handle_at", ::syscall(SYS_open_by_handle_at, AT_FDCWD, nullptr, 0));
  report("bpf", ::syscall(SYS_bpf, BPF_PROG_LOAD, nullptr, 0));
  report("keyctl", ::syscall(SYS_keyctl, KEYCTL_GET_KEYRING_ID, KEY_SPEC_SESSION_KEYRING, 0));
  report("umount2_force", ::syscall(SYS_umount2, "/nonexistent-mount-point", MNT_FORCE));
  report("umount2", ::syscall(SYS_umount2, "/nonexistent-mount-point", 0));
  return 0;
}
