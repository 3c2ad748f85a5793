#include <gtest/gtest.h>

#include "model/snapshot.h"
#include "model/domain.h"
#include "model/names.h"
#include "model/net_addr.h"
#include "model/network.h"
#include "model/pool.h"
#include "model/units.h"

using namespace vmm;
using namespace vmm::model;
using nlohmann::json;

namespace {

std::string errorOf(const json& j) {
  auto r = parseDomain(j);
  if (r.ok()) return "";
  return r.error().message;
}

}  // namespace

TEST(Units, ParseSizes) {
  EXPECT_EQ(*parseSize("512MiB"), 512ULL << 20);
  EXPECT_EQ(*parseSize("1G"), 1ULL << 30);
  EXPECT_EQ(*parseSize("1GB"), 1000000000ULL);
  EXPECT_EQ(*parseSize("1.5GiB"), 3ULL << 29);
  EXPECT_EQ(*parseSize("4096"), 4096ULL);
  EXPECT_EQ(*parseSize(" 2 TiB "), 2ULL << 40);
  EXPECT_FALSE(parseSize("").ok());
  EXPECT_FALSE(parseSize("MiB").ok());
  EXPECT_FALSE(parseSize("12 furlongs").ok());
  EXPECT_FALSE(parseSize("1.5").ok());
  EXPECT_FALSE(parseSize("99999999999999999999").ok());
  EXPECT_FALSE(parseSize("20000000PiB").ok());
  EXPECT_NE(parseSize("12 furlongs").error().message.find("unknown size unit"), std::string::npos);
}

TEST(Units, FormatSizesRoundTrip) {
  EXPECT_EQ(formatSize(512ULL << 20), "512MiB");
  EXPECT_EQ(formatSize(1ULL << 30), "1GiB");
  EXPECT_EQ(formatSize(1536ULL << 10), "1536KiB");
  EXPECT_EQ(formatSize(1000), "1000");
  for (uint64_t v : {1ULL, 1024ULL, 3ULL << 29, 123456789ULL, 1ULL << 50}) EXPECT_EQ(*parseSize(formatSize(v)), v);
  EXPECT_EQ(humanSize(1536ULL << 20), "1.5GiB");
}

TEST(Units, Bitrates) {
  EXPECT_EQ(*parseBitrate("10Mbit"), 10000000ULL);
  EXPECT_EQ(*parseBitrate("1gbit"), 1000000000ULL);
  EXPECT_EQ(*parseBitrate("500kbit"), 500000ULL);
  EXPECT_EQ(formatBitrate(10000000), "10Mbit");
  EXPECT_FALSE(parseBitrate("fast").ok());
  EXPECT_FALSE(parseBitrate("10MB/s").ok());
}

TEST(Names, Rules) {
  EXPECT_TRUE(validateName("web1", "domain name").ok());
  EXPECT_TRUE(validateName("a.b_c-d", "domain name").ok());
  EXPECT_FALSE(validateName("", "domain name").ok());
  EXPECT_FALSE(validateName("-x", "domain name").ok());
  EXPECT_FALSE(validateName("../etc", "domain name").ok());
  EXPECT_FALSE(validateName("a/b", "domain name").ok());
  EXPECT_FALSE(validateName("a b", "domain name").ok());
  EXPECT_FALSE(validateName(std::string(64, 'a'), "domain name").ok());
  EXPECT_TRUE(validateName(std::string(63, 'a'), "domain name").ok());
  EXPECT_FALSE(validateVolumeName("../x.qcow2").ok());
  EXPECT_FALSE(validateVolumeName("a..b").ok());
  EXPECT_TRUE(validateVolumeName("disk-1.qcow2").ok());
}

TEST(Names, Mac) {
  EXPECT_EQ(*normalizeMac("52:54:00:AB:cd:01"), "52:54:00:ab:cd:01");
  EXPECT_FALSE(normalizeMac("52:54:00:ab:cd").ok());
  EXPECT_FALSE(normalizeMac("53:54:00:ab:cd:01").ok());  // multicast bit
  EXPECT_FALSE(normalizeMac("00:00:00:00:00:00").ok());
  EXPECT_FALSE(normalizeMac("52-54-00-ab-cd-01").ok());
  auto m = generateMac();
  EXPECT_TRUE(normalizeMac(m).ok());
  EXPECT_EQ(m.substr(0, 9), "52:54:00:");
}

TEST(NetAddr, Cidr) {
  auto c = *parseCidr("10.70.0.1/24");
  EXPECT_EQ(c.network().toString(), "10.70.0.0");
  EXPECT_EQ(c.broadcast().toString(), "10.70.0.255");
  EXPECT_EQ(c.netmask(), "255.255.255.0");
  EXPECT_TRUE(c.contains(*parseIp("10.70.0.99")));
  EXPECT_FALSE(c.contains(*parseIp("10.71.0.1")));
  EXPECT_TRUE(c.overlaps(*parseCidr("10.70.0.128/25")));
  EXPECT_TRUE(c.overlaps(*parseCidr("10.0.0.0/8")));
  EXPECT_FALSE(c.overlaps(*parseCidr("10.71.0.0/24")));
  EXPECT_FALSE(parseCidr("10.70.0.1/33").ok());
  EXPECT_FALSE(parseCidr("10.70.0/24").ok());
}

TEST(Domain, MinimalGetsDefaults) {
  auto d = parseDomain(json{{"name", "web1"}});
  ASSERT_TRUE(d.ok()) << d.error().message;
  EXPECT_EQ(d->type, DriverType::qemu);
  EXPECT_EQ(d->vcpus, 1);
  EXPECT_EQ(d->memory, 512ULL << 20);
  EXPECT_EQ(d->uuid.size(), 36u);
  ASSERT_EQ(d->consoles.size(), 1u);
  auto j = formatDomain(*d);
  EXPECT_EQ(j["memory"], "512MiB");
  EXPECT_EQ(j["type"], "qemu");
}

TEST(Domain, FullRoundTrip) {
  json in = R"({
    "name": "web1", "uuid": "6F1C2B36-1A2B-4C3D-8E9F-0123456789AB", "type": "qemu", "vcpus": 2, "memory": "1GiB",
    "cpu": {"model": "max", "topology": {"sockets": 1, "cores": 2, "threads": 1}}, "machine": "q35",
    "boot": {"kernel": "/k/vmlinux", "initrd": "/k/initrd", "cmdline": "console=ttyS0", "order": ["disk"]},
    "disks": [{"source": {"pool": "default", "volume": "web1.qcow2"}},
              {"source": {"path": "/isos/x.iso"}, "device": "cdrom", "bus": "sata"},
              {"source": {"path": "/data/raw.img"}, "bus": "scsi", "readonly": true, "boot_order": 2}],
    "nics": [{"network": "default"}, {"bridge": "br0", "mac": "52:54:00:AA:BB:CC", "model": "e1000",
              "port": {"vlan": {"mode": "trunk", "tags": [10, 20], "native": 10},
                       "inbound": {"average": "10Mbit", "burst": "64KiB"},
                       "acl": [{"action": "deny", "protocol": "icmp"}, {"action": "allow", "protocol": "tcp", "port": "22"}],
                       "spoof_check": true, "allowed_ips": ["10.0.0.5"], "isolated": true, "mirror_to": "mon0"}},
             {"type": "user", "forwards": [{"host_port": 2222, "guest_port": 22}]}],
    "graphics": [{"type": "vnc", "password": "s3cret"}],
    "labels": {"env": "ci", "team/owner": "qa"},
    "metadata": {"anything": [1, 2, 3]},
    "autostart": true
  })"_json;
  auto d = parseDomain(in);
  ASSERT_TRUE(d.ok()) << d.error().message;
  EXPECT_EQ(d->uuid, "6f1c2b36-1a2b-4c3d-8e9f-0123456789ab");
  EXPECT_EQ(d->disks[0].target, "vda");
  EXPECT_EQ(d->disks[1].target, "sda");
  EXPECT_EQ(d->disks[2].target, "sdb");
  EXPECT_TRUE(d->disks[1].readonly);  // cdroms are read-only
  EXPECT_EQ(d->nics[0].type, NicType::network);
  EXPECT_EQ(d->nics[1].type, NicType::bridge);
  EXPECT_EQ(d->nics[1].mac, "52:54:00:aa:bb:cc");
  EXPECT_EQ(d->nics[2].type, NicType::user);
  EXPECT_EQ(d->nics[1].port.inbound->average, 10000000u);
  auto out = formatDomain(*d, false);
  auto again = parseDomain(out);
  ASSERT_TRUE(again.ok()) << again.error().message << "\n" << out.dump(2);
  EXPECT_EQ(formatDomain(*again, false), out);
  EXPECT_EQ(formatDomain(*d)["graphics"][0]["password"], "********");
  // A volume's format is its pool's record, never a guess from its name; a file's is guessed.
  EXPECT_FALSE(out["disks"][0].contains("format")) << out["disks"][0].dump();
  EXPECT_EQ(out["disks"][2]["format"], "raw");
}

TEST(Domain, RejectsWithPreciseMessages) {
  EXPECT_EQ(errorOf(json{{"name", "x"}, {"colour", "red"}}), "colour: unknown field");
  EXPECT_EQ(errorOf(json::parse(R"({"name":"x","disks":[{"source":{"path":"/a"},"bus":"floppy"}]})")),
            "disks[0].bus: unknown value \"floppy\" (expected one of: virtio, scsi, sata, ide, usb, xen)");
  EXPECT_EQ(errorOf(json::parse(R"({"name":"x","disks":[{"source":{"path":"/a"}},{"source":{"path":"/b"},"wat":1}]})")),
            "disks[1].wat: unknown field");
  EXPECT_EQ(errorOf(json::parse(R"({"name":"x","nics":[{"network":"n","port":{"vlan":{"tag":4095}}}]})")),
            "nics[0].port.vlan.tag: VLAN id 4095 is out of range (1-4094)");
  EXPECT_EQ(errorOf(json::parse(R"({"name":"x","nics":[{"network":"n","port":{"vlan":{"tag":0}}}]})")),
            "nics[0].port.vlan.tag: VLAN id 0 is out of range (1-4094)");
  EXPECT_EQ(errorOf(json{{"name", "x"}, {"vcpus", 0}}), "vcpus: must be between 1 and 512");
  EXPECT_EQ(errorOf(json{{"name", "x"}, {"vcpus", "2"}}), "vcpus: expected an integer, got string");
  EXPECT_EQ(errorOf(json{{"name", "x"}, {"memory", "1MiB"}}), "memory: 1MiB is out of range (16MiB to 16TiB)");
  EXPECT_EQ(errorOf(json{{"name", "bad/name"}}).substr(0, 6), "name: ");
  EXPECT_EQ(errorOf(json::object()), "name: required field is missing");
  EXPECT_EQ(errorOf(json::array()), "request: expected an object, got array");
  EXPECT_EQ(errorOf(json{{"name", "x"}, {"uuid", "nope"}}), "uuid: \"nope\" is not a UUID");
  EXPECT_EQ(errorOf(json::parse(R"({"name":"x","disks":[{"source":{"path":"relative.img"}}]})")),
            "disks[0].source.path: path must be an absolute path, got \"relative.img\"");
  EXPECT_EQ(errorOf(json::parse(R"({"name":"x","disks":[{"source":{"path":"/a","pool":"p","volume":"v"}}]})")),
            "disks[0].source: give either \"path\" or \"pool\" and \"volume\"");
  EXPECT_EQ(errorOf(json::parse(R"({"name":"x","disks":[{"source":{"pool":"p","volume":"../../etc/passwd"}}]})")),
            "disks[0].source.volume: volume name \"../../etc/passwd\" must start with a letter or digit");
  EXPECT_EQ(errorOf(json::parse(R"({"name":"x","nics":[{"network":"a","bridge":"b"}]})")),
            "nics[0]: give only one of \"network\", \"bridge\" or \"device\"");
  EXPECT_EQ(errorOf(json::parse(R"({"name":"x","nics":[{"network":"a","mac":"01:00:00:00:00:01"}]})")),
            "nics[0].mac: MAC address \"01:00:00:00:00:01\" is a multicast address");
  EXPECT_EQ(errorOf(json::parse(R"({"name":"x","nics":[{"network":"a","mac":"52:54:00:00:00:01"},{"network":"b","mac":"52:54:00:00:00:01"}]})")),
            "nics[1].mac: 52:54:00:00:00:01 is used by another NIC of this domain");
  EXPECT_EQ(errorOf(json::parse(R"({"name":"x","boot":{"initrd":"/i"}})")), "boot.initrd: needs a kernel");
  EXPECT_EQ(errorOf(json::parse(R"({"name":"x","labels":{"Bad":"v"}})")),
            "labels: label key \"Bad\" must start with a lower-case letter or digit");
  EXPECT_EQ(errorOf(json::parse(R"({"name":"x","disks":[{"target":"vda","source":{"path":"/a"}},{"target":"vda","source":{"path":"/b"}}]})")),
            "disks[1].target: \"vda\" is used twice");
  EXPECT_EQ(errorOf(json::parse(R"({"name":"x","type":"lxc"})")),
            "container: required for a domain of type lxc (at least container.rootfs)");
  EXPECT_EQ(errorOf(json::parse(R"({"name":"x","nics":[{"network":"n","port":{"acl":[{"action":"deny","protocol":"icmp","port":"22"}]}}]})")),
            "nics[0].port.acl[0].port: ports need protocol tcp or udp");
  EXPECT_EQ(errorOf(json::parse(R"({"name":"x","vcpus":4,"cpu":{"topology":{"sockets":1,"cores":2}}})")),
            "cpu.topology: 1 sockets x 2 cores x 1 threads is fewer than 4 vcpus");
}

TEST(Domain, ContainerSection) {
  auto d = parseDomain(json::parse(R"({"name":"c1","type":"lxc","container":{"rootfs":{"path":"/srv/c1"},
      "env":{"A":"1"},"mounts":[{"source":"/data","target":"/mnt/data","readonly":false}]},
      "limits":{"pids":64,"cpu_shares":512}})"));
  ASSERT_TRUE(d.ok()) << d.error().message;
  EXPECT_EQ(d->container->init, std::vector<std::string>{"/sbin/init"});
  auto again = parseDomain(formatDomain(*d));
  ASSERT_TRUE(again.ok()) << again.error().message;
  EXPECT_EQ(again->limits.pids, 64);
}

TEST(Network, Validation) {
  auto n = parseNetwork(json::parse(R"({"name":"default","ipv4":"10.70.0.1/24"})"));
  ASSERT_TRUE(n.ok()) << n.error().message;
  EXPECT_EQ(n->dhcpStart, "10.70.0.128");
  EXPECT_EQ(n->dhcpEnd, "10.70.0.254");
  EXPECT_FALSE(parseNetwork(json::parse(R"({"name":"n","ipv4":"10.70.0.0/24"})")).ok());
  EXPECT_FALSE(parseNetwork(json::parse(R"({"name":"n","ipv4":"10.70.0.1/33"})")).ok());
  EXPECT_FALSE(parseNetwork(json::parse(R"({"name":"n"})")).ok());  // nat needs a subnet
  EXPECT_TRUE(parseNetwork(json::parse(R"({"name":"n","mode":"isolated"})")).ok());
  EXPECT_EQ(parseNetwork(json::parse(R"({"name":"n","ipv4":"10.70.0.1/24","dhcp":{"hosts":[{"mac":"52:54:00:00:00:01","ip":"10.80.0.5"}]}})"))
                .error().message,
            "dhcp.hosts[0].ip: 10.80.0.5 is outside 10.70.0.0/24");
}

TEST(Pool, Validation) {
  EXPECT_TRUE(parsePool(json::parse(R"({"name":"default","type":"dir","path":"/var/lib/vmm/images"})")).ok());
  EXPECT_FALSE(parsePool(json::parse(R"({"name":"p","type":"dir"})")).ok());
  EXPECT_FALSE(parsePool(json::parse(R"({"name":"p","type":"iscsi","source":{"host":"127.0.0.1","target":"bad"}})")).ok());
  auto p = parsePool(json::parse(R"({"name":"p","type":"iscsi","source":{"host":"127.0.0.1","target":"iqn.2026-01.org.x:t","username":"u","secret":"s"}})"));
  ASSERT_TRUE(p.ok());
  EXPECT_EQ(formatPool(*p)["source"]["secret"], "********");
  EXPECT_EQ(parseVolumeSpec(json::parse(R"({"name":"v","capacity":0})")).error().message, "capacity: must be greater than 0");
}

// Stored snapshot records are read back only with names that creation would have allowed (a
// snapshot name becomes a QEMU tag and part of overlay file names). Found by fuzz_model_json.
TEST(Snapshot, RecordsWithNamesCreationRefusesAreRefused) {
  json ok = {{"name", "snap-2026-12-03T15-00-00"}, {"domain", "web"}, {"parent", "s1"}};
  EXPECT_TRUE(parseSnapshotRecord(ok).ok());
  for (const char* key : {"name", "domain", "parent"}) {
    json bad = ok;
    bad[key] = "}1";
    auto r = parseSnapshotRecord(bad);
    ASSERT_FALSE(r.ok()) << key;
    EXPECT_EQ(r.error().code, ErrorCode::invalid_argument);
  }
}

TEST(Domain, GraphicsDefaultToAUnixSocketAndTcpGetsAGeneratedPassword) {
  auto d = parseDomain(json::parse(R"({"name":"g","graphics":[{"type":"vnc"},{"type":"spice","listen":"unix"}]})"));
  ASSERT_TRUE(d.ok()) << d.error().message;
  EXPECT_FALSE(d->graphics[0].tcp());
  EXPECT_FALSE(d->graphics[1].tcp());
  EXPECT_EQ(formatDomain(*d)["graphics"][0], json::parse(R"({"type":"vnc","listen":"unix"})"));
  EXPECT_FALSE(generateGraphicsPasswords(*d));  // a socket only root reaches needs none
  EXPECT_TRUE(d->graphics[0].password.empty());
  EXPECT_EQ(errorOf(json::parse(R"({"name":"g","graphics":[{"type":"vnc","port":5901}]})")),
            "graphics[0].port: only with a TCP listen address (the default is a unix socket)");
  EXPECT_EQ(errorOf(json::parse(R"({"name":"g","graphics":[{"type":"vnc","listen":"sock"}]})")).rfind("graphics[0].listen: ", 0), 0u);

  auto tcp = parseDomain(json::parse(
      R"({"name":"t","graphics":[{"type":"vnc","listen":"127.0.0.1"},{"type":"spice","listen":"0.0.0.0","port":5930}]})"));
  ASSERT_TRUE(tcp.ok()) << tcp.error().message;
  EXPECT_TRUE(generateGraphicsPasswords(*tcp));
  EXPECT_EQ(tcp->graphics[0].password.size(), 8u);   // what VNC authentication uses
  EXPECT_EQ(tcp->graphics[1].password.size(), 16u);
  for (const auto& g : tcp->graphics)
    for (char c : g.password) EXPECT_TRUE(std::isalnum(static_cast<unsigned char>(c))) << g.password;
  std::string first = tcp->graphics[0].password;
  EXPECT_FALSE(generateGraphicsPasswords(*tcp));  // a password, given or generated, is kept
  EXPECT_EQ(tcp->graphics[0].password, first);
  auto other = parseDomain(json::parse(R"({"name":"t","graphics":[{"type":"vnc","listen":"127.0.0.1"}]})"));
  ASSERT_TRUE(generateGraphicsPasswords(*other));
  EXPECT_NE(other->graphics[0].password, first);
  EXPECT_EQ(formatDomain(*tcp)["graphics"][0]["password"], "********");
}

TEST(Domain, UserNicsKeepOffTheHostLoopbackUnlessAsked) {
  auto d = parseDomain(json::parse(R"({"name":"n","nics":[{"type":"user"},{"type":"user","host_loopback":true}]})"));
  ASSERT_TRUE(d.ok()) << d.error().message;
  EXPECT_FALSE(d->nics[0].hostLoopback);
  EXPECT_TRUE(d->nics[1].hostLoopback);
  auto out = formatDomain(*d);
  EXPECT_EQ(out["nics"][0]["host_loopback"], false);
  EXPECT_EQ(out["nics"][1]["host_loopback"], true);
  EXPECT_EQ(errorOf(json::parse(R"({"name":"n","nics":[{"network":"default","host_loopback":true}]})")),
            "nics[0].host_loopback: only for NICs of type user");
}
