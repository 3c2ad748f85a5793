#include "storage/iscsi/iscsi_backend.h"

#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cstring>
#include <vector>

#include "base/strings.h"
#include "storage/iscsi/iscsi_volume_stream.h"

namespace vmm::storage {

namespace {

constexpr int kDefaultPort = 3260;
constexpr int kMaxLun = 16383;
constexpr size_t kWipeChunk = 4 << 20;
constexpr const char* kManagedOnTarget = "iscsi pools: LUNs are managed on the target";

std::string volumeName(int lun) { return "lun-" + std::to_string(lun); }

}  // namespace

std::string IscsiBackend::defaultInitiator() {
  char host[256] = {};
  if (::gethostname(host, sizeof host - 1) != 0 || !host[0]) std::strcpy(host, "localhost");
  std::string name;
  for (char c : toLower(host))
    name += (std::isalnum(static_cast<unsigned char>(c)) || c == '.' || c == '-') ? c : '-';
  return "iqn.2024-01.io.vmm:" + name;
}

IscsiBackend::IscsiBackend(model::Pool pool) : pool_(std::move(pool)) {
  const auto& src = pool_.source;
  options_.host = src.host;
  options_.port = src.port == 0 ? kDefaultPort : src.port;
  options_.target = src.target;
  options_.initiator = src.initiator.empty() ? defaultInitiator() : src.initiator;
  options_.username = src.username;
  options_.secret = src.secret;
}

Status IscsiBackend::checkSource() const {
  if (options_.host.empty()) return invalidArgument("pool " + pool_.name + ": source.host: an iscsi pool needs the target's portal address");
  if (options_.port < 1 || options_.port > 65535) return invalidArgument("pool " + pool_.name + ": source.port: must be 1 to 65535");
  if (!options_.secret.empty() && options_.username.empty())
    return invalidArgument("pool " + pool_.name + ": source.secret is set but source.username is empty");
  return {};
}

Result<std::unique_ptr<iscsi::Session>> IscsiBackend::connect(Deadline deadline) const {
  VMM_TRY(checkSource());
  std::string portal = iscsi::portalAddress(options_.host, options_.port);
  if (options_.target.empty()) {
    VMM_ASSIGN(auto targets, iscsi::Session::discover(options_, deadline));
    return invalidArgument("pool " + pool_.name + ": source.target is empty; the portal " + portal + " offers " +
                           (targets.empty() ? std::string("no targets") : join(targets, ", ")));
  }
  auto session = iscsi::Session::login(options_, deadline);
  if (session.ok() || session.error().code != ErrorCode::not_found) return session;
  auto targets = iscsi::Session::discover(options_, deadline);
  std::string offered = !targets.ok()     ? "(discovery failed: " + targets.error().message + ")"
                        : targets->empty() ? std::string("no targets")
                                           : join(*targets, ", ");
  return notFound("pool " + pool_.name + ": the portal " + portal + " has no target " + options_.target +
                  "; it offers " + offered);
}

Result<std::vector<IscsiBackend::Lun>> IscsiBackend::disks(iscsi::Session& session, Deadline deadline) const {
  VMM_ASSIGN(auto numbers, session.reportLuns(deadline));
  std::vector<Lun> out;
  for (int n : numbers) {
    VMM_ASSIGN(bool disk, session.isDisk(n, deadline));
    if (!disk) continue;
    VMM_ASSIGN(auto cap, session.readCapacity(n, deadline));
    if (cap.bytes() == 0) continue;
    out.push_back({n, cap});
  }
  return out;
}

Result<IscsiBackend::Lun> IscsiBackend::findLun(iscsi::Session& session, const std::string& name, Deadline deadline) const {
  auto missing = [&] { return notFound("pool " + pool_.name + " has no volume " + quote(name)); };
  if (!startsWith(name, "lun-")) return missing();
  auto n = parseUint(name.substr(4));
  if (!n || *n > kMaxLun || volumeName(static_cast<int>(*n)) != name) return missing();
  int lun = static_cast<int>(*n);
  VMM_ASSIGN(auto numbers, session.reportLuns(deadline));
  if (std::find(numbers.begin(), numbers.end(), lun) == numbers.end()) return missing();
  VMM_ASSIGN(bool disk, session.isDisk(lun, deadline));
  if (!disk) return missing();
  VMM_ASSIGN(auto cap, session.readCapacity(lun, deadline));
  if (cap.bytes() == 0) return missing();
  return Lun{lun, cap};
}

model::Volume IscsiBackend::describe(const Lun& lun) const {
  model::Volume v;
  v.name = volumeName(lun.number);
  v.pool = pool_.name;
  v.format = model::DiskFormat::raw;
  v.capacity = lun.capacity.bytes();
  v.allocation = v.capacity;
  v.probe.fileSize = v.capacity;
  v.path = "iscsi://" + iscsi::portalAddress(options_.host, options_.port) + "/" + options_.target + "/" +
           std::to_string(lun.number);
  return v;
}

Status IscsiBackend::build(Deadline) { return checkSource(); }

Status IscsiBackend::start(Deadline deadline) {
  VMM_ASSIGN(auto session, connect(deadline));
  VMM_TRY(session->reportLuns(deadline));
  return session->logout(deadline);
}

Status IscsiBackend::stop(Deadline) { return {}; }  // sessions live only for the length of a call

Result<PoolCapacity> IscsiBackend::capacity(Deadline deadline) {
  VMM_ASSIGN(auto session, connect(deadline));
  VMM_ASSIGN(auto luns, disks(*session, deadline));
  (void)session->logout(deadline);
  PoolCapacity c;
  for (const auto& l : luns) c.capacity += l.capacity.bytes();
  c.allocation = c.capacity;
  return c;
}

Result<std::vector<model::Volume>> IscsiBackend::listVolumes(Deadline deadline) {
  VMM_ASSIGN(auto session, connect(deadline));
  VMM_ASSIGN(auto luns, disks(*session, deadline));
  (void)session->logout(deadline);
  std::vector<model::Volume> out;
  for (const auto& l : luns) out.push_back(describe(l));
  return out;
}

Status IscsiBackend::destroyStorage(Deadline) { return unsupported(kManagedOnTarget); }

Result<model::Volume> IscsiBackend::createVolume(const model::VolumeSpec&, const model::Volume*, Deadline) { return unsupported(kManagedOnTarget); }

Result<model::Volume> IscsiBackend::volumeInfo(const std::string& name, Deadline deadline) {
  VMM_ASSIGN(auto session, connect(deadline));
  VMM_ASSIGN(auto lun, findLun(*session, name, deadline));
  (void)session->logout(deadline);
  return describe(lun);
}

Status IscsiBackend::deleteVolume(const std::string&, Deadline) { return unsupported(kManagedOnTarget); }

Status IscsiBackend::resizeVolume(const model::Volume&, uint64_t, bool, Deadline) { return unsupported(kManagedOnTarget); }

Result<model::Volume> IscsiBackend::cloneVolume(const model::Volume&, const std::string&, const CloneOptions&, Deadline) {
  return unsupported(kManagedOnTarget);
}

Status IscsiBackend::wipeVolume(const model::Volume& volume, const model::Volume*, Deadline deadline) {
  VMM_ASSIGN(auto session, connect(deadline));
  VMM_ASSIGN(auto lun, findLun(*session, volume.name, deadline));
  const uint32_t bs = lun.capacity.blockSize;
  const uint64_t chunkBlocks = std::max<uint64_t>(1, kWipeChunk / bs);
  std::vector<char> zeros(chunkBlocks * bs, 0);
  for (uint64_t lba = 0; lba < lun.capacity.blocks; lba += chunkBlocks) {
    auto blocks = static_cast<uint32_t>(std::min(chunkBlocks, lun.capacity.blocks - lba));
    VMM_TRY(session->write(lun.number, lba, blocks, bs, zeros.data(), deadline));
  }
  VMM_TRY(session->synchronizeCache(lun.number, deadline));
  return session->logout(deadline);
}

Result<std::unique_ptr<VolumeStream>> IscsiBackend::openVolume(const std::string& name, StreamMode mode, Deadline deadline) {
  VMM_ASSIGN(auto session, connect(deadline));
  VMM_ASSIGN(auto lun, findLun(*session, name, deadline));
  return std::unique_ptr<VolumeStream>(new iscsi::LunStream(std::move(session), lun.number, lun.capacity, mode));
}

Result<model::ResolvedDisk> IscsiBackend::resolve(const model::Volume& volume, Deadline deadline) {
  VMM_ASSIGN(auto v, volumeInfo(volume.name, deadline));
  model::ResolvedDisk r;
  r.protocol = "iscsi";
  r.format = model::DiskFormat::raw;
  // QEMU's BlockdevOptionsIscsi; the driver adds "driver" and "password-secret".
  r.blockdev = model::json{{"transport", "tcp"},
                    {"portal", iscsi::portalAddress(options_.host, options_.port)},
                    {"target", options_.target},
                    {"lun", std::stoi(v.name.substr(4))},
                    {"initiator-name", options_.initiator}};
  if (!options_.username.empty()) {
    r.blockdev["user"] = options_.username;
    r.username = options_.username;
    r.secret = options_.secret;
  }
  return r;
}

}  // namespace vmm::storage
