// Undo steps of a multi-step operation in reverse order unless it succeeds.
//
//   Reverter revert;
//   VMM_TRY(createTap(name));  revert.add([&] { deleteTap(name); });
//   VMM_TRY(spawnQemu(...));   revert.add([&] { killQemu(); });
//   revert.success();          // keep everything
//
// Not thread-safe; owned by the one job that performs the operation.
#pragma once

#include <functional>
#include <utility>
#include <vector>

namespace vmm {

class Reverter {
 public:
  Reverter() = default;
  Reverter(const Reverter&) = delete;
  Reverter& operator=(const Reverter&) = delete;
  ~Reverter() { fail(); }

  void add(std::function<void()> undo) { undo_.push_back(std::move(undo)); }
  // Keep everything: the undo steps are dropped.
  void success() { undo_.clear(); }
  // Undo now, newest step first. Safe to call more than once.
  void fail() {
    while (!undo_.empty()) {
      auto fn = std::move(undo_.back());
      undo_.pop_back();
      if (fn) fn();
    }
  }
  // Hands the undo steps to another reverter (e.g. kept for a later "stop").
  std::vector<std::function<void()>> release() { return std::exchange(undo_, {}); }

 private:
  std::vector<std::function<void()>> undo_;
};

}  // namespace vmm
