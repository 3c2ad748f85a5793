// What a QEMU binary offers, as the driver learns it once from `--version` and `-machine help`:
// an input of the command-line builder, so that a machine type the binary does not list is
// refused before QEMU runs, and an alias ("q35", "pc") is named as the versioned machine the
// binary resolves it to. Golden tests give it the capability sets of several QEMU versions
// (tests/data/qemu-caps/).
#pragma once

#include <map>
#include <set>
#include <string>

#include "base/result.h"

namespace vmm::drivers::qemu {

struct QemuCaps {
  std::string version{};                         // "7.2.22"; "" when not probed
  std::set<std::string> machines{};              // every name `-machine help` lists, aliases included
  std::map<std::string, std::string> aliases{};  // "q35" -> "pc-q35-7.2"

  // Nothing probed (no QEMU, or its list could not be read): no machine is refused for it.
  bool empty() const { return machines.empty(); }
};

// From the output of `qemu-system-x86_64 --version` and `qemu-system-x86_64 -machine help`.
QemuCaps parseQemuCaps(const std::string& versionOutput, const std::string& machineHelpOutput);

// Whether the binary offers `requested` (already known to be of family `family`): a machine it
// does not list is an error naming the newest one of the family it has. Nothing probed: no error.
// An alias (q35, pc) is left as it is: QEMU resolves it, as vmm did before it read capabilities.
Status checkMachineOffered(const QemuCaps& caps, const std::string& requested, const std::string& family);

}  // namespace vmm::drivers::qemu
