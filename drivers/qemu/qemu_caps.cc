#include "drivers/qemu/qemu_caps.h"

#include "base/strings.h"
#include "drivers/qemu/command_line.h"

namespace vmm::drivers::qemu {

QemuCaps parseQemuCaps(const std::string& versionOutput, const std::string& machineHelpOutput) {
  QemuCaps caps;
  std::string first = split(versionOutput, '\n')[0];  // "QEMU emulator version 7.2.22 (Debian ...)"
  auto pos = first.find("version ");
  caps.version = pos == std::string::npos ? first : first.substr(pos + 8, first.find(' ', pos + 8) - pos - 8);
  // "q35                  Standard PC (Q35 + ICH9, 2009) (alias of pc-q35-7.2)"
  for (const auto& line : split(machineHelpOutput, '\n', true)) {
    if (startsWith(line, "Supported machines")) continue;
    std::string name = line.substr(0, line.find(' '));
    if (name.empty()) continue;
    caps.machines.insert(name);
    std::string marker = "(alias of ";
    if (auto at = line.find(marker); at != std::string::npos) {
      auto start = at + marker.size();
      auto end = line.find(')', start);
      if (end != std::string::npos) caps.aliases[name] = line.substr(start, end - start);
    }
  }
  return caps;
}

Status checkMachineOffered(const QemuCaps& caps, const std::string& requested, const std::string& family) {
  if (caps.empty()) return {};
  if (!caps.machines.count(requested)) {
    size_t ofFamily = 0;
    for (const auto& m : caps.machines) ofFamily += machineFamily(m) == family ? 1 : 0;
    std::string hint;
    if (ofFamily == 0) hint = " (it has no " + family + " machine)";
    else if (auto alias = caps.aliases.find(family); alias != caps.aliases.end()) hint = " (its newest " + family + " machine is " + alias->second + ")";
    return invalidArgument("machine: " + quote(requested) + " is not offered by this QEMU " + caps.version + hint);
  }
  return {};
}

}  // namespace vmm::drivers::qemu
