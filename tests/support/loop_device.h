// A loop device over a sparse file, for tests that need a real block device (LVM pools).
// The destructor detaches the device and deletes the file, also when a test fails.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "base/result.h"

namespace vmm::testutil {

// Creates `file` as a sparse file of `size` bytes (it must not exist yet).
Status makeSparseFile(const std::string& file, uint64_t size);

class LoopDevice {
 public:
  // Creates `file` (sparse, `size` bytes) and attaches it to a free loop device.
  static Result<std::unique_ptr<LoopDevice>> create(const std::string& file, uint64_t size);
  ~LoopDevice();
  LoopDevice(const LoopDevice&) = delete;
  LoopDevice& operator=(const LoopDevice&) = delete;

  const std::string& device() const { return device_; }  // "/dev/loop3"
  const std::string& file() const { return file_; }

 private:
  LoopDevice(std::string file, std::string device) : file_(std::move(file)), device_(std::move(device)) {}
  std::string file_;
  std::string device_;
};

}  // namespace vmm::testutil
