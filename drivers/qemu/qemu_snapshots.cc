// QEMU driver: snapshots (the contract is on HypervisorDriver::snapshotCreate in driver.h).
//
// internal: inside the qcow2 images. Running: snapshot-save/-load/-delete jobs (with memory)
//   or a blockdev-snapshot-internal-sync transaction (disk-only: snapshot-save insists on a
//   vmstate). Shut off: qemu-img snapshot -c/-a/-d. A memory snapshot of a shut-off domain is
//   reverted by starting the domain (paused is enough) and reverting again: the driver refuses
//   rather than start QEMU behind the daemon's back.
// external: a new qcow2 overlay per writable disk, next to the current top image, named
//   "<stem>.<snapshot>.qcow2" (the snapshot's point in time is the file under it). Running:
//   blockdev-snapshot-sync in one transaction; with memory the guest is stopped, the overlays
//   taken, the state migrated to a file and the guest resumed. Delete merges the overlay into
//   its backing file (block-commit / qemu-img commit); revert (shut off only) puts a fresh
//   overlay on the snapshot's backing file.
// qemu-img on a shut-off domain's images runs sandboxed by the storage layer (HostServices::
// runQemuImg): it may change the files the operation changes and read the layers under them as
// the storage layer pinned the disk's chain (DiskChains) - a file no chain holds has no layers
// for it. Overlays' backing files are read by the storage layer's header parser, never by
// qemu-img as root.
#include <algorithm>
#include <functional>
#include <map>
#include <thread>

#include "base/fault_point.h"
#include "base/log.h"
#include "base/process.h"
#include "base/json_util.h"
#include "base/random.h"
#include "base/strings.h"
#include "drivers/qemu/qemu_instance.h"

namespace vmm::drivers::qemu {

namespace {

// A writable disk as the running QEMU sees it: its top (root) node and image.
struct LiveDisk {
  std::string target, node, file, format;  // file: the image's path, also when QEMU got a descriptor
  uint64_t size = 0;                       // virtual size
};

// A writable disk of a shut-off domain, resolved by the storage layer.
struct OfflineDisk {
  std::string target, path, format;
};

std::string str(const json& j, const char* key) { return j.is_object() ? j.value(key, "") : ""; }

bool snapshotable(const model::Disk& d) { return d.device == model::DiskDevice::disk && !d.readonly; }

Result<std::vector<LiveDisk>> liveDisks(QemuDriver::Instance& inst, const model::Domain& def, Deadline deadline) {
  VMM_ASSIGN(auto blocks, inst.qmp->execute("query-block", json::object(), deadline));
  std::vector<LiveDisk> out;
  for (const auto& d : def.disks) {
    if (!snapshotable(d)) continue;
    std::string id = diskDeviceId(d);
    for (const auto& b : blocks) {
      std::string qdev = b.value("qdev", "");
      bool match = qdev == id || qdev.find("/" + id + "/") != std::string::npos || endsWith(qdev, "/" + id);
      if (!match || !b.contains("inserted")) continue;
      const auto& in = b["inserted"];
      const json* image = jsonMember(in, "image");
      uint64_t size = image && image->is_object() ? jsonUint(*image, "virtual-size").value_or(0) : 0;
      out.push_back({d.target, in.value("node-name", ""), inst.realFile(in.value("file", "")), in.value("drv", ""), size});
    }
  }
  return out;
}

// Format nodes (not protocol nodes) by image file name.
Result<std::map<std::string, std::string>> formatNodesByFile(QemuDriver::Instance& inst, Deadline deadline) {
  VMM_ASSIGN(auto nodes, inst.qmp->execute("query-named-block-nodes", {{"flat", true}}, deadline));
  std::map<std::string, std::string> out;
  for (const auto& n : nodes) {
    std::string drv = n.value("drv", "");
    if (drv == "file" || drv == "host_device" || drv == "iscsi" || drv == "nfs") continue;
    out[inst.realFile(n.value("file", ""))] = n.value("node-name", "");
  }
  return out;
}

// The files of the writable disks' chains as the storage layer pinned them, top first: all a
// sandboxed qemu-img working on a shut-off disk may see (storage/qemu_img.h).
struct DiskChains {
  std::vector<std::vector<std::string>> chains;
  std::map<std::string, std::string> topByTarget;  // each disk's own file
  std::map<std::string, Error> unresolved;         // why a writable disk has no chain here

  // `file`'s layers below it in the chain holding it; none for a file in no chain (a header
  // could name any file: qemu-img then finds no backing file and fails).
  std::vector<std::string> below(const std::string& file) const {
    for (const auto& chain : chains) {
      auto at = std::find(chain.begin(), chain.end(), file);
      if (at != chain.end()) return {at + 1, chain.end()};
    }
    return {};
  }
  void add(const ResolvedDisk& r) {
    if (!r.protocol.empty() || r.path.empty()) return;
    std::vector<std::string> files = {r.path};
    for (const auto& layer : r.backing) files.push_back(layer.path);
    chains.push_back(std::move(files));
  }
  // qemu-img changing `changed` in place, reading the layers under them.
  QemuImgAccess access(const std::vector<std::string>& changed) const {
    QemuImgAccess a;
    a.writableFiles = changed;
    for (const auto& file : changed)
      for (const auto& layer : below(file))
        if (std::count(changed.begin(), changed.end(), layer) == 0) a.readFiles.push_back(layer);
    return a;
  }
  // `file` and every layer under it.
  std::vector<std::string> from(const std::string& file) const {
    std::vector<std::string> out = {file};
    auto rest = below(file);
    out.insert(out.end(), rest.begin(), rest.end());
    return out;
  }
};

DiskChains pinnedChains(const model::Domain& def, const std::function<Result<ResolvedDisk>(const model::Disk&)>& resolve) {
  DiskChains out;
  for (const auto& d : def.disks) {
    if (d.device != model::DiskDevice::disk || d.readonly) continue;
    auto r = resolve(d);
    if (!r.ok()) {
      out.unresolved.emplace(d.target, r.error());
      continue;
    }
    out.add(*r);
    if (r->protocol.empty() && !r->path.empty()) out.topByTarget[d.target] = r->path;
  }
  return out;
}

std::string imageStem(const std::string& path) {
  std::string base = fs::baseName(path);
  for (const char* ext : {".qcow2", ".qcow", ".img", ".raw"})
    if (endsWith(base, ext) && base.size() > std::string_view(ext).size()) return base.substr(0, base.size() - std::string_view(ext).size());
  return base;
}

// Where overlays of `top` go: next to it, except for block devices (no files in /dev).
std::string overlayDir(const std::string& top, const std::string& stateDir) {
  return startsWith(top, "/dev/") ? stateDir : fs::dirName(top);
}

// "unsupported": the daemon then takes an external snapshot instead (see domain_snapshots.cc).
Error rawDiskError(const std::string& target, const std::string& format) {
  return unsupported("disk " + target + " is " + (format.empty() ? "not qcow2" : format) +
                     ": it cannot hold an internal snapshot; use an external snapshot");
}

Status setRunning(QemuDriver::Instance& inst, bool run, Deadline deadline) {
  {
    MutexLock lock(inst.mu);
    inst.pauseChangesRequested++;
  }
  auto r = inst.qmp->execute(run ? "cont" : "stop", json::object(), deadline);
  if (r.ok()) return {};
  MutexLock lock(inst.mu);
  inst.pauseChangesRequested--;
  return r.error();
}

Result<bool> guestRunning(QemuDriver::Instance& inst, Deadline deadline) {
  VMM_ASSIGN(auto st, inst.qmp->execute("query-status", json::object(), deadline));
  return st.value("running", false);
}

// Freezes the guest's filesystems for the lifetime of the object when the agent answers.
class Quiesce {
 public:
  Quiesce(QemuDriver::Instance& inst, const model::Domain& def, bool wanted, Deadline deadline) : inst_(inst) {
    if (!wanted || !def.guestAgent || !inst.agent) return;
    Deadline d = deadline.earlier(Deadline::after(Millis(5000)));
    if (!inst.agent->call("guest-ping", json::object(), deadline.earlier(Deadline::after(Millis(1000)))).ok()) {
      log::info("guest agent not answering: snapshot without freezing filesystems", {{"domain", def.name}});
      return;
    }
    auto r = inst.agent->call("guest-fsfreeze-freeze", json::object(), d);
    if (r.ok()) frozen_ = true;
    else log::warn("guest-fsfreeze-freeze failed; snapshot not quiesced", {{"domain", def.name}, {"error", r.error().message}});
  }
  ~Quiesce() {
    if (!frozen_) return;
    auto r = inst_.agent->call("guest-fsfreeze-thaw", json::object(), Deadline::after(Millis(10000)));
    if (!r.ok()) log::error("guest-fsfreeze-thaw failed", {{"domain", inst_.name}, {"error", r.error().message}});
  }
  Quiesce(const Quiesce&) = delete;
  Quiesce& operator=(const Quiesce&) = delete;

 private:
  QemuDriver::Instance& inst_;
  bool frozen_ = false;
};

std::string jobId(const std::string& what) { return "vmm-" + what + "-" + randomHex(4); }

// Merges `overlay` (a node of the running chain of disk `device`) into `base`: an active commit
// when it is the top, otherwise an intermediate one (QEMU rewrites the child's backing file).
// QEMU reopens the base, and the child whose header it rewrites, read-write: files it holds
// as read-only descriptors get a writable one in the same fd set first.
Status commitLive(QemuDriver::Instance& inst, const std::string& deviceNode, const std::string& overlayNode,
                  const std::string& baseNode, const std::string& baseFile, const std::string& childFile, Deadline deadline) {
  for (const auto& file : {baseFile, childFile})
    if (int set = file.empty() ? -1 : inst.fdsetOf(file); set >= 0) VMM_TRY(passImage(inst, file, true, deadline, set));
  bool active = overlayNode == deviceNode;
  json args = {{"device", deviceNode}, {"base-node", baseNode}, {"auto-dismiss", false}};
  if (!active) {
    args["top-node"] = overlayNode;
    args["backing-file"] = baseFile;  // the path, not the "/dev/fdset/N" QEMU knows it by
  }
  std::string id = jobId("commit");
  args["job-id"] = id;
  return inst.qmp->runJob("block-commit", args, id, deadline, active);
}

// Files in `dir` other than `except` whose backing file is one of `parents`: branches that a
// merge would break.
Result<std::string> otherChild(const std::string& dir, const std::vector<std::string>& parents,
                               const std::vector<std::string>& except,
                               const std::function<std::pair<std::string, std::string>(const std::string&)>& recordedBacking) {
  auto names = fs::listDir(dir);
  if (!names.ok()) return std::string();
  for (const auto& n : *names) {
    std::string path = dir + "/" + n;
    if (!endsWith(n, ".qcow2") || std::count(except.begin(), except.end(), path)) continue;
    std::string backing = recordedBacking(path).first;
    if (!backing.empty() && std::count(parents.begin(), parents.end(), backing)) return path;
  }
  return std::string();
}

}  // namespace

Status settleSnapshotJobs(QemuDriver::Instance& inst, Deadline deadline) {
  Millis pause(10);
  while (true) {
    VMM_ASSIGN(auto jobs, inst.qmp->execute("query-jobs", json::object(), deadline));
    bool running = false;
    for (const auto& j : jobs) {
      std::string id = j.value("id", ""), status = j.value("status", "");
      if (!startsWith(id, "vmm-save-") && !startsWith(id, "vmm-load-") && !startsWith(id, "vmm-delete-")) continue;
      if (status == "concluded") {
        log::info("a snapshot job of an earlier vmmd ended", {{"domain", inst.name}, {"job", id}, {"error", j.value("error", "")}});
        (void)inst.qmp->execute("job-dismiss", {{"id", id}}, Deadline::after(Millis(5000)));
      } else {
        running = true;
      }
    }
    if (!running) return {};
    if (deadline.expired()) return timeoutError("a snapshot job of an earlier vmmd is still running in QEMU");
    std::this_thread::sleep_for(std::min(pause, deadline.remaining()));
    pause = std::min(pause * 2, Millis(250));
  }
}

// ---------------------------------------------------------------- create

Result<SnapshotResult> QemuDriver::snapshotCreate(const model::Domain& def, const SnapshotRequest& request,
                                                  Deadline deadline) {
  VMM_ASSIGN(json data, createSnapshotData(def, request, deadline));
  SnapshotResult out;
  out.disks = snapshotDisksOf(data);
  out.moves = diskMovesOf(data);
  out.driverData = std::move(data);
  return out;
}

Result<json> QemuDriver::createSnapshotData(const model::Domain& def, const SnapshotRequest& request, Deadline deadline) {
  const std::string& name = request.name;
  const std::string kind(model::enumName(model::kSnapshotKinds, request.kind));
  bool memory = request.memory;
  bool quiesce = request.quiesce;
  const std::string& ownDir = request.stateDir;
  std::string overlayFallback = ownDir.empty() ? stateDir(def.name) : ownDir;  // for disks under /dev
  if (name.empty()) return invalidArgument("snapshot: a name is required");
  if (kind != "internal" && kind != "external") return invalidArgument("snapshot kind must be internal or external");
  // Each writable disk resolved once: for the window check, the shut-off images and the chains
  // qemu-img may see.
  std::vector<std::pair<const model::Disk*, Result<ResolvedDisk>>> resolved;
  DiskChains chains;
  for (const auto& d : def.disks) {
    if (!snapshotable(d)) continue;
    auto r = resolveDisk(d);
    // An overlay could only name the whole device under the window as its backing file.
    if (r.ok() && r->size)
      return unsupported("disk " + d.target + " is a window of a device (a logical volume read without device-mapper): it cannot be snapshotted");
    if (r.ok()) chains.add(*r);
    resolved.emplace_back(&d, std::move(r));
  }
  auto inst = find(def.name);
  bool live = inst && !inst->hasExited();
  json disks = json::array();
  json out = json::object();

  if (!live) {
    // ---- shut off: qemu-img on the images (no memory to keep)
    out["state"] = "shutoff";
    std::vector<OfflineDisk> images;
    for (const auto& [d, resolution] : resolved) {
      if (!resolution.ok()) return resolution.error();
      const ResolvedDisk& r = *resolution;
      images.push_back({d->target, r.path, std::string(model::enumName(model::kDiskFormats, d->format.value_or(r.format)))});
      if (!r.protocol.empty())
        return invalidArgument("disk " + d->target + " is a " + r.protocol + " volume: vmm snapshots need a local image");
      if (kind == "internal" && images.back().format != "qcow2") return rawDiskError(d->target, images.back().format);
    }
    if (images.empty()) return invalidArgument("domain " + def.name + " has no writable disk to snapshot");
    std::vector<std::string> done;  // undone on failure
    Status failed;
    json sources = json::object();
    for (const auto& img : images) {
      if (kind == "internal") {
        // A snapshot of this name is a leftover of a vmmd that died before recording it.
        (void)qemuImg({"snapshot", "-d", name, img.path}, chains.access({img.path}), deadline);
        failed = qemuImg({"snapshot", "-c", name, img.path}, chains.access({img.path}), deadline);
        if (!failed.ok()) break;
        done.push_back(img.path);
        disks.push_back({{"target", img.target}, {"file", img.path}, {"format", "qcow2"}});
      } else {
        std::string overlay = overlayDir(img.path, overlayFallback) + "/" + imageStem(img.path) + "." + name + ".qcow2";
        if (fs::exists(overlay)) {
          failed = conflict("disk " + img.target + ": " + overlay + " already exists");
          break;
        }
        QemuImgAccess access;
        access.writableDirs = {fs::dirName(overlay)};
        access.readFiles = chains.from(img.path);
        failed = qemuImg({"create", "-q", "-f", "qcow2", "-b", img.path, "-F", img.format, overlay}, access, deadline);
        if (!failed.ok()) {
          (void)fs::removeFile(overlay);
          break;
        }
        done.push_back(overlay);
        disks.push_back({{"target", img.target}, {"file", overlay}, {"backing", img.path}, {"backing_format", img.format}, {"format", "qcow2"}});
        sources[img.target] = overlay;
      }
    }
    if (!failed.ok()) {
      for (const auto& path : done) {
        if (kind == "internal") (void)qemuImg({"snapshot", "-d", name, path}, chains.access({path}), Deadline::after(Millis(10000)));
        else (void)fs::removeFile(path);
      }
      return failed.error();
    }
    out["disks"] = disks;
    if (kind == "external") out["disk_sources"] = sources;
    return out;
  }

  // ---- running
  VMM_ASSIGN(auto images, liveDisks(*inst, def, deadline));
  if (images.empty()) return invalidArgument("domain " + def.name + " has no writable disk to snapshot");
  VMM_ASSIGN(bool running, guestRunning(*inst, deadline));
  out["state"] = running ? "running" : "paused";

  if (kind == "internal") {
    std::vector<std::string> nodes;
    for (const auto& img : images) {
      if (img.format != "qcow2") return rawDiskError(img.target, img.format);
      nodes.push_back(img.node);
      disks.push_back({{"target", img.target}, {"file", img.file}, {"format", "qcow2"}});
    }
    if (memory) {
      // The job stops and restarts the guest itself (STOP, RESUME: both expected), so a vmmd
      // that dies meanwhile does not leave the guest paused.
      auto expectPauseEvents = [&](int n) {
        MutexLock lock(inst->mu);
        inst->pauseChangesRequested += n;
      };
      auto save = [&]() -> Status {
        if (running) expectPauseEvents(2);
        std::string id = jobId("save");
        VMM_TRY(inst->qmp->startJob("snapshot-save", {{"job-id", id}, {"tag", name}, {"vmstate", images[0].node}, {"devices", nodes}}, deadline));
        faultPoint("snapshot.after-job-start");
        return inst->qmp->waitJob("snapshot-save", id, deadline);
      };
      Status saved = save();
      if (!saved.ok() && saved.error().message.find("already exists") != std::string::npos) {
        // The job refused before stopping the guest.
        if (running) expectPauseEvents(-2);
        // Left by a vmmd that died before recording it: the daemon knows no snapshot of this name.
        std::string id = jobId("delete");
        if (inst->qmp->runJob("snapshot-delete", {{"job-id", id}, {"tag", name}, {"devices", nodes}}, id, deadline).ok()) saved = save();
      }
      if (running) {
        auto again = guestRunning(*inst, Deadline::after(Millis(5000)));
        if (again.ok() && !*again) {
          expectPauseEvents(-1);  // the job never restarted it: no RESUME will come from it
          (void)setRunning(*inst, true, Deadline::after(Millis(10000)));
        }
      }
      VMM_TRY(saved);
      out["vmstate"] = images[0].target;
    } else {
      Quiesce frozen(*inst, def, quiesce, deadline);
      json actions = json::array();
      for (const auto& n : nodes) actions.push_back({{"type", "blockdev-snapshot-internal-sync"}, {"data", {{"device", n}, {"name", name}}}});
      auto taken = inst->qmp->execute("transaction", {{"actions", actions}}, deadline);
      if (!taken.ok() && taken.error().message.find("already exists") != std::string::npos) {
        std::string id = jobId("delete");  // a leftover, as above
        if (inst->qmp->runJob("snapshot-delete", {{"job-id", id}, {"tag", name}, {"devices", nodes}}, id, deadline).ok())
          taken = inst->qmp->execute("transaction", {{"actions", actions}}, deadline);
      }
      if (!taken.ok()) return taken.error();
    }
    out["disks"] = disks;
    return out;
  }

  // external
  json actions = json::array();
  json sources = json::object();
  std::vector<std::string> created;
  std::vector<int> createdSets;
  auto removeCreated = [&] {
    for (int set : createdSets) removeFdset(*inst, set);
    for (const auto& f : created) (void)fs::removeFile(f);
  };
  for (const auto& img : images) {
    // Each refusal undoes the overlays of the disks before it.
    Error refused{ErrorCode::internal, ""};
    std::string overlay = overlayDir(img.file, overlayFallback) + "/" + imageStem(img.file) + "." + name + ".qcow2";
    if (!startsWith(img.file, "/"))
      refused = invalidArgument("disk " + img.target + " is a network volume: an external snapshot needs a local image to put an overlay next to");
    else if (fs::exists(overlay))
      refused = conflict("disk " + img.target + ": " + overlay + " already exists");
    else if (img.size == 0)
      refused = internalError("disk " + img.target + ": QEMU did not say the size of " + img.file);
    if (!refused.message.empty()) {
      removeCreated();
      return refused;
    }
    // vmmd makes the overlay (QEMU may not create files) naming its backing by path and format,
    // without opening it (-u: QEMU holds it), and hands it over as a descriptor.
    QemuImgAccess access;
    access.writableDirs = {fs::dirName(overlay)};
    Status made = qemuImg({"create", "-q", "-f", "qcow2", "-u", "-b", img.file, "-F", img.format, overlay, std::to_string(img.size)}, access, deadline);
    if (made.ok()) created.push_back(overlay);
    auto set = made.ok() ? passImage(*inst, overlay, true, deadline) : Result<int>(made.error());
    if (!set.ok()) {
      removeCreated();
      return set.error().wrap("disk " + img.target);
    }
    createdSets.push_back(*set);
    actions.push_back({{"type", "blockdev-snapshot-sync"},
                       {"data", {{"node-name", img.node}, {"snapshot-file", kFdsetPrefix + std::to_string(*set)},
                                 {"snapshot-node-name", "ov-" + randomHex(4) + "-" + img.target}, {"format", "qcow2"}, {"mode", "existing"}}}});
    disks.push_back({{"target", img.target}, {"file", overlay}, {"backing", img.file}, {"backing_format", img.format}, {"format", "qcow2"}});
    sources[img.target] = overlay;
  }
  if (memory && !ownDir.empty()) VMM_TRY(fs::makeDirs(ownDir, 0700));
  if (memory && ownDir.empty()) return invalidArgument("snapshot: state_dir is needed for an external snapshot with memory");
  {
    Quiesce frozen(*inst, def, quiesce && !memory, deadline);
    // With memory the guest stays stopped from the overlays to the end of the state's save.
    if (memory && running) VMM_TRY(setRunning(*inst, false, deadline));
    auto taken = inst->qmp->execute("transaction", {{"actions", actions}}, deadline);
    if (!taken.ok()) {
      removeCreated();
      if (memory && running) (void)setRunning(*inst, true, Deadline::after(Millis(10000)));
      return taken.error();
    }
  }
  faultPoint("snapshot.after-overlays");
  out["disks"] = disks;
  out["disk_sources"] = sources;
  if (!memory) return out;

  std::string memFile = ownDir + "/memory.state";
  auto saved = migrateToFile(*inst, memFile, deadline);
  // A finished migration leaves the disks inactive: only `cont` takes them back, so a paused
  // guest runs for an instant before it is stopped again. The "completed" event comes before
  // QEMU is done with the migration: until then `cont` is refused ("Migration is not
  // finalized yet") and the guest would stay stopped.
  Deadline resumeBy = Deadline::after(Millis(10000));
  Status resumed = setRunning(*inst, true, resumeBy);
  while (!resumed.ok() && resumed.error().message.find("not finalized") != std::string::npos && !resumeBy.expired()) {
    std::this_thread::sleep_for(Millis(20));
    resumed = setRunning(*inst, true, resumeBy);
  }
  if (resumed.ok() && !running) resumed = setRunning(*inst, false, Deadline::after(Millis(10000)));
  if (!resumed.ok()) log::error("cannot restore the guest's run state after a snapshot", {{"domain", def.name}, {"error", resumed.error().message}});
  if (!saved.ok()) {
    (void)fs::removeFile(memFile);
    // Undo the overlays: merge each (still nearly empty) back into the image under it.
    auto nodes = formatNodesByFile(*inst, Deadline::after(Millis(10000)));
    auto current = liveDisks(*inst, def, Deadline::after(Millis(10000)));
    if (nodes.ok() && current.ok()) {
      for (const auto& cur : *current) {
        if (!sources.contains(cur.target) || cur.file != sources[cur.target].get<std::string>()) continue;
        for (const auto& d : disks)
          if (d["target"] == cur.target && nodes->count(d["backing"].get<std::string>()))
            (void)commitLive(*inst, cur.node, cur.node, nodes->at(d["backing"].get<std::string>()), d["backing"].get<std::string>(), "",
                             Deadline::after(Millis(30000)));
      }
    }
    auto after = liveDisks(*inst, def, Deadline::after(Millis(10000)));
    bool undone = after.ok();
    if (after.ok())
      for (const auto& cur : *after)
        if (std::count(created.begin(), created.end(), cur.file)) undone = false;
    if (undone) removeCreated();
    else log::error("an external snapshot failed and its overlays could not be merged back", {{"domain", def.name}});
    return saved.error();
  }
  out["memory_file"] = memFile;
  return out;
}

// ---------------------------------------------------------------- revert

Result<SnapshotRevertResult> QemuDriver::snapshotRevert(const model::Domain& def, const model::Snapshot& snapshot,
                                                        Deadline deadline) {
  VMM_ASSIGN(json answer, revertSnapshotData(def, snapshot, deadline));
  SnapshotRevertResult out;
  out.state = model::enumFromName(model::kDomainStates, answer.value("state", ""));
  out.moves = diskMovesOf(answer);
  if (auto it = answer.find("restore_from"); it != answer.end() && it->is_string()) out.restoreFrom = it->get<std::string>();
  return out;
}

Result<json> QemuDriver::revertSnapshotData(const model::Domain& def, const model::Snapshot& snapshot, Deadline deadline) {
  const std::string& name = snapshot.name;
  const std::string kind(model::enumName(model::kSnapshotKinds, snapshot.kind));
  bool memory = snapshot.memory;
  const json& data = snapshot.driverData;
  std::string takenState = data.value("state", snapshot.domainState.empty() ? std::string("shutoff") : snapshot.domainState);
  json disks = data.value("disks", json::array());
  if (disks.empty()) return invalidArgument("snapshot " + name + " records no disks");
  auto inst = find(def.name);
  bool live = inst && !inst->hasExited();

  if (kind == "internal") {
    if (live) {
      if (!memory)
        return conflict("snapshot " + name + " holds no memory state: shut the domain off before reverting to it");
      VMM_ASSIGN(auto images, liveDisks(*inst, def, deadline));
      std::vector<std::string> nodes;
      std::string vmstateNode;
      for (const auto& d : disks) {
        std::string target = str(d, "target");
        auto it = std::find_if(images.begin(), images.end(), [&](const LiveDisk& l) { return l.target == target; });
        if (it == images.end()) return conflict("disk " + target + " of snapshot " + name + " is no longer attached");
        if (it->file != str(d, "file"))
          return conflict("disk " + target + " now uses " + it->file + " (not " + str(d, "file") + ", which holds snapshot " + name + ")");
        nodes.push_back(it->node);
        if (target == data.value("vmstate", "")) vmstateNode = it->node;
      }
      if (vmstateNode.empty()) return invalidArgument("snapshot " + name + " does not say which disk holds its memory state");
      VMM_ASSIGN(bool running, guestRunning(*inst, deadline));
      bool wantRunning = takenState == "running";
      // Running before and after: the job stops and restarts the guest itself (STOP, RESUME),
      // so a vmmd that dies meanwhile does not leave it paused.
      bool jobRestarts = running && wantRunning;
      if (running && !wantRunning) VMM_TRY(setRunning(*inst, false, deadline));
      if (jobRestarts) {
        MutexLock lock(inst->mu);
        inst->pauseChangesRequested += 2;
      }
      std::string id = jobId("load");
      Status loaded = inst->qmp->runJob("snapshot-load", {{"job-id", id}, {"tag", name}, {"vmstate", vmstateNode}, {"devices", nodes}}, id, deadline);
      auto nowRunning = guestRunning(*inst, Deadline::after(Millis(5000)));
      if (!loaded.ok()) {
        // A failed load leaves the guest stopped (restore-vm): give back what it was doing.
        if (running && nowRunning.ok() && !*nowRunning) {
          if (jobRestarts) {
            MutexLock lock(inst->mu);
            inst->pauseChangesRequested--;  // the RESUME the job did not send
          }
          (void)setRunning(*inst, true, Deadline::after(Millis(10000)));
        }
        return loaded.error();
      }
      if (wantRunning && nowRunning.ok() && !*nowRunning) VMM_TRY(setRunning(*inst, true, deadline));
      return json{{"state", wantRunning ? "running" : "paused"}};
    }
    if (memory)
      return conflict("snapshot " + name + " holds the guest's memory: start the domain (paused is enough), then revert to it");
    DiskChains chains;
    for (const auto& d : disks) {
      std::string target = str(d, "target");
      auto disk = std::find_if(def.disks.begin(), def.disks.end(), [&](const model::Disk& x) { return x.target == target; });
      if (disk == def.disks.end()) return conflict("disk " + target + " of snapshot " + name + " is no longer attached");
      VMM_ASSIGN(auto r, resolveDisk(*disk));
      if (r.path != str(d, "file"))
        return conflict("disk " + target + " now uses " + r.path + " (not " + str(d, "file") + ", which holds snapshot " + name + ")");
      chains.add(r);
    }
    for (const auto& d : disks) VMM_TRY(qemuImg({"snapshot", "-a", name, str(d, "file")}, chains.access({str(d, "file")}), deadline));
    return json{{"state", "shutoff"}};
  }

  // external: a fresh overlay on each snapshot's backing file (the state when it was taken)
  if (live) return conflict("shut the domain off before reverting to external snapshot " + name);
  json sources = json::object();
  auto chains = pinnedChains(def, [this](const model::Disk& d) { return resolveDisk(d); });
  for (const auto& d : disks) {
    std::string target = str(d, "target"), overlay = str(d, "file"), backing = str(d, "backing");
    std::string bfmt = d.value("backing_format", "qcow2");
    if (!fs::exists(backing)) return conflict("snapshot " + name + ": " + backing + " (disk " + target + ") no longer exists");
    auto disk = std::find_if(def.disks.begin(), def.disks.end(), [&](const model::Disk& x) { return x.target == target; });
    std::string current;
    if (disk != def.disks.end()) {
      auto r = resolveDisk(*disk);
      if (r.ok()) current = r->path;
    }
    std::string fresh = overlay;
    if (current != overlay) {  // the overlay carries later snapshots: branch next to it
      for (int n = 2; fs::exists(fresh); ++n)
        fresh = overlayDir(backing, fs::dirName(overlay)) + "/" + imageStem(backing) + "." + name + "-" + std::to_string(n) + ".qcow2";
    } else {
      VMM_TRY(fs::removeFile(overlay));
    }
    QemuImgAccess access;
    access.writableDirs = {fs::dirName(fresh)};
    access.readFiles = chains.from(backing);
    VMM_TRY(qemuImg({"create", "-q", "-f", "qcow2", "-b", backing, "-F", bfmt, fresh}, access, deadline));
    sources[target] = fresh;
  }
  json out = {{"disk_sources", sources}, {"state", memory ? takenState : "shutoff"}};
  // The daemon starts the domain from this file with the new disks (StartOptions::restoreFrom).
  if (memory) out["restore_from"] = data.value("memory_file", "");
  return out;
}

// ---------------------------------------------------------------- delete

// An external snapshot a vmmd killed before recording it left: overlays "<stem>.<name>.qcow2" on
// the disks, in use by QEMU (holding the guest's writes since) or not, with the definition
// moved to them or not. Each is merged into the image under it and removed - the disks are
// what they were before, nothing the guest wrote is lost - and the saved memory is dropped.
Result<json> QemuDriver::removeExternalOrphan(const model::Domain& def, const std::string& name, const json& data,
                                              Deadline deadline) {
  std::string suffix = "." + name + ".qcow2";
  std::string ownDir = data.value("state_dir", "");
  std::string fallback = ownDir.empty() ? stateDir(def.name) : ownDir;
  auto backingOf = [&](const std::string& file) -> std::pair<std::string, std::string> {
    auto [backing, fmt] = recordedBacking(file);
    // vmm's overlays always record their backing's format: a file without one is not ours, and
    // its backing is never opened in a format guessed for it.
    if (fmt != "raw" && fmt != "qcow2") return {"", ""};
    return {backing, fmt};
  };
  // The overlay this snapshot put on a disk whose definition says `defPath`, if `file` is it.
  auto ours = [&](const std::string& file, const std::string& defPath, const std::string& backing) {
    if (!endsWith(file, suffix) || backing.empty()) return false;
    return file == defPath || (backing == defPath && file == overlayDir(defPath, fallback) + "/" + imageStem(defPath) + suffix);
  };
  json sources = json::object(), formats = json::object();
  auto inst = find(def.name);
  if (inst && !inst->hasExited()) {
    // With memory the guest was stopped while its state was saved: resume it (which also
    // takes back the disks a finished migration leaves inactive).
    if (data.value("was_running", false)) {
      auto r = guestRunning(*inst, deadline);
      if (r.ok() && !*r) VMM_TRY(setRunning(*inst, true, deadline));
    }
    VMM_ASSIGN(auto images, liveDisks(*inst, def, deadline));
    for (const auto& cur : images) {
      auto disk = std::find_if(def.disks.begin(), def.disks.end(), [&](const model::Disk& x) { return x.target == cur.target; });
      if (disk == def.disks.end()) continue;
      VMM_ASSIGN(auto r, resolveDisk(*disk));
      auto [backing, bfmt] = backingOf(cur.file);
      if (!ours(cur.file, r.path, backing)) continue;
      VMM_ASSIGN(auto nodes, formatNodesByFile(*inst, deadline));
      if (!nodes.count(backing)) return conflict("snapshot " + name + ": " + backing + " is not in the running chain of disk " + cur.target);
      VMM_TRY(commitLive(*inst, cur.node, cur.node, nodes.at(backing), backing, "", deadline));
      VMM_TRY(fs::removeFile(cur.file));
      if (cur.file == r.path) {
        sources[cur.target] = backing;
        formats[cur.target] = bfmt;
      }
    }
  } else {
    for (const auto& d : def.disks) {
      if (!snapshotable(d)) continue;
      auto r = resolveDisk(d);
      if (!r.ok() || !r->protocol.empty()) continue;
      DiskChains chains;
      chains.add(*r);
      bool moved = endsWith(r->path, suffix);
      std::string overlay = moved ? r->path : overlayDir(r->path, fallback) + "/" + imageStem(r->path) + suffix;
      if (!fs::exists(overlay)) continue;
      auto [backing, bfmt] = backingOf(overlay);
      if (!ours(overlay, r->path, backing)) continue;
      // A guest may have written to it before its QEMU ended while vmmd was down. An overlay
      // the definition does not name yet sits on the disk's top.
      auto layers = moved ? chains.from(overlay) : chains.from(backing);
      if (!moved) layers.insert(layers.begin(), overlay);
      QemuImgAccess access;
      access.writableFiles = {layers.begin(), layers.begin() + std::min<size_t>(2, layers.size())};
      access.readFiles = {layers.begin() + std::min<size_t>(2, layers.size()), layers.end()};
      VMM_TRY(qemuImg({"commit", "-q", "-f", "qcow2", overlay}, access, deadline));
      VMM_TRY(fs::removeFile(overlay));
      if (moved) {
        sources[d.target] = backing;
        formats[d.target] = bfmt;
      }
    }
  }
  if (!ownDir.empty()) (void)fs::removeTree(ownDir);
  json out = json::object();
  if (!sources.empty()) {
    out["disk_sources"] = sources;
    out["disk_formats"] = formats;
  }
  return out;
}

Result<SnapshotDeleteResult> QemuDriver::snapshotDelete(const model::Domain& def, const model::Snapshot& snapshot,
                                                        Deadline deadline) {
  VMM_ASSIGN(json answer, deleteSnapshotData(def, snapshot, deadline));
  return SnapshotDeleteResult{diskMovesOf(answer)};
}

Result<json> QemuDriver::deleteSnapshotData(const model::Domain& def, const model::Snapshot& snapshot, Deadline deadline) {
  const std::string& name = snapshot.name;
  const std::string kind(model::enumName(model::kSnapshotKinds, snapshot.kind));
  const json& data = snapshot.driverData;
  json disks = data.value("disks", json::array());
  auto inst = find(def.name);
  bool live = inst && !inst->hasExited();
  if (kind == "external" && data.value("orphan", false)) return removeExternalOrphan(def, name, data, deadline);
  if (kind == "internal" && data.value("orphan", false)) {
    // Taken by a vmmd that was killed before recording it: the tag may be in any writable
    // qcow2 image (QEMU and qemu-img skip the images that lack it).
    if (name.empty()) return invalidArgument("snapshot: a name is required");
    disks = json::array();
    if (live) {
      VMM_TRY(settleSnapshotJobs(*inst, deadline));
      VMM_ASSIGN(auto images, liveDisks(*inst, def, deadline));
      for (const auto& img : images)
        if (img.format == "qcow2") disks.push_back({{"target", img.target}, {"file", img.file}});
    } else {
      for (const auto& d : def.disks) {
        if (!snapshotable(d)) continue;
        auto r = resolveDisk(d);
        if (!r.ok() || !r->protocol.empty() || d.format.value_or(r->format) != model::DiskFormat::qcow2) continue;
        disks.push_back({{"target", d.target}, {"file", r->path}});
      }
    }
  }

  auto chains = pinnedChains(def, [this](const model::Disk& d) { return resolveDisk(d); });
  if (kind == "internal") {
    if (live) {
      VMM_ASSIGN(auto nodes, formatNodesByFile(*inst, deadline));
      std::vector<std::string> devices;
      std::vector<std::string> offline;  // images the running guest does not use
      for (const auto& d : disks) {
        auto it = nodes.find(str(d, "file"));
        if (it != nodes.end()) devices.push_back(it->second);
        else offline.push_back(str(d, "file"));
      }
      if (!devices.empty()) {
        std::string id = jobId("delete");
        VMM_TRY(inst->qmp->runJob("snapshot-delete", {{"job-id", id}, {"tag", name}, {"devices", devices}}, id, deadline));
      }
      for (const auto& f : offline)
        if (fs::exists(f)) VMM_TRY(qemuImg({"snapshot", "-d", name, f}, chains.access({f}), deadline));
      return json::object();
    }
    for (const auto& d : disks) {
      std::string file = str(d, "file");
      if (!fs::exists(file)) continue;
      Status removed = qemuImg({"snapshot", "-d", name, file}, chains.access({file}), deadline);
      // Already gone (an earlier delete interrupted after this image) is fine.
      if (!removed.ok() && removed.error().message.find("not found") == std::string::npos) return removed.error();
    }
    return json::object();
  }

  // external: merge each overlay into the file under it
  json sources = json::object();
  json formats = json::object();
  for (const auto& d : disks) {
    std::string target = str(d, "target"), overlay = str(d, "file"), backing = str(d, "backing");
    std::string bfmt = d.value("backing_format", "qcow2");
    if (!fs::exists(overlay)) continue;  // merged by an earlier, interrupted delete
    std::string child;  // the image on top of the overlay, if it is not the top
    if (live) {
      VMM_ASSIGN(auto images, liveDisks(*inst, def, deadline));
      auto it = std::find_if(images.begin(), images.end(), [&](const LiveDisk& l) { return l.target == target; });
      VMM_ASSIGN(auto nodes, formatNodesByFile(*inst, deadline));
      if (it == images.end() || !nodes.count(overlay) || !nodes.count(backing))
        return conflict("snapshot " + name + ": " + overlay + " is not in the running chain of disk " + target + "; it cannot be merged");
      if (it->file != overlay) {
        auto chain = chains.from(it->file);
        for (size_t i = 0; i + 1 < chain.size(); ++i)
          if (chain[i + 1] == overlay) child = chain[i];
      }
      VMM_ASSIGN(auto other, otherChild(fs::dirName(overlay), {overlay, backing}, {overlay, child, it->file},
                                                [this](const std::string& f) { return recordedBacking(f); }));
      if (!other.empty()) return conflict("snapshot " + name + ": " + other + " also depends on " + overlay + " or " + backing + " (a branch left by a revert); merging would break it");
      VMM_TRY(commitLive(*inst, it->node, nodes.at(overlay), nodes.at(backing), backing, child, deadline));
      if (it->file == overlay) {
        sources[target] = backing;
        formats[target] = bfmt;
      }
    } else {
      auto top = chains.topByTarget.find(target);
      if (auto why = chains.unresolved.find(target); why != chains.unresolved.end()) return why->second;
      if (top == chains.topByTarget.end()) return conflict("disk " + target + " of snapshot " + name + " is no longer attached");
      auto chain = chains.from(top->second);
      bool inChain = false;
      for (size_t i = 0; i < chain.size(); ++i) {
        if (chain[i] != overlay) continue;
        inChain = true;
        if (i > 0) child = chain[i - 1];
      }
      if (!inChain) return conflict("snapshot " + name + ": " + overlay + " is not in the backing chain of disk " + target + "; it cannot be merged");
      VMM_ASSIGN(auto other, otherChild(fs::dirName(overlay), {overlay, backing}, {overlay, child, top->second},
                                                [this](const std::string& f) { return recordedBacking(f); }));
      if (!other.empty()) return conflict("snapshot " + name + ": " + other + " also depends on " + overlay + " or " + backing + " (a branch left by a revert); merging would break it");
      // commit writes the overlay's data into its backing file and empties the overlay.
      VMM_TRY(qemuImg({"commit", "-q", "-f", "qcow2", overlay}, chains.access({overlay, backing}), deadline));
      if (!child.empty()) VMM_TRY(qemuImg({"rebase", "-u", "-f", "qcow2", "-b", backing, "-F", bfmt, child}, chains.access({child}), deadline));
      else {
        sources[target] = backing;
        formats[target] = bfmt;
      }
    }
    VMM_TRY(fs::removeFile(overlay));
  }
  json out = json::object();
  if (!sources.empty()) {
    out["disk_sources"] = sources;
    out["disk_formats"] = formats;
  }
  return out;
}

}  // namespace vmm::drivers::qemu
