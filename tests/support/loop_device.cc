#include "tests/support/loop_device.h"

#include <fcntl.h>
#include <unistd.h>

#include "base/fs.h"
#include "base/process.h"
#include "base/strings.h"

namespace vmm::testutil {

Status makeSparseFile(const std::string& file, uint64_t size) {
  fs::UniqueFd fd(::open(file.c_str(), O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600));
  if (!fd.valid()) return systemError("creating " + file, errno);
  if (::ftruncate(fd.get(), static_cast<off_t>(size)) != 0) {
    int err = errno;
    (void)fs::removeFile(file);
    return systemError("sizing " + file, err);
  }
  return {};
}

Result<std::unique_ptr<LoopDevice>> LoopDevice::create(const std::string& file, uint64_t size) {
  VMM_TRY(makeSparseFile(file, size));
  RunOptions opts;
  opts.deadline = Deadline::after(Millis(30000));
  auto res = runCommand({"losetup", "--find", "--show", file}, opts);
  if (!res.ok() || !res->success()) {
    (void)fs::removeFile(file);
    if (!res.ok()) return res.takeError();
    return internalError("losetup " + file + ": " + res->describe());
  }
  std::string device(trim(res->out));
  if (!startsWith(device, "/dev/loop")) {
    (void)fs::removeFile(file);
    return internalError("losetup printed " + quote(device));
  }
  return std::unique_ptr<LoopDevice>(new LoopDevice(file, device));
}

LoopDevice::~LoopDevice() {
  RunOptions opts;
  opts.deadline = Deadline::after(Millis(30000));
  (void)runCommand({"losetup", "--detach", device_}, opts);
  (void)fs::removeFile(file_);
}

}  // namespace vmm::testutil
