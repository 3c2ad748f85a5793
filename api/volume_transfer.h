// Volume upload and download as byte streams, shared by both transports. Over JSON-RPC the
// connection becomes the stream after the reply; over HTTP the request or response body is it.
// Bytes go through in 1 MiB chunks: a volume is never held in memory.
#pragma once

#include <functional>
#include <nlohmann/json.hpp>

#include "api/wire.h"
#include "base/fs.h"
#include "base/result.h"
#include "base/thread_pool.h"
#include "daemon/pool_service.h"

namespace vmm::api {

constexpr size_t kTransferChunk = 1 << 20;
// A transfer that moves no byte for this long is abandoned.
constexpr Millis kTransferIdle = Millis(120000);

// "volume.upload" {pool, name, size}: after the reply the client sends exactly `size` bytes;
// vmmd then writes one JSON line ({"result": volume} or {"error": ...}) and closes.
// "volume.download" {pool, name}: the reply carries "size"; that many bytes follow, then EOF.
Result<StreamStart> startVolumeTransfer(PoolService& pools, ThreadPool& workers, const std::string& method,
                                        const nlohmann::json& params);

// Writes `size` bytes delivered by `next` into the volume and finishes it. `next` fills the
// buffer and returns the byte count (0: the sender ended early).
using ChunkSource = std::function<Result<size_t>(char* buf, size_t len)>;
Result<model::Volume> receiveVolume(PoolService& pools, storage::VolumeStream& stream, const std::string& pool,
                                    const std::string& name, uint64_t size, const ChunkSource& next);

}  // namespace vmm::api
