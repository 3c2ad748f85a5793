// Shared by the libvirt XML import and export (internal to model/): hardened parsing, the
// remainder ("residue") of unmodelled XML and how it is merged back on export.
#pragma once

#include <map>
#include <memory>
#include <pugixml.hpp>
#include <string>
#include <string_view>
#include <vector>

#include "base/result.h"

namespace vmm::model::libvirt_xml {

// extensions["libvirt"] holds {"type": original domain type, "xml": "<domain>remainder</domain>"}.
inline constexpr const char* kExtensionKey = "libvirt";
// In the remainder, an element vmm took part of carries this attribute, so export can find
// the element it belongs to: a device ("disk:vda", "interface:52:54:00:..", "serial:0") or,
// for others, ".NAME" (the generated child of that name).
inline constexpr const char* kKeyAttr = "vmm-key";
// vmm-only fields (labels, metadata, ...) travel in <metadata> in this namespace.
inline constexpr const char* kVmmNamespace = "urn:x-vmm:domain:1";
inline constexpr const char* kVmmElement = "vmm:domain";
inline constexpr const char* kGuestAgentName = "org.qemu.guest_agent.0";
// libvirt bandwidth: rates in kilobytes/s (tc "kbps": 1000 bytes/s), bursts in KiB.
inline constexpr uint64_t kRateUnitBits = 8000;
inline constexpr uint64_t kBurstUnitBytes = 1024;

// Size, DOCTYPE, single root and depth checks; `what` names the input in errors.
Result<std::unique_ptr<pugi::xml_document>> parseLimited(std::string_view xml, std::string_view what);

std::string printNode(const pugi::xml_node& n, bool indent);

// Puts text into the one form that survives export and a re-parse: blank text (formatting, or
// made by a character reference such as &#10;) is removed from every element, and the text of
// an element that also holds elements (mixed content, which no libvirt element has and
// libvirt's parser ignores) becomes one text node before them - where export puts the text
// that vmm keeps of an element.
void normalizeText(pugi::xml_node root);

// Whether any element carries kKeyAttr: vmm's own marker, never accepted from outside.
bool hasKeyAttribute(pugi::xml_node root);

// Puts the attributes of every element vmm took part of (it has a vmm-key) in name order, the
// key last: the kept remainder then reads the same however export ordered the attributes it
// merged. Elements kept whole keep their order (export copies them as they are).
void sortAttributes(pugi::xml_node root);

// Merges `residue`'s attributes, text and children into `generated`. A child whose kKeyAttr
// is ".NAME" merges into the generated child NAME, one with another key into the element
// registered under it (a device), and one without a key (kept whole) is added.
using KeyedElements = std::map<std::string, pugi::xml_node>;
void mergeResidue(pugi::xml_node generated, const pugi::xml_node& residue, const KeyedElements& keyed);

}  // namespace vmm::model::libvirt_xml
