// A name -> object map shared by the API threads. Lookups and listings take a shared lock
// for as long as it takes to copy pointers; no I/O ever happens under it.
//
// Thread-safety: all methods may be called from any thread.
#pragma once

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "base/mutex.h"

namespace vmm {

template <typename T>
class ObjectTable {
 public:
  std::shared_ptr<T> find(const std::string& name) const {
    ReaderLock lock(mu_);
    auto it = objects_.find(name);
    return it == objects_.end() ? nullptr : it->second;
  }
  // False if the name is taken.
  bool insert(const std::string& name, std::shared_ptr<T> obj) {
    WriterLock lock(mu_);
    return objects_.emplace(name, std::move(obj)).second;
  }
  void erase(const std::string& name) {
    WriterLock lock(mu_);
    objects_.erase(name);
  }
  // In name order.
  std::vector<std::shared_ptr<T>> all() const {
    ReaderLock lock(mu_);
    std::vector<std::shared_ptr<T>> out;
    out.reserve(objects_.size());
    for (const auto& [n, o] : objects_) out.push_back(o);
    return out;
  }
  std::vector<std::string> names() const {
    ReaderLock lock(mu_);
    std::vector<std::string> out;
    out.reserve(objects_.size());
    for (const auto& [n, o] : objects_) out.push_back(n);
    return out;
  }
  size_t size() const {
    ReaderLock lock(mu_);
    return objects_.size();
  }

 private:
  mutable SharedMutex mu_;
  std::map<std::string, std::shared_ptr<T>> objects_ VMM_GUARDED_BY(mu_);
};

}  // namespace vmm
