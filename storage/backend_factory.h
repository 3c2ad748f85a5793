// Creates the backend of a pool from its definition.
#pragma once

#include <memory>

#include "storage/pool_backend.h"

namespace vmm::storage {

Result<std::unique_ptr<PoolBackend>> makeBackend(const model::Pool& pool);

}  // namespace vmm::storage
