// What each object looks like on the wire: written from the formatters (model/*.cc format*,
// daemon/*_service.cc format*View, api/handlers) and checked against a running vmmd by
// tests/api/openapi_conformance.mjs. Definitions the server parses with JsonReader refuse
// unknown fields: their schemas say so (additionalProperties: false).
#include "api/openapi_schemas.h"

#include "model/domain.h"
#include "model/domain_state.h"
#include "model/network.h"
#include "model/operation.h"
#include "model/pool.h"
#include "model/snapshot.h"

namespace vmm::api {

using json = nlohmann::json;

namespace {

json schemaRef(const std::string& name) { return {{"$ref", "#/components/schemas/" + name}}; }
json described(json s, const std::string& description) {
  s["description"] = description;
  return s;
}
json text(const std::string& description = "") {
  json s = {{"type", "string"}};
  return description.empty() ? s : described(s, description);
}
json integer(const std::string& description = "") {
  json s = {{"type", "integer"}};
  return description.empty() ? s : described(s, description);
}
json number() { return {{"type", "number"}}; }
json boolean(const std::string& description = "") {
  json s = {{"type", "boolean"}};
  return description.empty() ? s : described(s, description);
}
json timestamp() { return {{"type", "string"}, {"format", "date-time"}}; }
json arrayOf(json items) { return {{"type", "array"}, {"items", std::move(items)}}; }
json mapOf(json values) { return {{"type", "object"}, {"additionalProperties", std::move(values)}}; }
json anyValue(const std::string& description) { return {{"description", description}}; }
json object(json properties, std::vector<std::string> required = {}) {
  json s = {{"type", "object"}, {"properties", std::move(properties)}};
  if (!required.empty()) s["required"] = std::move(required);
  return s;
}
// An object whose other fields are the driver's own.
json openObject(json properties) {
  json s = object(std::move(properties));
  s["additionalProperties"] = true;
  return s;
}
json closed(json s) {
  s["additionalProperties"] = false;
  return s;
}
// OpenAPI 3.0 has no "null" type: `nullable` adds null to a schema's own type, and a $ref
// takes no siblings, so a nullable reference is "the object, or a null-only object schema".
json orNull(json s) {
  if (s.contains("type")) {
    s["nullable"] = true;
    return s;
  }
  return {{"anyOf", {std::move(s), {{"type", "object"}, {"nullable", true}, {"enum", {nullptr}}}}}};
}
template <class E>
json oneOfNames(const model::EnumTable<E>& table) {
  json names = json::array();
  for (const auto& [value, name] : table) names.push_back(name);
  return {{"type", "string"}, {"enum", names}};
}
json choice(std::vector<std::string> names) { return {{"type", "string"}, {"enum", std::move(names)}}; }
// Sizes are read as bytes or text ("10G"); definitions write them back as text.
json size(const std::string& description) {
  return {{"anyOf", {{{"type", "string"}, {"example", "1GiB"}}, {{"type", "integer"}, {"minimum", 0}}}},
          {"description", description}};
}
json stringMap() { return mapOf(text()); }

// ---- the domain definition (model/domain.cc: parseDomain and formatDomain)

void addDefinitionSchemas(json& s) {
  s["DiskSource"] = closed(object({{"path", text("a host file or device (admin only)")},
                                   {"pool", text("the pool of a volume")},
                                   {"volume", text("a volume of the pool")}}));
  s["Disk"] = closed(object({{"target", text("vda, sdb... (default: the next free one)")},
                             {"device", oneOfNames(model::kDiskDevices)},
                             {"bus", oneOfNames(model::kDiskBuses)},
                             {"format", oneOfNames(model::kDiskFormats)},
                             {"cache", oneOfNames(model::kDiskCaches)},
                             {"source", schemaRef("DiskSource")},
                             {"readonly", boolean()},
                             {"boot_order", integer()},
                             {"serial", text()}},
                            {"source"}));
  s["Bandwidth"] = closed(object({{"average", size("bits per second (\"100Mbit\")")},
                                  {"peak", size("bits per second")},
                                  {"burst", size("bytes")}},
                                 {"average"}));
  s["Vlan"] = closed(object({{"mode", oneOfNames(model::kVlanModes)},
                             {"tag", integer("the VLAN of an access port")},
                             {"tags", arrayOf(integer())},
                             {"native", integer()}}));
  s["AclRule"] = closed(object({{"action", oneOfNames(model::kAclActions)},
                                {"direction", oneOfNames(model::kAclDirections)},
                                {"protocol", oneOfNames(model::kAclProtocols)},
                                {"remote", text("a CIDR")},
                                {"port", text("a port or range: \"80\", \"8000-8100\"")}},
                               {"action"}));
  s["PortProfile"] = closed(object({{"vlan", schemaRef("Vlan")},
                                    {"inbound", schemaRef("Bandwidth")},
                                    {"outbound", schemaRef("Bandwidth")},
                                    {"acl", arrayOf(schemaRef("AclRule"))},
                                    {"spoof_check", boolean()},
                                    {"allowed_ips", arrayOf(text())},
                                    {"isolated", boolean()},
                                    {"mirror_to", text()}}));
  s["PortForward"] = closed(object({{"protocol", choice({"tcp", "udp"})},
                                    {"host_address", text()},
                                    {"host_port", integer()},
                                    {"guest_port", integer()}},
                                   {"host_port", "guest_port"}));
  s["Nic"] = closed(object({{"type", oneOfNames(model::kNicTypes)},
                            {"network", text()},
                            {"bridge", text()},
                            {"device", text()},
                            {"mode", oneOfNames(model::kDirectModes)},
                            {"mac", text()},
                            {"model", oneOfNames(model::kNicModels)},
                            {"ifname", text()},
                            {"host_loopback", boolean()},
                            {"forwards", arrayOf(schemaRef("PortForward"))},
                            {"port", schemaRef("PortProfile")}}));
  s["Boot"] = closed(object({{"kernel", text()},
                             {"initrd", text()},
                             {"cmdline", text()},
                             {"order", arrayOf(oneOfNames(model::kBootDevices))},
                             {"firmware", oneOfNames(model::kFirmwares)}}));
  s["Container"] = closed(object({{"rootfs", schemaRef("DiskSource")},
                                  {"init", arrayOf(text())},
                                  {"env", stringMap()},
                                  {"hostname", text()},
                                  {"mounts", arrayOf(closed(object({{"source", text()}, {"target", text()}, {"readonly", boolean()}},
                                                                   {"source", "target"})))},
                                  {"privileged", boolean()},
                                  {"idmap_base", integer()},
                                  {"idmap_size", integer()}},
                                 {"rootfs"}));
  json lifecycle = oneOfNames(model::kLifecycleActions);
  s["DomainDefinition"] = closed(object(
      {{"name", text()},
       {"uuid", text()},
       {"type", oneOfNames(model::kDriverTypes)},
       {"title", text()},
       {"description", text()},
       {"vcpus", integer()},
       {"memory", size("bytes, or text such as \"1GiB\" (written back as text)")},
       {"cpu", closed(object({{"model", text()},
                              {"topology", closed(object({{"sockets", integer()}, {"cores", integer()}, {"threads", integer()}}))}}))},
       {"machine", text()},
       {"boot", schemaRef("Boot")},
       {"disks", arrayOf(schemaRef("Disk"))},
       {"nics", arrayOf(schemaRef("Nic"))},
       {"consoles", arrayOf(closed(object({{"type", oneOfNames(model::kConsoleTypes)}, {"log", boolean()}})))},
       {"graphics", arrayOf(closed(object({{"type", oneOfNames(model::kGraphicsTypes)},
                                           {"listen", text("\"unix\" (a socket in the domain's runtime directory) or an IP address")},
                                           {"port", integer()},
                                           {"password", text("redacted (********) when vmmd writes a definition")}})))},
       {"container", schemaRef("Container")},
       {"limits", closed(object({{"cpu_shares", integer()}, {"cpu_quota_percent", integer()}, {"pids", integer()}}))},
       {"lifecycle", closed(object({{"on_poweroff", lifecycle}, {"on_reboot", lifecycle}, {"on_crash", lifecycle}}))},
       {"autostart", boolean()},
       {"guest_agent", boolean()},
       {"labels", stringMap()},
       {"metadata", anyValue("free JSON kept with the definition")},
       {"extensions", anyValue("driver-specific settings")}},
      {"name"}));
}

// ---- domains (daemon/domain_service.cc formatDomainView, api/handlers/domain_handlers.cc)

void addDomainSchemas(json& s) {
  s["DomainSummary"] = object({{"name", text()},
                               {"project", text()},
                               {"uuid", text()},
                               {"type", oneOfNames(model::kDriverTypes)},
                               {"state", oneOfNames(model::kDomainStates)},
                               {"reason", text("why it is in this state (\"\" when nothing to say)")},
                               {"state_since", orNull(timestamp())},
                               {"vcpus", integer()},
                               {"memory", text("\"1GiB\"")},
                               {"autostart", boolean()},
                               {"labels", stringMap()},
                               {"generation", integer("the definition's generation (the ETag)")},
                               {"title", text()},
                               {"pending_changes", boolean("a new definition applies at the next start")}},
                              {"name", "project", "uuid", "type", "state", "reason", "state_since", "vcpus", "memory",
                               "autostart", "labels", "generation", "pending_changes"});
  s["Domain"] = {
      {"allOf",
       {schemaRef("DomainSummary"),
        object({{"managed_save", boolean()},
                {"definition", schemaRef("DomainDefinition")},
                {"live_definition", described(schemaRef("DomainDefinition"), "the definition the running domain uses, while it differs")},
                {"runtime", described(openObject({{"run_id", text()}, {"graphics", arrayOf({{"type", "object"}})}}),
                                      "the driver's runtime details while the domain runs ({} when shut off)")},
                {"job", orNull(text("the mutation in progress"))},
                {"warnings", arrayOf(text("what an imported libvirt XML definition lost"))}},
               {"managed_save", "definition", "runtime", "job"})}}};
  json part = s["DomainSummary"];
  part.erase("required");
  s["DomainSummaryFields"] = described(part, "the DomainSummary fields named by ?fields=... and no others");
  s["DomainListItem"] = described({{"anyOf", {schemaRef("Domain"), schemaRef("DomainSummary"), schemaRef("DomainSummaryFields")}}},
                                  "a DomainSummary; with ?full=true a Domain; with ?fields=... only those fields");
  s["DomainXml"] = object({{"name", text()}, {"xml", text("libvirt domain XML")}}, {"name", "xml"});
  json block = object({{"target", text()}, {"rd_bytes", integer()}, {"wr_bytes", integer()}, {"rd_reqs", integer()},
                       {"wr_reqs", integer()}},
                      {"target"});
  json nic = object({{"mac", text()}, {"ifname", text()}, {"rx_bytes", integer()}, {"tx_bytes", integer()}, {"rx_packets", integer()},
                     {"tx_packets", integer()}},
                    {"mac"});
  json stats = object({{"name", text()},
                       {"state", oneOfNames(model::kDomainStates)},
                       {"cpu_time_ns", integer()},
                       {"vcpus", integer()},
                       {"memory", object({{"max_bytes", integer()}, {"rss_bytes", integer()}})},
                       {"block", arrayOf(block)},
                       {"block_error", text("why block statistics are missing")},
                       {"net", arrayOf(nic)}},
                      {"name", "state"});
  stats["additionalProperties"] = true;
  s["DomainStats"] = described(stats, "what the driver measures; drivers add their own (lxc: memory_bytes, pids...)");
  s["DomainStatsError"] = object({{"name", text()}, {"error", schemaRef("ErrorBody")}}, {"name", "error"});
  s["DomainStatsEntry"] = {{"anyOf", {schemaRef("DomainStats"), schemaRef("DomainStatsError")}}};
  s["GuestReply"] = anyValue("the guest agent's answer, as it gave it");
  s["ConsoleLog"] = object({{"log", text()}}, {"log"});
  json exec = {{"exit_code", integer()},
               {"signal", integer()},
               {"stdout", text("U+FFFD where the output is not UTF-8")},
               {"stderr", text()},
               {"stdout_b64", text("the exact bytes, base64, when stdout is not UTF-8")},
               {"stderr_b64", text()},
               {"stdout_truncated", boolean()},
               {"stderr_truncated", boolean()}};
  std::vector<std::string> execRequired = {"exit_code", "signal", "stdout", "stderr", "stdout_truncated", "stderr_truncated"};
  s["ExecResult"] = object(exec, execRequired);
  json run = exec;
  run["domain"] = text();
  run["removed"] = boolean();
  run["warning"] = text();
  run["timings"] = mapOf(integer("milliseconds"));
  execRequired.insert(execRequired.end(), {"domain", "removed", "timings"});
  s["RunResult"] = object(run, execRequired);
}

void addStorageSchemas(json& s) {
  json source = object({{"host", text()},
                        {"port", integer()},
                        {"dir", text()},
                        {"devices", arrayOf(text())},
                        {"vg_name", text()},
                        {"target", text()},
                        {"initiator", text()},
                        {"username", text()},
                        {"secret", text("redacted (********) in replies")}});
  s["PoolDefinition"] = closed(object({{"name", text()},
                                       {"uuid", text()},
                                       {"type", oneOfNames(model::kPoolTypes)},
                                       {"path", text()},
                                       {"source", closed(source)},
                                       {"autostart", boolean()},
                                       {"labels", stringMap()}},
                                      {"name", "type"}));
  s["Pool"] = object({{"name", text()},
                      {"uuid", text()},
                      {"type", oneOfNames(model::kPoolTypes)},
                      {"path", text()},
                      {"source", source},
                      {"autostart", boolean()},
                      {"labels", stringMap()},
                      {"state", choice({"inactive", "active", "error"})},
                      {"error", text("why it is in the error state")},
                      {"capacity", integer("bytes")},
                      {"allocation", integer("bytes")},
                      {"available", integer("bytes")},
                      {"volumes", integer("how many")},
                      {"refreshed_at", timestamp()},
                      {"job", text()}},
                     {"name", "uuid", "type", "source", "autostart", "labels", "state", "capacity", "allocation", "available",
                      "volumes"});
  json formats = oneOfNames(model::kDiskFormats);
  s["VolumeSpec"] = closed(object({{"name", text()},
                                   {"capacity", size("\"10G\" or bytes")},
                                   {"format", formats},
                                   {"backing_volume", text("a linked clone of this volume of the pool")},
                                   {"preallocate", boolean()},
                                   {"from_tar", text("a host tar file to fill a dir volume from (admin only)")}},
                                  {"name"}));
  formats["enum"].push_back("dir");
  s["Volume"] = object({{"name", text()},
                        {"pool", text()},
                        {"format", formats},
                        {"capacity", integer("bytes")},
                        {"allocation", integer("bytes")},
                        {"path", text()},
                        {"backing_volume", text()},
                        {"refused", text("why vmmd does not use a file it found in the pool")},
                        {"used_by", arrayOf(text("a domain"))}},
                       {"name", "pool", "format", "capacity", "allocation", "path", "used_by"});
  s["Snapshot"] = object({{"name", text()},
                          {"domain", text()},
                          {"parent", orNull(text())},
                          {"description", text()},
                          {"kind", oneOfNames(model::kSnapshotKinds)},
                          {"memory", boolean()},
                          {"domain_state", text()},
                          {"created", timestamp()},
                          {"disks", arrayOf(object({{"target", text()}, {"file", text()}, {"backing", text()}}, {"target"}))},
                          {"current", boolean("the domain's current state descends from it")}},
                         {"name", "domain", "parent", "description", "kind", "memory", "domain_state", "created", "disks",
                          "current"});
  s["Image"] = object({{"name", text()},
                       {"project", text()},
                       {"pool", text()},
                       {"volume", text()},
                       {"format", oneOfNames(model::kDiskFormats)},
                       {"size", integer("bytes")},
                       {"media", text("disk or cdrom")},
                       {"os", text()},
                       {"arch", text()},
                       {"default_user", text()},
                       {"description", text()},
                       {"source", text("the file or URL it came from")},
                       {"sha256", text()},
                       {"created", timestamp()},
                       {"template", anyValue("domain settings launched domains start from (null: none)")},
                       {"kernel", text()},
                       {"initrd", text()}},
                      {"name", "pool", "volume", "format", "size", "media", "os", "arch", "default_user", "description",
                       "source", "sha256", "created", "template"});
}

void addNetworkSchemas(json& s) {
  json dhcpIn = object({{"enabled", boolean()},
                        {"lease_seconds", integer()},
                        {"hosts", arrayOf(object({{"mac", text()}, {"ip", text()}, {"name", text()}}, {"mac", "ip"}))},
                        {"start", text()},
                        {"end", text()}});
  json dhcp = dhcpIn;
  dhcp["required"] = {"enabled", "lease_seconds", "hosts"};  // a reply has them all
  json props = {{"name", text()},
                {"uuid", text()},
                {"mode", oneOfNames(model::kNetworkModes)},
                {"bridge", text()},
                {"mtu", integer()},
                {"ipv4", text("gateway/prefix: \"192.168.100.1/24\"")},
                {"dhcp", dhcpIn},
                {"domain", text()},
                {"uplink", text()},
                {"autostart", boolean()},
                {"labels", stringMap()}};
  s["NetworkDefinition"] = object(props, {"name"});
  props["dhcp"] = dhcp;
  props["state"] = choice({"active", "inactive"});
  props["vlan_method"] = text();
  props["job"] = text();
  props["runtime"] = described({{"type", "object"}}, "host resources while active");
  s["Network"] = object(props, {"name", "uuid", "mode", "bridge", "autostart", "labels", "state"});
  s["Lease"] = object({{"mac", text()}, {"ip", text()}, {"hostname", text()}, {"expires", orNull(timestamp())}},
                      {"mac", "ip", "hostname", "expires"});
}

void addServerSchemas(json& s) {
  s["ErrorBody"] = object({{"code", integer("the HTTP status")},
                           {"kind", described(text(), "not-found, conflict, permission-denied... (base/result.cc)")},
                           {"message", text()}},
                          {"code", "kind", "message"});
  s["Error"] = object({{"error", schemaRef("ErrorBody")}}, {"error"});
  s["Empty"] = described(closed({{"type", "object"}}), "{}");
  s["Operation"] = object(
      {{"id", text()},
       {"kind", text("the call that started it: domain.start...")},
       {"object", text("domains/web1")},
       {"principal", text()},
       {"status", oneOfNames(model::kOperationStatuses)},
       {"progress", object({{"percent", integer()}, {"message", text()}}, {"percent", "message"})},
       {"error", orNull(schemaRef("ErrorBody"))},
       {"result", described(orNull({{"type", "object"}}), "what the finished operation returns (each call's 202 response says what); null before then")},
       {"created", timestamp()},
       {"updated", timestamp()},
       {"cancellable", boolean()},
       {"truncated", boolean("the result is over the size kept here: operation.result has it whole")},
       {"result_bytes", integer()},
       {"result_withheld", text("why the result is null: guest output needs the operator role")}},
      {"id", "kind", "object", "principal", "status", "progress", "error", "result", "created", "updated", "cancellable"});
  s["ResultTooLarge"] = object({{"message", text()}}, {"message"});
  s["OperationResult"] = anyValue("the operation's whole result: what its call's 202 response names");
  s["Event"] = object({{"seq", integer()}, {"time", timestamp()}, {"type", text()}, {"object", text()}, {"data", anyValue("")}},
                      {"seq", "time", "type", "object", "data"});
  json role = choice({"read", "operator", "admin"});
  s["Token"] = object({{"name", text()},
                       {"kind", text()},
                       {"role", role},
                       {"description", text()},
                       {"created", timestamp()},
                       {"expires", orNull(timestamp())},
                       {"expired", boolean()},
                       {"fingerprint", text("SHA-256 of a TLS client certificate")},
                       {"project", orNull(text())}},
                      {"name", "kind", "role", "description", "created", "expires", "expired", "project"});
  s["TokenCreated"] = object({{"name", text()},
                              {"role", role},
                              {"project", orNull(text())},
                              {"expires", orNull(timestamp())},
                              {"token", text("the secret: shown only here")},
                              {"fingerprint", text()}},
                             {"name", "role", "project", "expires"});
  json names = arrayOf(text());
  json limits = object({{"domains", integer()}, {"vcpus", integer()}, {"memory", integer("bytes")}, {"disk", integer("bytes")},
                        {"running", integer()}});
  json restrictions = object({{"restricted", boolean()}, {"pools", names}, {"networks", names}, {"images", names}, {"bridges", names}});
  s["Project"] = object({{"name", text()},
                         {"description", text()},
                         {"restrictions", restrictions},
                         {"limits", limits},
                         {"created", timestamp()},
                         {"usage", limits}},
                        {"name", "description", "restrictions", "limits", "usage"});
  json limitsIn = object({{"domains", integer()}, {"vcpus", integer()}, {"memory", size("bytes or \"8GiB\"")},
                          {"disk", size("bytes or \"100G\"")}, {"running", integer()}});
  s["ProjectDefinition"] = closed(object({{"name", text()},
                                          {"description", text()},
                                          {"restrictions", closed(restrictions)},
                                          {"limits", closed(limitsIn)},
                                          {"created", timestamp()}},
                                         {"name"}));
  s["ProjectChanges"] = described(object({{"description", text()}, {"restrictions", restrictions}, {"limits", limitsIn}}),
                                  "the keys given change; a limit given as null is removed");
  s["AuditRecord"] = object({{"seq", integer()},
                             {"time", timestamp()},
                             {"principal", text()},
                             {"role", text()},
                             {"project", text()},
                             {"transport", text()},
                             {"method", text()},
                             {"object", text()},
                             {"result", text()},
                             {"duration_ms", number()},
                             {"message", text()},
                             {"operation", text()}},
                            {"seq", "time", "principal", "role", "project", "transport", "method", "object", "result",
                             "duration_ms"});
  json driver = object({{"available", boolean()}, {"reason", text()}, {"version", text()}, {"details", {{"type", "object"}}}},
                       {"available", "reason", "version", "details"});
  s["HostInfo"] = object(
      {{"vmm", object({{"version", text()},
                       {"api_version", text()},
                       {"api_extensions", names},
                       {"pid", integer()},
                       {"started", timestamp()},
                       {"uptime_seconds", integer()},
                       {"state_dir", text()},
                       {"state_schema", integer()}},
                      {"version", "api_version", "api_extensions"})},
       {"host", object({{"hostname", text()},
                        {"kernel", text()},
                        {"arch", text()},
                        {"cpus", integer()},
                        {"memory_bytes", integer()},
                        {"kvm", object({{"available", boolean()}, {"reason", text()}})},
                        {"cgroups", {{"type", "object"}}}})},
       {"drivers", mapOf(driver)},
       {"domains", mapOf(integer("domains in this state"))},
       {"capacity", object({{"memory_bytes", integer()}, {"vcpus", integer()}, {"used_memory_bytes", integer()},
                            {"used_vcpus", integer()}})},
       {"caller", object({{"principal", text()}, {"role", role}}, {"principal", "role"})}},
      {"vmm", "host", "drivers", "domains", "capacity", "caller"});
}

}  // namespace

json openapiSchemas() {
  json s = json::object();
  addDefinitionSchemas(s);
  addDomainSchemas(s);
  addStorageSchemas(s);
  addNetworkSchemas(s);
  addServerSchemas(s);
  return s;
}

std::string returnsComponent(std::string_view returns) {
  std::string name(returns);
  if (name.ends_with("[]")) name.resize(name.size() - 2);
  else if (name.ends_with("?")) name.resize(name.size() - 1);
  return name;
}

json returnsSchema(std::string_view returns) {
  if (returns.empty()) return json();
  json one = schemaRef(returnsComponent(returns));
  if (returns.ends_with("[]")) return arrayOf(std::move(one));
  if (returns.ends_with("?")) return orNull(std::move(one));
  return one;
}

}  // namespace vmm::api
