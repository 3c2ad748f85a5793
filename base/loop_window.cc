#include "base/loop_window.h"

#include <fcntl.h>
#include <linux/loop.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include <cerrno>
#include <string>

namespace vmm {

Result<fs::UniqueFd> openLoopWindow(int backingFd, uint64_t offset, uint64_t size, bool readOnly) {
  if (size == 0 || size % 512 != 0 || offset % 512 != 0) return invalidArgument("a loop window needs a size and offset in 512-byte units");
  fs::UniqueFd control(::open("/dev/loop-control", O_RDWR | O_CLOEXEC));
  if (!control.valid()) return systemError("cannot open /dev/loop-control", errno);
  // Another process may take the device found free before it is configured: try the next.
  for (int attempt = 0; attempt < 16; ++attempt) {
    int n = ::ioctl(control.get(), LOOP_CTL_GET_FREE);
    if (n < 0) return systemError("no free loop device", errno);
    std::string device = "/dev/loop" + std::to_string(n);
    fs::UniqueFd loop(::open(device.c_str(), (readOnly ? O_RDONLY : O_RDWR) | O_CLOEXEC));
    if (!loop.valid()) return systemError("cannot open " + device, errno);
    loop_config config{};
    config.fd = static_cast<uint32_t>(backingFd);
    config.info.lo_offset = offset;
    config.info.lo_sizelimit = size;
    config.info.lo_flags = LO_FLAGS_AUTOCLEAR | (readOnly ? LO_FLAGS_READ_ONLY : 0);
    if (::ioctl(loop.get(), LOOP_CONFIGURE, &config) == 0) return loop;
    if (errno != EBUSY) return systemError("cannot configure " + device, errno);
  }
  return unavailable("every free loop device was taken by another process first");
}

}  // namespace vmm
