// cloud-init seeds: a launch's "cloud_init" JSON (cloudInitFromJson) rendered by
// renderNoCloudSeed, then each file parsed back with libyaml. Every rendered file is exactly
// one YAML document whose values are the spec's values (strings stay strings: a plain key that
// YAML 1.1 would read as a bool, null, number or date is a finding). The same input also goes
// through the offline customisation parsers (customizeFromJson, validateCustomizeSpec,
// customizeRequestFromJson).
#include <yaml.h>

#include <map>
#include <memory>
#include <regex>
#include <variant>

#include "base/json_util.h"
#include "base/strings.h"
#include "daemon/first_boot.h"
#include "fuzz/fuzz_util.h"
#include "storage/customize/cloud_init.h"
#include "storage/customize/customize_spec.h"

using namespace vmm;
using namespace vmm::customize;
using json = nlohmann::json;

namespace {

// A YAML node as plain data: scalars as their text (with whether they were plain), sequences,
// mappings with string keys in document order.
struct Node {
  enum Kind { scalar, sequence, mapping } kind = scalar;
  std::string text;
  bool plain = false;
  std::vector<Node> items;
  std::vector<std::string> keys;  // of a mapping, with its values in `items`
  const Node* get(const std::string& k) const {
    for (size_t i = 0; i < keys.size(); ++i)
      if (keys[i] == k) return &items[i];
    return nullptr;
  }
};

// PyYAML's (cloud-init's) implicit resolvers of YAML 1.1 for the characters a plain key can have.
bool resolvesToNonString(const std::string& s) {
  static const std::regex kImplicit(
      "yes|Yes|YES|no|No|NO|true|True|TRUE|false|False|FALSE|on|On|ON|off|Off|OFF"
      "|~|null|Null|NULL|"
      "|[-+]?0b[0-1_]+|[-+]?0[0-7_]+|[-+]?(0|[1-9][0-9_]*)|[-+]?0x[0-9a-fA-F_]+"
      "|[0-9][0-9][0-9][0-9]-[0-9][0-9]?-[0-9][0-9]?.*|<<|=");
  return std::regex_match(s, kImplicit);
}

Node convert(yaml_document_t* doc, yaml_node_t* n, int depth) {
  Node out;
  FUZZ_CHECK(depth < 64, "YAML nested too deep");
  switch (n->type) {
    case YAML_SCALAR_NODE:
      out.text.assign(reinterpret_cast<const char*>(n->data.scalar.value), n->data.scalar.length);
      out.plain = n->data.scalar.style == YAML_PLAIN_SCALAR_STYLE;
      break;
    case YAML_SEQUENCE_NODE:
      out.kind = Node::sequence;
      for (auto* i = n->data.sequence.items.start; i < n->data.sequence.items.top; ++i)
        out.items.push_back(convert(doc, yaml_document_get_node(doc, *i), depth + 1));
      break;
    case YAML_MAPPING_NODE:
      out.kind = Node::mapping;
      for (auto* p = n->data.mapping.pairs.start; p < n->data.mapping.pairs.top; ++p) {
        Node k = convert(doc, yaml_document_get_node(doc, p->key), depth + 1);
        FUZZ_CHECK(k.kind == Node::scalar, "a mapping key that is not a scalar");
        FUZZ_CHECK(!(k.plain && resolvesToNonString(k.text)), "plain key " + fuzz::show(k.text) + " is not a string in YAML 1.1");
        for (const auto& seen : out.keys) FUZZ_CHECK(seen != k.text, "duplicate key " + fuzz::show(k.text));
        out.keys.push_back(k.text);
        out.items.push_back(convert(doc, yaml_document_get_node(doc, p->value), depth + 1));
      }
      break;
    default: FUZZ_CHECK(false, "empty YAML node");
  }
  return out;
}

// Exactly one document, returned as data.
Node parseYaml(const std::string& text, const char* what) {
  yaml_parser_t parser;
  yaml_parser_initialize(&parser);
  yaml_parser_set_input_string(&parser, reinterpret_cast<const unsigned char*>(text.data()), text.size());
  yaml_document_t doc;
  FUZZ_CHECK(yaml_parser_load(&parser, &doc), std::string(what) + " is not YAML: " +
                                                   (parser.problem ? parser.problem : "?") + "\n" + text.substr(0, 3000));
  // An empty document (only "#cloud-config") reads as an empty mapping.
  yaml_node_t* root = yaml_document_get_root_node(&doc);
  Node out;
  out.kind = Node::mapping;
  if (root) out = convert(&doc, root, 0);
  yaml_document_delete(&doc);
  yaml_document_t next;
  FUZZ_CHECK(yaml_parser_load(&parser, &next), std::string(what) + ": error after the first document");
  bool more = yaml_document_get_root_node(&next) != nullptr;
  yaml_document_delete(&next);
  yaml_parser_delete(&parser);
  FUZZ_CHECK(!more, std::string(what) + " has more than one YAML document");
  return out;
}

void expectScalar(const Node* n, const std::string& want, const std::string& what) {
  FUZZ_CHECK(n && n->kind == Node::scalar && n->text == want && !(n->plain && resolvesToNonString(n->text)),
             what + ": expected " + fuzz::show(want) + ", got " + (n ? fuzz::show(n->text) : std::string("nothing")));
}
void expectBool(const Node* n, bool want, const std::string& what) {
  FUZZ_CHECK(n && n->kind == Node::scalar && n->plain && n->text == (want ? "true" : "false"), what + ": boolean");
}
void expectList(const Node* n, const std::vector<std::string>& want, const std::string& what) {
  if (want.empty()) {
    FUZZ_CHECK(!n, what + ": expected no list");
    return;
  }
  FUZZ_CHECK(n && n->kind == Node::sequence && n->items.size() == want.size(), what + ": list size");
  for (size_t i = 0; i < want.size(); ++i) expectScalar(&n->items[i], want[i], what + "[" + std::to_string(i) + "]");
}

void checkUserData(const CloudInitSpec& s, const Node& root) {
  FUZZ_CHECK(root.kind == Node::mapping, "user-data is not a mapping");
  if (!s.hostname.empty()) expectScalar(root.get("hostname"), s.hostname, "hostname");
  if (!s.includeDefaultUser || !s.users.empty()) {
    const Node* users = root.get("users");
    FUZZ_CHECK(users && users->kind == Node::sequence, "users");
    size_t i = 0;
    if (s.includeDefaultUser) expectScalar(&users->items.at(i++), "default", "users[0]");
    FUZZ_CHECK(users->items.size() == i + s.users.size(), "users count");
    for (const auto& u : s.users) {
      const Node& n = users->items[i++];
      FUZZ_CHECK(n.kind == Node::mapping, "user entry");
      expectScalar(n.get("name"), u.name, "user name");
      expectList(n.get("ssh_authorized_keys"), u.sshAuthorizedKeys, "user keys");
      if (!u.sudo.empty()) expectScalar(n.get("sudo"), u.sudo, "sudo");
      if (!u.shell.empty()) expectScalar(n.get("shell"), u.shell, "shell");
      if (!u.groups.empty()) expectScalar(n.get("groups"), join(u.groups, ","), "groups");
      expectBool(n.get("lock_passwd"), u.lockPassword, "lock_passwd");
    }
  }
  expectList(root.get("ssh_authorized_keys"), s.sshAuthorizedKeys, "ssh_authorized_keys");
  expectList(root.get("packages"), s.packages, "packages");
  expectList(root.get("runcmd"), s.runcmd, "runcmd");
  if (!s.writeFiles.empty()) {
    const Node* files = root.get("write_files");
    FUZZ_CHECK(files && files->kind == Node::sequence && files->items.size() == s.writeFiles.size(), "write_files");
    for (size_t i = 0; i < s.writeFiles.size(); ++i) {
      const auto& f = s.writeFiles[i];
      const Node& n = files->items[i];
      expectScalar(n.get("path"), f.path, "write_files path");
      expectScalar(n.get("content"), f.content, "write_files content");
      expectScalar(n.get("permissions"), f.permissions, "write_files permissions");
      if (!f.owner.empty()) expectScalar(n.get("owner"), f.owner, "write_files owner");
    }
  }
}

void checkMetaData(const CloudInitSpec& s, const Node& root) {
  FUZZ_CHECK(root.kind == Node::mapping, "meta-data is not a mapping");
  expectScalar(root.get("instance-id"), s.instanceId, "instance-id");
  if (!s.hostname.empty()) expectScalar(root.get("local-hostname"), s.hostname, "local-hostname");
  for (const auto& [k, v] : s.extraMetaData) expectScalar(root.get(k), v, "meta-data " + k);
  FUZZ_CHECK(root.keys.size() == 1 + !s.hostname.empty() + s.extraMetaData.size(), "meta-data has other keys");
}

void checkNetworkConfig(const CloudInitSpec& s, const Node& root) {
  FUZZ_CHECK(root.kind == Node::mapping, "network-config is not a mapping");
  const Node* eth = root.get("ethernets");
  FUZZ_CHECK(eth && eth->kind == Node::mapping && eth->keys.size() == s.interfaces.size(), "ethernets");
  for (const auto& i : s.interfaces) {
    const Node* n = eth->get(i.id);
    FUZZ_CHECK(n && n->kind == Node::mapping, "interface " + fuzz::show(i.id));
    expectBool(n->get("dhcp4"), i.dhcp4, "dhcp4");
    expectBool(n->get("dhcp6"), i.dhcp6, "dhcp6");
    expectList(n->get("addresses"), i.addresses, "addresses");
    if (!i.macAddress.empty()) expectScalar(n->get("match") ? n->get("match")->get("macaddress") : nullptr, toLower(i.macAddress), "mac");
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size > 64 << 10) return 0;
  std::string_view text = fuzz::bytes(data, size);
  (void)customizeRequestFromJson(text);
  auto doc = parseJson(text, 1 << 20);
  if (!doc.ok()) return 0;
  if (auto c = customizeFromJson(*doc); c.ok()) (void)validateCustomizeSpec(*c);
  auto spec = cloudInitFromJson(*doc);
  if (!spec.ok()) return 0;
  auto seed = renderNoCloudSeed(*spec);
  if (!seed.ok()) return 0;
  if (spec->userDataOverride.empty()) checkUserData(*spec, parseYaml(seed->userData, "user-data"));
  checkMetaData(*spec, parseYaml(seed->metaData, "meta-data"));
  if (spec->networkConfigOverride.empty() && !spec->interfaces.empty())
    checkNetworkConfig(*spec, parseYaml(seed->networkConfig, "network-config"));
  return 0;
}
