#include "drivers/lxc/confinement.h"

#include <linux/capability.h>
#include <linux/seccomp.h>
#include <seccomp.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>

namespace vmm::drivers::lxc {

uint64_t droppedCapabilities(bool privileged, bool devicesCgroup) {
  uint64_t bits = 0;
  for (int cap : {CAP_SYS_MODULE, CAP_SYS_RAWIO, CAP_SYS_TIME, CAP_SYS_BOOT, CAP_MAC_ADMIN, CAP_MAC_OVERRIDE, CAP_SYSLOG,
                  CAP_WAKE_ALARM, CAP_BLOCK_SUSPEND, CAP_AUDIT_CONTROL})
    bits |= uint64_t{1} << cap;
  // Without a devices cgroup nothing stops a host root's mknod + open of a disk; in a user
  // namespace the kernel refuses device nodes anyway.
  if (privileged && !devicesCgroup) bits |= uint64_t{1} << CAP_MKNOD;
  return bits;
}

Result<std::vector<sock_filter>> seccompFilter(bool privileged) {
  scmp_filter_ctx ctx = seccomp_init(SCMP_ACT_ALLOW);
  if (!ctx) return internalError("seccomp_init failed");
  struct Release {
    scmp_filter_ctx ctx;
    ~Release() { seccomp_release(ctx); }
  } release{ctx};
  // The 32-bit and x32 entry points reach the same kernel: the list covers them too (any other
  // architecture is killed, libseccomp's default for an architecture not in the filter).
  if (seccomp_arch_native() == SCMP_ARCH_X86_64)
    for (uint32_t arch : {SCMP_ARCH_X86, SCMP_ARCH_X32})
      if (int rc = seccomp_arch_add(ctx, arch); rc < 0 && rc != -EEXIST) return systemError("seccomp_arch_add", -rc);
  std::vector<const char*> denied = {"kexec_load", "kexec_file_load", "init_module", "finit_module", "delete_module",
                                     "open_by_handle_at"};
  if (privileged)
    for (const char* name : {"bpf", "perf_event_open", "keyctl", "add_key", "request_key", "swapon", "swapoff", "acct"})
      denied.push_back(name);
  for (const char* name : denied) {
    int nr = seccomp_syscall_resolve_name(name);
    if (nr == __NR_SCMP_ERROR) continue;  // unknown to this libseccomp: nothing to deny
    if (int rc = seccomp_rule_add(ctx, SCMP_ACT_ERRNO(EPERM), nr, 0); rc < 0)
      return systemError(std::string("seccomp rule for ") + name, -rc);
  }
  // A forced unmount can pull a filesystem from under the host (NFS, FUSE) when shared.
  if (int rc = seccomp_rule_add(ctx, SCMP_ACT_ERRNO(EPERM), SCMP_SYS(umount2), 1, SCMP_A1(SCMP_CMP_MASKED_EQ, MNT_FORCE, MNT_FORCE));
      rc < 0)
    return systemError("seccomp rule for umount2", -rc);
  int fd = static_cast<int>(::syscall(SYS_memfd_create, "vmm-seccomp", MFD_CLOEXEC));
  if (fd < 0) return systemError("memfd_create", errno);
  struct Close {
    int fd;
    ~Close() { ::close(fd); }
  } closer{fd};
  if (int rc = seccomp_export_bpf(ctx, fd); rc < 0) return systemError("seccomp_export_bpf", -rc);
  off_t size = ::lseek(fd, 0, SEEK_END);
  if (size <= 0 || size % static_cast<off_t>(sizeof(sock_filter)) != 0) return internalError("seccomp_export_bpf wrote no program");
  std::vector<sock_filter> prog(static_cast<size_t>(size) / sizeof(sock_filter));
  if (::pread(fd, prog.data(), static_cast<size_t>(size), 0) != size) return systemError("cannot read the seccomp program", errno);
  return prog;
}

Result<Confinement> makeConfinement(bool privileged, bool devicesCgroup) {
  Confinement c;
  c.dropCaps = droppedCapabilities(privileged, devicesCgroup);
  VMM_ASSIGN(c.filter, seccompFilter(privileged));
  return c;
}

bool applyConfinement(const Confinement& c, const char** step) {
  *step = "drop capabilities from the bounding set";
  for (int cap = 0; cap < 64; ++cap)
    if (((c.dropCaps >> cap) & 1) && ::prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) != 0 && errno != EINVAL) return false;
  *step = "drop capabilities";
  __user_cap_header_struct hdr{_LINUX_CAPABILITY_VERSION_3, 0};
  __user_cap_data_struct data[2]{};
  if (::syscall(SYS_capget, &hdr, data) != 0) return false;
  for (int i = 0; i < 2; ++i) {
    auto keep = static_cast<uint32_t>(~(c.dropCaps >> (32 * i)));
    data[i].effective &= keep;
    data[i].permitted &= keep;
    data[i].inheritable &= keep;
  }
  if (::syscall(SYS_capset, &hdr, data) != 0) return false;
  (void)::prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0);
  if (c.filter.empty()) return true;
  *step = "load the seccomp filter";
  // Without no_new_privs (setuid programs in the container keep working): this needs
  // CAP_SYS_ADMIN in the process's user namespace, which the container's root has.
  sock_fprog prog{static_cast<unsigned short>(c.filter.size()), const_cast<sock_filter*>(c.filter.data())};
  return ::prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog, 0, 0) == 0;
}

uint64_t parseCapMask(const char* hex) {
  uint64_t v = 0;
  for (; *hex == ' ' || *hex == '\t'; ++hex) {
  }
  for (; *hex; ++hex) {
    char ch = *hex;
    int d = ch >= '0' && ch <= '9' ? ch - '0' : ch >= 'a' && ch <= 'f' ? ch - 'a' + 10 : ch >= 'A' && ch <= 'F' ? ch - 'A' + 10 : -1;
    if (d < 0) break;
    v = v << 4 | static_cast<uint64_t>(d);
  }
  return v;
}

}  // namespace vmm::drivers::lxc
