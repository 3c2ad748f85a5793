#include "api/volume_transfer.h"

#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <memory>
#include <vector>

#include "api/wire.h"
#include "base/json_util.h"
#include "base/log.h"
#include "base/socket_util.h"
#include "model/pool.h"

namespace vmm::api {

using json = nlohmann::json;

namespace {

Result<std::string> stringParam(const json& p, const char* key) {
  if (!p.is_object() || !p.contains(key) || !p[key].is_string() || p[key].get<std::string>().empty())
    return invalidArgument(std::string(key) + ": required string");
  return p[key].get<std::string>();
}

Status onlyParams(const json& p, const std::string& method, std::initializer_list<const char*> allowed) {
  for (auto it = p.begin(); it != p.end(); ++it) {
    bool ok = false;
    for (const char* a : allowed) ok = ok || it.key() == a;
    if (!ok) return invalidArgument(it.key() + ": unknown parameter of " + method);
  }
  return {};
}

// Reads from a socket with an idle deadline.
Result<size_t> readSome(int fd, char* buf, size_t len) {
  pollfd p{fd, POLLIN, 0};
  int n = pollFor(&p, 1, Deadline::after(kTransferIdle));
  if (n == 0) return timeoutError("no data for " + std::to_string(kTransferIdle.count() / 1000) + " s");
  if (n < 0) return systemError("poll", errno);
  ssize_t got = ::read(fd, buf, len);
  if (got < 0) return systemError("reading the upload", errno);
  return static_cast<size_t>(got);
}

}  // namespace

Result<model::Volume> receiveVolume(PoolService& pools, storage::VolumeStream& stream, const std::string& pool,
                                    const std::string& name, uint64_t size, const ChunkSource& next) {
  std::vector<char> buf(kTransferChunk);
  uint64_t done = 0;
  while (done < size) {
    size_t want = static_cast<size_t>(std::min<uint64_t>(buf.size(), size - done));
    VMM_ASSIGN(auto got, next(buf.data(), want));
    if (got == 0)
      return invalidArgument("upload ended after " + std::to_string(done) + " of " + std::to_string(size) + " bytes; the volume is unchanged");
    VMM_TRY(stream.write(done, buf.data(), got, Deadline::after(kTransferIdle)));
    done += got;
  }
  VMM_TRY(stream.finish(Deadline::after(kTransferIdle)));
  return pools.getVolume(pool, name);
}

Result<StreamStart> startVolumeTransfer(PoolService& pools, ThreadPool& workers, const std::string& method,
                                        const json& params) {
  if (!params.is_object()) return invalidArgument("params: expected an object");
  VMM_ASSIGN(auto pool, stringParam(params, "pool"));
  VMM_ASSIGN(auto name, stringParam(params, "name"));
  bool upload = method == "volume.upload";
  uint64_t size = 0;
  if (upload) {
    VMM_TRY(onlyParams(params, method, {"pool", "name", "size"}));
    if (!params.contains("size") || !params["size"].is_number_unsigned())
      return invalidArgument("size: required, the number of bytes that will be sent");
    size = params["size"].get<uint64_t>();
  } else {
    VMM_TRY(onlyParams(params, method, {"pool", "name"}));
  }
  VMM_ASSIGN(auto stream, pools.openVolume(pool, name, upload ? storage::StreamMode::write : storage::StreamMode::read));
  if (upload && stream->size() && size > stream->size())
    return invalidArgument("size: " + std::to_string(size) + " bytes do not fit in volume " + pool + "/" + name + " (" +
                           std::to_string(stream->size()) + " bytes)");
  int sv[2];
  if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0) return systemError("socketpair", errno);
  StreamStart start;
  start.fd.reset(sv[0]);
  auto ours = std::make_shared<fs::UniqueFd>(sv[1]);
  auto shared = std::shared_ptr<storage::VolumeStream>(std::move(stream));
  if (upload) {
    start.result = {{"stream", "upload"}, {"pool", pool}, {"name", name}, {"size", size}};
    workers.submit([&pools, ours, shared, pool, name, size]() mutable {
      int fd = ours->get();
      auto v = receiveVolume(pools, *shared, pool, name, size, [fd](char* buf, size_t len) { return readSome(fd, buf, len); });
      json line = v.ok() ? json{{"result", model::formatVolume(*v)}} : json{{"error", errorJson(v.error())}};
      if (!v.ok()) log::warn("volume upload failed", {{"pool", pool}, {"volume", name}, {"error", v.error().message}});
      shared.reset();  // the volume is free before the client hears the result
      (void)writeAllFd(fd, line.dump() + "\n", Deadline::after(Millis(5000)));
    });
  } else {
    size = shared->size();
    start.result = {{"stream", "download"}, {"pool", pool}, {"name", name}, {"size", size}};
    workers.submit([ours, shared, pool, name, size]() mutable {
      std::vector<char> buf(kTransferChunk);
      for (uint64_t done = 0; done < size;) {
        auto got = shared->read(done, buf.data(), static_cast<size_t>(std::min<uint64_t>(buf.size(), size - done)),
                                Deadline::after(kTransferIdle));
        if (!got.ok() || *got == 0) {
          log::warn("volume download ended early", {{"pool", pool}, {"volume", name}});
          return;  // the client sees a short stream
        }
        if (!writeAllFd(ours->get(), std::string_view(buf.data(), *got), Deadline::after(kTransferIdle)).ok()) return;
        done += *got;
      }
    });
  }
  return start;
}

}  // namespace vmm::api
