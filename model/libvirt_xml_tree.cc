#include "model/libvirt_xml_tree.h"

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <sstream>
#include <vector>

#include "base/json_util.h"
#include "base/strings.h"
#include "model/libvirt_xml.h"

namespace vmm::model::libvirt_xml {

namespace {

size_t lineOf(std::string_view text, size_t offset) {
  size_t line = 1;
  for (size_t i = 0; i < offset && i < text.size(); ++i) line += text[i] == '\n';
  return line;
}

bool isText(const pugi::xml_node& n) { return n.type() == pugi::node_pcdata || n.type() == pugi::node_cdata; }

}  // namespace

Result<std::unique_ptr<pugi::xml_document>> parseLimited(std::string_view xml, std::string_view what) {
  std::string w(what);
  if (xml.size() > LibvirtXmlLimits::kMaxBytes)
    return invalidArgument(w + ": larger than " + std::to_string(LibvirtXmlLimits::kMaxBytes >> 20) + " MiB");
  auto doc = std::make_unique<pugi::xml_document>();
  // parse_doctype keeps a DOCTYPE as a node so that it can be refused below; entities are
  // never expanded by pugixml beyond the five predefined ones and character references.
  auto r = doc->load_buffer(xml.data(), xml.size(), pugi::parse_default | pugi::parse_doctype, pugi::encoding_utf8);
  if (!r)
    return invalidArgument(w + ": malformed XML at line " + std::to_string(lineOf(xml, static_cast<size_t>(r.offset))) +
                           ": " + r.description());
  int roots = 0;
  for (auto n : doc->children()) {
    if (n.type() == pugi::node_doctype)
      return invalidArgument(w + ": a DOCTYPE is not accepted (no DTDs or entity declarations in domain XML)");
    if (n.type() == pugi::node_element) ++roots;
    if (isText(n)) return invalidArgument(w + ": text outside the root element");
  }
  if (roots != 1) return invalidArgument(w + ": expected one root element, found " + std::to_string(roots));
  // Depth and text, iteratively (the tree may be deep enough to overflow a recursive walk).
  // Every name and value must be UTF-8 once pugixml decoded it: the input bytes may not be, and a
  // character reference such as &#xD800; decodes to a surrogate, which is not UTF-8 either.
  auto badText = [&](const pugi::xml_node& node) -> std::optional<Error> {
    auto element = node.type() == pugi::node_element ? node : node.parent();
    auto bad = [&](const char* what) {
      return invalidArgument(w + ": invalid UTF-8 in " + what + "<" + toValidUtf8(element.name()) + ">");
    };
    if (!isValidUtf8(node.name())) return bad("the name of ");
    if (!isValidUtf8(node.value())) return bad("the text of ");
    for (auto a : node.attributes())
      if (!isValidUtf8(a.name()) || !isValidUtf8(a.value())) return bad("an attribute of ");
    // XML 1.0 allows no C0 control but tab, newline and carriage return, raw or as a character
    // reference (libvirt's parser refuses them too); pugixml would keep them.
    auto control = [](const char* s) -> int {
      for (; *s; ++s)
        if (static_cast<unsigned char>(*s) < 0x20 && *s != '\t' && *s != '\n' && *s != '\r') return static_cast<unsigned char>(*s);
      return -1;
    };
    // Well-formed XML names each attribute once (pugixml does not check): a second "type"
    // would otherwise stay in the kept remainder and contradict the first.
    std::vector<std::string_view> names;
    for (auto a : node.attributes()) names.emplace_back(a.name());
    std::sort(names.begin(), names.end());
    if (auto dup = std::adjacent_find(names.begin(), names.end()); dup != names.end())
      return invalidArgument(w + ": attribute " + quote(toValidUtf8(*dup)) + " repeated in <" + toValidUtf8(element.name()) + ">");
    int c = control(node.value());
    for (auto a : node.attributes())
      if (c < 0) c = control(a.value());
    if (c >= 0) {
      char code[12];
      std::snprintf(code, sizeof code, "U+%04X", static_cast<unsigned>(c));
      return invalidArgument(w + ": the character " + code + " is not allowed in XML (in <" + toValidUtf8(element.name()) + ">)");
    }
    return std::nullopt;
  };
  int depth = 0;
  pugi::xml_node n = doc->document_element();
  while (n) {
    if (auto e = badText(n)) return *e;
    if (n.first_child()) {
      n = n.first_child();
      if (++depth > LibvirtXmlLimits::kMaxDepth)
        return invalidArgument(w + ": nested deeper than " + std::to_string(LibvirtXmlLimits::kMaxDepth) + " levels");
      continue;
    }
    while (n && !n.next_sibling() && depth > 0) {
      n = n.parent();
      --depth;
    }
    if (depth == 0) break;
    n = n.next_sibling();
  }
  return doc;
}

void normalizeText(pugi::xml_node root) {
  std::vector<pugi::xml_node> pending{root}, text;
  while (!pending.empty()) {  // iterative: parseLimited bounds the depth, not the width
    auto e = pending.back();
    pending.pop_back();
    bool hasElements = false;
    text.clear();
    for (auto c : e.children()) {
      if (c.type() == pugi::node_element) {
        hasElements = true;
        pending.push_back(c);
      } else if (isText(c)) {
        text.push_back(c);
      }
    }
    std::string kept;
    for (auto& t : text) {
      if (!trim(t.value()).empty()) kept += t.value();  // blank text also when made by &#10;
      if (hasElements || trim(t.value()).empty()) e.remove_child(t);
    }
    if (hasElements && !kept.empty()) e.prepend_child(pugi::node_pcdata).set_value(kept.c_str());
  }
}

bool hasKeyAttribute(pugi::xml_node root) {
  std::vector<pugi::xml_node> pending{root};
  while (!pending.empty()) {
    auto e = pending.back();
    pending.pop_back();
    if (e.attribute(kKeyAttr)) return true;
    for (auto c : e.children())
      if (c.type() == pugi::node_element) pending.push_back(c);
  }
  return false;
}

void sortAttributes(pugi::xml_node root) {
  std::vector<pugi::xml_node> pending{root};
  std::vector<std::pair<std::string, std::string>> attrs;
  while (!pending.empty()) {
    auto e = pending.back();
    pending.pop_back();
    for (auto c : e.children())
      if (c.type() == pugi::node_element) pending.push_back(c);
    if (!e.attribute(kKeyAttr)) continue;  // kept whole: export copies it as it is
    attrs.clear();
    for (auto a : e.attributes()) attrs.emplace_back(a.name(), a.value());
    std::sort(attrs.begin(), attrs.end(), [](const auto& a, const auto& b) {
      bool ka = a.first == kKeyAttr, kb = b.first == kKeyAttr;
      return ka != kb ? kb : a.first < b.first;
    });
    e.remove_attributes();
    for (const auto& [name, value] : attrs) e.append_attribute(name.c_str()).set_value(value.c_str());
  }
}

std::string printNode(const pugi::xml_node& n, bool indent) {
  std::ostringstream out;
  n.print(out, "  ", indent ? pugi::format_indent : pugi::format_raw);
  return out.str();
}

namespace {

void mergeInto(pugi::xml_node g, const pugi::xml_node& r, const KeyedElements& keyed);

void stripKeys(pugi::xml_node n) {
  n.remove_attribute(kKeyAttr);
  for (auto c : n.children())
    if (c.type() == pugi::node_element) stripKeys(c);
}

void mergeChildren(pugi::xml_node generated, const pugi::xml_node& residue, const KeyedElements& keyed) {
  bool domain = std::strcmp(generated.name(), "domain") == 0;
  for (auto c : residue.children()) {
    if (c.type() != pugi::node_element) continue;
    pugi::xml_node target;
    if (auto key = c.attribute(kKeyAttr)) {
      if (key.value()[0] == '.') {
        target = generated.child(c.name());
      } else if (auto it = keyed.find(key.value()); it != keyed.end()) {
        target = it->second;
      }
    }
    if (target) {
      mergeInto(target, c, keyed);
      continue;
    }
    // Kept whole: domain-level elements go before <devices> (libvirt's order), others at the end.
    pugi::xml_node before = domain ? generated.child("devices") : pugi::xml_node();
    pugi::xml_node copy = before ? generated.insert_copy_before(c, before) : generated.append_copy(c);
    stripKeys(copy);
  }
}

void mergeInto(pugi::xml_node g, const pugi::xml_node& r, const KeyedElements& keyed) {
  // The remainder's attributes win too: one that export also writes (a default such as
  // match="exact") is there because the original said something else, which vmm kept.
  for (auto a : r.attributes()) {
    if (std::strcmp(a.name(), kKeyAttr) == 0) continue;
    auto existing = g.attribute(a.name());
    (existing ? existing : g.append_attribute(a.name())).set_value(a.value());
  }
  bool residueText = false;
  for (auto c : r.children()) residueText = residueText || isText(c);
  if (residueText) {  // the remainder's text wins: it is a value vmm did not take over
    std::vector<pugi::xml_node> old;
    for (auto c : g.children())
      if (isText(c)) old.push_back(c);
    for (auto& c : old) g.remove_child(c);
    for (auto c : r.children())
      if (isText(c)) g.prepend_copy(c);
  }
  mergeChildren(g, r, keyed);
}

}  // namespace

void mergeResidue(pugi::xml_node generated, const pugi::xml_node& residue, const KeyedElements& keyed) {
  mergeInto(generated, residue, keyed);
}

}  // namespace vmm::model::libvirt_xml
