// Byte access to a linear LV through its physical volumes (see lv_layout.h), for upload,
// download, wipe and full copies. Writes go in place and never beyond the LV's size.
//
// The layout is read when the stream opens and read again every few seconds of I/O and at
// finish(): if the LV was moved, resized or removed meanwhile, I/O fails instead of touching
// extents that may now belong to another volume. Not thread-safe: one user at a time.
#pragma once

#include <map>
#include <memory>
#include <string>

#include "base/fs.h"
#include "storage/logical/lv_layout.h"
#include "storage/pool_backend.h"

namespace vmm::storage {

class LvStream final : public VolumeStream {
 public:
  static Result<std::unique_ptr<LvStream>> open(LvmCommand lvm, std::string vg, std::string lv, StreamMode mode, Deadline deadline);

  uint64_t size() const override { return layout_.size; }
  Result<size_t> read(uint64_t offset, char* buf, size_t len, Deadline deadline) override;
  Status write(uint64_t offset, const char* buf, size_t len, Deadline deadline) override;
  // Writers: flushes to the devices and checks the layout did not change.
  Status finish(Deadline deadline) override;
  // Writes zeros over [offset, offset + len) (BLKZEROOUT where the device supports it).
  Status zero(uint64_t offset, uint64_t len, Deadline deadline);

  const LvLayout& layout() const { return layout_; }

 private:
  LvStream(LvmCommand lvm, std::string vg, std::string lv, StreamMode mode, LvLayout layout)
      : lvm_(std::move(lvm)), vg_(std::move(vg)), lv_(std::move(lv)), mode_(mode), layout_(std::move(layout)) {}
  Status checkLayout(Deadline deadline, bool force);
  Status checkWrite(uint64_t offset, uint64_t len, Deadline deadline);

  LvmCommand lvm_;
  std::string vg_;
  std::string lv_;
  StreamMode mode_;
  LvLayout layout_;
  std::map<std::string, fs::UniqueFd> fds_;  // device -> open descriptor
  SteadyClock::time_point checkedAt_ = SteadyClock::now();
  bool finished_ = false;
};

}  // namespace vmm::storage
