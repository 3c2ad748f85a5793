// vmctl net ...: virtual networks.
#include <CLI/CLI.hpp>

#include <iostream>

#include "base/fs.h"
#include "base/strings.h"
#include "client/vmctl/commands.h"
#include "client/vmctl/output.h"

namespace vmm::vmctl {

namespace {

void printNetworkTable(const json& list) {
  Table t({"NAME", "MODE", "STATE", "BRIDGE", "IPV4", "DHCP", "AUTOSTART"});
  for (const auto& n : list) {
    bool dhcp = n.contains("dhcp") && n["dhcp"].value("enabled", false);
    t.add({text(n["name"]), text(n["mode"]), text(n["state"]), text(n["bridge"]), text(n.value("ipv4", json(""))),
           dhcp ? "yes" : "no", n.value("autostart", false) ? "yes" : "no"});
  }
  t.print();
}

void printNetworkInfo(const json& n) {
  std::vector<std::pair<std::string, std::string>> f = {
      {"Name", text(n["name"])}, {"UUID", text(n["uuid"])}, {"Mode", text(n["mode"])},
      {"State", text(n["state"])}, {"Bridge", text(n["bridge"])}};
  if (n.contains("ipv4")) f.emplace_back("IPv4", text(n["ipv4"]));
  if (n.contains("dhcp") && n["dhcp"].value("enabled", false))
    f.emplace_back("DHCP", text(n["dhcp"]["start"]) + " - " + text(n["dhcp"]["end"]) + " (" +
                               std::to_string(n["dhcp"].value("hosts", json::array()).size()) + " static hosts)");
  if (n.contains("domain")) f.emplace_back("DNS domain", text(n["domain"]));
  if (n.contains("uplink")) f.emplace_back("Uplink", text(n["uplink"]));
  if (n.contains("vlan_method")) f.emplace_back("VLAN method", text(n["vlan_method"]));
  f.emplace_back("Autostart", n.value("autostart", false) ? "yes" : "no");
  if (n.contains("runtime")) {
    const auto& rt = n["runtime"];
    if (rt.contains("dnsmasq_pid") && rt["dnsmasq_pid"].get<int64_t>() > 0) f.emplace_back("dnsmasq", "pid " + text(rt["dnsmasq_pid"]));
    if (rt.value("nft_table", "") != "") f.emplace_back("nftables", "table ip " + text(rt["nft_table"]));
  }
  printFields(f);
}

void printLeases(const json& list) {
  Table t({"MAC", "IP", "HOSTNAME", "EXPIRES"});
  for (const auto& l : list) t.add({text(l["mac"]), text(l["ip"]), text(l["hostname"]), text(l["expires"])});
  t.print();
}

}  // namespace

void registerNetworkCommands(CLI::App& app, Context& ctx, std::function<int()>& action) {
  auto* net = app.add_subcommand("net", "Virtual networks: list, define, start, stop, info, delete, leases");
  net->require_subcommand(1);

  net->add_subcommand("list", "List networks")->callback([&] {
    action = [&] {
      return callAndReport(ctx, "network.list", json::object(), [](const json& r) { jsonOutput() ? printJson(r) : printNetworkTable(r); });
    };
  });

  {
    auto* c = net->add_subcommand("define", "Define a network and start it (or give a JSON definition file)");
    struct Opts {
      std::string name, file, mode = "nat", bridge, ipv4, dhcpStart, dhcpEnd, domain, uplink;
      std::vector<std::string> hosts;
      int mtu = 0;
      bool noDhcp = false, noStart = false, noAutostart = false;
    };
    auto o = std::make_shared<Opts>();
    c->add_option("name", o->name, "the network's name (omit with --file)");
    c->add_option("-f,--file", o->file, "a JSON definition");
    c->add_option("--mode", o->mode, "nat, routed, isolated or bridge")->check(CLI::IsMember({"nat", "routed", "isolated", "bridge"}));
    c->add_option("--bridge", o->bridge, "bridge name (mode bridge: an existing host bridge)");
    c->add_option("--ipv4", o->ipv4, "gateway address and prefix, e.g. 10.70.0.1/24");
    c->add_option("--dhcp-start", o->dhcpStart, "first DHCP address (default: upper half of the subnet)");
    c->add_option("--dhcp-end", o->dhcpEnd, "last DHCP address");
    c->add_option("--dhcp-host", o->hosts, "a static lease MAC,IP[,NAME] (repeat for several)");
    c->add_flag("--no-dhcp", o->noDhcp, "no DHCP server");
    c->add_option("--domain", o->domain, "DNS domain served to guests");
    c->add_option("--uplink", o->uplink, "nat/routed: the host interface traffic leaves through");
    c->add_option("--mtu", o->mtu, "bridge MTU");
    c->add_flag("--no-start", o->noStart, "define only");
    c->add_flag("--no-autostart", o->noAutostart, "do not start it with vmmd");
    c->callback([&, o] {
      action = [&, o]() -> int {
        json def;
        if (!o->file.empty()) {
          auto text = fs::readFile(o->file, 1 << 20);
          if (!text.ok()) return reportError(text.error());
          def = json::parse(*text, nullptr, false);
          if (def.is_discarded()) return reportError(invalidArgument(o->file + " is not valid JSON"));
        } else {
          if (o->name.empty()) return reportError(invalidArgument("a name (or --file) is required"));
          def = {{"name", o->name}, {"mode", o->mode}, {"autostart", !o->noAutostart}};
          if (!o->bridge.empty()) def["bridge"] = o->bridge;
          if (!o->ipv4.empty()) def["ipv4"] = o->ipv4;
          if (o->mtu) def["mtu"] = o->mtu;
          if (!o->domain.empty()) def["domain"] = o->domain;
          if (!o->uplink.empty()) def["uplink"] = o->uplink;
          if (!o->ipv4.empty()) {
            json dhcp = {{"enabled", !o->noDhcp}};
            if (!o->dhcpStart.empty()) dhcp["start"] = o->dhcpStart;
            if (!o->dhcpEnd.empty()) dhcp["end"] = o->dhcpEnd;
            json hosts = json::array();
            for (const auto& h : o->hosts) {
              auto parts = split(h, ',');
              if (parts.size() < 2 || parts.size() > 3) return reportError(invalidArgument("--dhcp-host: expected MAC,IP[,NAME], got " + quote(h)));
              json hj = {{"mac", parts[0]}, {"ip", parts[1]}};
              if (parts.size() == 3) hj["name"] = parts[2];
              hosts.push_back(hj);
            }
            dhcp["hosts"] = hosts;
            def["dhcp"] = dhcp;
          }
        }
        return callAndReport(ctx, "network.create", {{"definition", def}, {"start", !o->noStart}}, [](const json& r) {
          if (jsonOutput()) return printJson(r);
          std::cout << "Network " << text(r["name"]) << " defined (" << text(r["state"]) << ", bridge " << text(r["bridge"]) << ")\n";
        });
      };
    });
  }

  auto byName = [&](const char* verb, const char* help, const char* method, const char* done, bool force) {
    auto* c = net->add_subcommand(verb, help);
    auto name = std::make_shared<std::string>();
    auto forced = std::make_shared<bool>(false);
    c->add_option("name", *name, "the network")->required();
    if (force) c->add_flag("--force", *forced, "even while running domains use it");
    c->callback([&, name, forced, method, done, force] {
      action = [&, name, forced, method, done, force] {
        json p = {{"name", *name}};
        if (force) p["force"] = *forced;
        return callAndReport(ctx, method, p, [name, done](const json& r) {
          if (jsonOutput()) return printJson(r);
          std::cout << "Network " << *name << " " << done << "\n";
        });
      };
    });
  };
  byName("start", "Start a network", "network.start", "started", false);
  byName("stop", "Stop a network and remove what it created on the host", "network.stop", "stopped", true);
  byName("delete", "Delete a network", "network.delete", "deleted", false);

  for (const auto& [verb, method, help] : std::vector<std::tuple<const char*, const char*, const char*>>{
           {"info", "network.get", "Show a network"}, {"leases", "network.leases", "The DHCP leases of a network"}}) {
    auto* c = net->add_subcommand(verb, help);
    auto name = std::make_shared<std::string>();
    c->add_option("name", *name, "the network")->required();
    std::string m = method;
    c->callback([&, name, m] {
      action = [&, name, m] {
        return callAndReport(ctx, m, {{"name", *name}}, [m](const json& r) {
          if (jsonOutput()) return printJson(r);
          m == "network.get" ? printNetworkInfo(r) : printLeases(r);
        });
      };
    });
  }
}

}  // namespace vmm::vmctl
