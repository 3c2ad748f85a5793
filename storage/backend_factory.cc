#include "storage/backend_factory.h"

#include "storage/dir/dir_backend.h"
#include "storage/iscsi/iscsi_backend.h"
#include "storage/logical/logical_backend.h"
#include "storage/netfs/netfs_backend.h"

namespace vmm::storage {

Result<std::unique_ptr<PoolBackend>> makeBackend(const model::Pool& pool, const TarLimits& unpack) {
  switch (pool.type) {
    case model::PoolType::dir:
      return std::unique_ptr<PoolBackend>(new DirBackend(pool, unpack));
    case model::PoolType::logical:
      return std::unique_ptr<PoolBackend>(new LogicalBackend(pool));
    case model::PoolType::iscsi:
      return std::unique_ptr<PoolBackend>(new IscsiBackend(pool));
    case model::PoolType::netfs:
      return std::unique_ptr<PoolBackend>(new NetfsBackend(pool));
  }
  return unsupported("pool " + pool.name + ": unknown type");
}

}  // namespace vmm::storage
