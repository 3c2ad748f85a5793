#include "storage/backend_factory.h"

#include "storage/dir/dir_backend.h"
#include "storage/iscsi/iscsi_backend.h"
#include "storage/logical/logical_backend.h"

namespace vmm::storage {

Result<std::unique_ptr<PoolBackend>> makeBackend(const model::Pool& pool) {
  switch (pool.type) {
    case model::PoolType::dir:
      return std::unique_ptr<PoolBackend>(new DirBackend(pool));
    case model::PoolType::logical:
      return std::unique_ptr<PoolBackend>(new LogicalBackend(pool));
    case model::PoolType::iscsi:
      return std::unique_ptr<PoolBackend>(new IscsiBackend(pool));
    default:
      break;
  }
  return unsupported("pool " + pool.name + ": type " + std::string(model::enumName(model::kPoolTypes, pool.type)) + " is not supported");
}

}  // namespace vmm::storage
