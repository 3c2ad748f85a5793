// Creates the backend of a pool from its definition.
#pragma once

#include <memory>

#include "storage/dir/tar_scan.h"
#include "storage/pool_backend.h"

namespace vmm::storage {

// `unpack` bounds the rootfs tarballs unpacked into dir pools.
Result<std::unique_ptr<PoolBackend>> makeBackend(const model::Pool& pool, const TarLimits& unpack = {});

}  // namespace vmm::storage
