// Projects: the namespaces that domains, volumes, images, snapshots, operations and events
// belong to, with restrictions and quotas.
//
// Inside vmmd an object of a project other than "default" carries a qualified name: the
// user's name behind "_<project>_" ("_ci_web"). User names start with a letter or digit, so
// no user name can be mistaken for a qualified one, and the qualified name keeps to the
// characters and the length of a plain name: it is safe as a file name, an LVM volume name,
// a QEMU -name and a container name, wherever a plain name is. Objects of "default" keep their
// plain names, so state from before projects is the default project's as it stands.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "base/result.h"
#include "model/domain.h"
#include "model/json_reader.h"

namespace vmm::model {

inline constexpr std::string_view kDefaultProject = "default";
// Project names: 1-16 of [a-z0-9-], starting with a letter or digit.
constexpr size_t kMaxProjectNameLength = 16;
Status validateProjectName(std::string_view name);

// The name vmmd uses for `name` of `project` (the name itself in the default project).
std::string qualifyName(std::string_view project, std::string_view name);
// The project a name vmmd uses belongs to, and the name its user knows.
std::string_view projectOf(std::string_view qualified);
std::string_view unqualifyName(std::string_view qualified);
bool inProject(std::string_view qualified, std::string_view project);
// Checks a user's name of an object of `project` (`validate`: the plain rule for its kind) and
// that its qualified form still fits that rule's length.
Status validateScopedName(std::string_view project, std::string_view name, std::string_view what);
// A name as vmmd keeps it: plain, or qualified with a valid project and a valid plain name.
Status validateQualifiedName(std::string_view name, std::string_view what);
Status validateQualifiedVolumeName(std::string_view name);
// Rewrites, in text meant for a caller of `project`, each qualified name of that project to
// the name the caller knows (error messages that name objects).
std::string unqualifyText(std::string_view text, std::string_view project);
// The same in a reply or event: the values of the members that carry names (name, domain,
// object, volume, backing_volume, image, used_by, message, ...) at any depth - never guest
// output or other free text.
void unqualifyJson(json& j, std::string_view project);
// The project of an object path ("domains/_ci_web", "pools/p/volumes/_ci_disk"): that of its
// first qualified segment, else the default project.
std::string_view projectOfObject(std::string_view object);
// An object path a caller of `project` gives ("domains/web") as vmmd names it: each name after
// "domains/", "volumes/" or "images/" qualified.
std::string qualifyObject(std::string_view object, std::string_view project);

struct ProjectLimits {
  std::optional<int64_t> domains;      // defined domains
  std::optional<int64_t> vcpus;        // vCPUs of all defined domains
  std::optional<uint64_t> memory;      // memory of all defined domains (bytes)
  std::optional<uint64_t> disk;        // capacity of the project's volumes (bytes)
  std::optional<int64_t> running;      // domains running at once: launches wait in line for it
};

struct ProjectRestrictions {
  // Host paths and host-side devices (disk and kernel paths, bridge/direct NICs, container
  // rootfs paths, mounts, privileged containers, save/restore files): refused to every role
  // in a restricted project, admins included, just as they are to operators everywhere.
  bool restricted = true;
  // Empty: any. Otherwise only these pools (volumes, disks), networks (NICs) and default-project
  // images (launches; the project's own images are always allowed).
  std::vector<std::string> pools, networks, images;
  // Host bridges its NICs may join although a bridge is a host device (empty: none). Only
  // plain NICs: one that also mirrors, forwards host ports or picks its tap stays the host's.
  std::vector<std::string> bridges;
};

struct Project {
  std::string name;
  std::string description;
  ProjectRestrictions restrictions;
  ProjectLimits limits;
  int64_t createdUs = 0;
};

// `j` as a client sends it (create) or as it is stored. The default project is unrestricted.
Result<Project> parseProject(const json& j);
json formatProject(const Project& p);
// Applies the keys present in `changes` (description, restrictions, limits; null clears a
// limit) to `p`.
Result<Project> mergeProject(const Project& p, const json& changes);

// `d` with its NICs on `allowedBridges` taken for network NICs: what remains of its host
// references once a project's allowed bridges are granted.
Domain withBridgesAllowed(const Domain& d, const std::vector<std::string>& allowedBridges);

bool allowedBy(const std::vector<std::string>& list, std::string_view name);

}  // namespace vmm::model
