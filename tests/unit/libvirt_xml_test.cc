// libvirt domain XML import/export without I/O beyond reading the committed corpus
// (tests/data/libvirt-xml, made by virt-install): mapping, round trips, the kept remainder, and
// hostile inputs. Comparison with libvirt itself is in tests/e2e/libvirt_xml_e2e_test.cc.
#include <gtest/gtest.h>

#include <filesystem>

#include "base/fs.h"
#include "model/libvirt_xml.h"

using namespace vmm;
using namespace vmm::model;

namespace {

std::vector<std::string> corpus() {
  std::vector<std::string> files;
  for (const auto& e : std::filesystem::directory_iterator(std::string(VMM_SOURCE_DIR) + "/tests/data/libvirt-xml"))
    if (e.path().extension() == ".xml") files.push_back(e.path().string());
  std::sort(files.begin(), files.end());
  return files;
}

std::string read(const std::string& path) {
  auto r = fs::readFile(path, 1 << 20);
  EXPECT_TRUE(r.ok()) << path;
  return r.ok() ? *r : "";
}

bool contains(const std::vector<std::string>& v, const std::string& s) { return std::find(v.begin(), v.end(), s) != v.end(); }

LibvirtImport mustImport(const std::string& xml) {
  auto r = importLibvirtXml(xml);
  EXPECT_TRUE(r.ok()) << r.error().message;
  return r.ok() ? *r : LibvirtImport{};
}

TEST(LibvirtXml, CorpusRoundTripsToTheSameDefinition) {
  auto files = corpus();
  ASSERT_GE(files.size(), 12u);
  for (const auto& f : files) {
    SCOPED_TRACE(f);
    auto first = mustImport(read(f));
    auto xml = exportLibvirtXml(first.domain, true);
    ASSERT_TRUE(xml.ok()) << xml.error().message;
    auto second = mustImport(*xml);
    EXPECT_EQ(formatDomain(first.domain, false).dump(1), formatDomain(second.domain, false).dump(1));
    EXPECT_EQ(first.kept, second.kept);
    auto again = exportLibvirtXml(second.domain, true);
    ASSERT_TRUE(again.ok());
    EXPECT_EQ(*xml, *again);  // export is stable
  }
}

TEST(LibvirtXml, CorpusMapsWhatTheModelHasAndListsTheRest) {
  auto basic = mustImport(read(std::string(VMM_SOURCE_DIR) + "/tests/data/libvirt-xml/basic-ide-kvm.xml"));
  const auto& d = basic.domain;
  EXPECT_EQ(d.name, "basic-ide-kvm");
  EXPECT_EQ(d.type, DriverType::qemu);
  EXPECT_EQ(d.memory, 1024ULL << 20);
  EXPECT_EQ(d.vcpus, 2);
  EXPECT_EQ(d.machine, "q35");
  ASSERT_EQ(d.disks.size(), 1u);
  EXPECT_EQ(d.disks[0].bus, DiskBus::sata);
  EXPECT_EQ(d.disks[0].target, "sda");
  EXPECT_EQ(d.disks[0].source.path, "/var/lib/libvirt/images/basic.qcow2");
  ASSERT_EQ(d.nics.size(), 1u);
  EXPECT_EQ(d.nics[0].network, "default");
  EXPECT_EQ(d.nics[0].mac, "52:54:00:00:00:01");
  EXPECT_EQ(d.nics[0].model, NicModel::e1000);
  ASSERT_EQ(d.graphics.size(), 1u);
  EXPECT_EQ(d.graphics[0].type, GraphicsType::vnc);
  ASSERT_EQ(d.consoles.size(), 1u);
  EXPECT_FALSE(d.guestAgent);
  for (const char* k : {"features", "clock", "pm", "devices/controller", "devices/input", "devices/video"})
    EXPECT_TRUE(contains(basic.kept, k)) << k;
  ASSERT_FALSE(basic.warnings.empty());
  EXPECT_NE(basic.warnings.back().find("kept, not applied by vmm: "), std::string::npos);

  auto spice = mustImport(read(std::string(VMM_SOURCE_DIR) + "/tests/data/libvirt-xml/virtio-bridge-spice.xml"));
  EXPECT_EQ(spice.domain.type, DriverType::test);
  EXPECT_TRUE(spice.domain.guestAgent);
  ASSERT_TRUE(spice.domain.cpu.topology);
  EXPECT_EQ(spice.domain.cpu.topology->cores, 2);
  EXPECT_EQ(spice.domain.cpu.topology->threads, 2);
  EXPECT_EQ(spice.domain.disks[0].cache, DiskCache::none);
  EXPECT_EQ(spice.domain.nics[0].bridge, "br0");

  auto kernel = mustImport(read(std::string(VMM_SOURCE_DIR) + "/tests/data/libvirt-xml/kernel-boot.xml"));
  EXPECT_EQ(kernel.domain.boot.kernel, "/var/lib/vmm/vmlinuz");
  EXPECT_EQ(kernel.domain.boot.cmdline, "console=ttyS0 root=/dev/vda");
  EXPECT_EQ(kernel.domain.disks[0].source.path, "/dev/loop0");
  ASSERT_EQ(kernel.domain.consoles.size(), 1u);
  EXPECT_EQ(kernel.domain.consoles[0].type, ConsoleType::virtio);

  auto uefi = mustImport(read(std::string(VMM_SOURCE_DIR) + "/tests/data/libvirt-xml/uefi-loader.xml"));
  EXPECT_EQ(uefi.domain.boot.firmware, Firmware::uefi);
  EXPECT_TRUE(contains(uefi.kept, "os/loader@readonly"));
  EXPECT_TRUE(contains(uefi.kept, "os/nvram"));

  auto meta = mustImport(read(std::string(VMM_SOURCE_DIR) + "/tests/data/libvirt-xml/metadata-title.xml"));
  EXPECT_EQ(meta.domain.title, "Web server");
  EXPECT_EQ(meta.domain.description, "Serves the intranet");
  EXPECT_TRUE(meta.domain.metadata.contains("libvirt_xml"));
  EXPECT_TRUE(contains(meta.kept, "currentMemory (text)"));
}

TEST(LibvirtXml, MapsNetworkPortsUnitsAndVolumes) {
  auto r = mustImport(R"(<domain type='kvm'>
  <name>net1</name><memory unit='GiB'>2</memory><currentMemory unit='MiB'>2048</currentMemory><vcpu>2</vcpu>
  <cpu mode='custom' match='exact'><model fallback='allow'>Skylake-Client</model><feature policy='require' name='vmx'/></cpu>
  <os><type machine='q35'>hvm</type><boot dev='cdrom'/><boot dev='hd'/></os>
  <on_crash>preserve</on_crash>
  <devices>
    <disk type='volume' device='disk'><driver name='qemu' type='qcow2' discard='unmap'/><source pool='default' volume='web.qcow2'/><target dev='vda' bus='virtio'/></disk>
    <disk type='file' device='cdrom'><source file='/srv/iso/debian.iso'/><target dev='sda' bus='sata'/><readonly/></disk>
    <disk type='network' device='disk'><source protocol='nbd' name='x'><host name='127.0.0.1' port='10809'/></source><target dev='vdb' bus='virtio'/></disk>
    <interface type='bridge'><mac address='52:54:00:aa:bb:cc'/><source bridge='br0'/><model type='virtio'/>
      <vlan trunk='yes'><tag id='42'/><tag id='47' nativeMode='untagged'/></vlan>
      <bandwidth><inbound average='1000' peak='5000' burst='1024'/><outbound average='128'/></bandwidth>
      <link state='up'/></interface>
    <interface type='direct'><mac address='52:54:00:aa:bb:cd'/><source dev='eth0' mode='vepa'/><vlan><tag id='7'/></vlan></interface>
    <channel type='unix'><target type='virtio' name='org.qemu.guest_agent.0'/></channel>
    <graphics type='vnc' port='5901' autoport='no' listen='0.0.0.0' passwd='pw'/>
    <foo bar='1'><baz/></foo>
  </devices>
</domain>)");
  const auto& d = r.domain;
  EXPECT_EQ(d.memory, 2ULL << 30);
  EXPECT_EQ(d.cpu.model, "Skylake-Client");
  EXPECT_EQ(d.onCrash, LifecycleAction::preserve);
  ASSERT_EQ(d.boot.order.size(), 2u);
  EXPECT_EQ(d.boot.order[0], BootDevice::cdrom);
  ASSERT_EQ(d.disks.size(), 2u);  // the network disk is kept whole
  EXPECT_EQ(d.disks[0].source.pool, "default");
  EXPECT_EQ(d.disks[0].source.volume, "web.qcow2");
  EXPECT_EQ(d.disks[1].device, DiskDevice::cdrom);
  EXPECT_TRUE(d.disks[1].readonly);
  ASSERT_EQ(d.nics.size(), 2u);
  const auto& port = d.nics[0].port;
  ASSERT_TRUE(port.vlan);
  EXPECT_EQ(port.vlan->mode, VlanMode::trunk);
  EXPECT_EQ(port.vlan->tags, (std::vector<int>{42, 47}));
  EXPECT_EQ(port.vlan->native, 47);
  ASSERT_TRUE(port.inbound && port.outbound);
  EXPECT_EQ(port.inbound->average, 1000u * 8000);  // libvirt: kilobytes/s
  EXPECT_EQ(port.inbound->peak, 5000u * 8000);
  EXPECT_EQ(port.inbound->burst, 1024u * 1024);    // libvirt: KiB
  EXPECT_EQ(port.outbound->average, 128u * 8000);
  EXPECT_EQ(d.nics[1].type, NicType::direct);
  EXPECT_EQ(d.nics[1].port.vlan->tag, 7);
  EXPECT_TRUE(d.guestAgent);
  EXPECT_EQ(d.graphics[0].port, 5901);
  EXPECT_EQ(d.graphics[0].listen, "0.0.0.0");
  EXPECT_EQ(d.graphics[0].password, "pw");
  for (const char* k : {"cpu/feature", "devices/disk[vda]/driver@discard", "devices/disk", "devices/interface[52:54:00:aa:bb:cc]/link",
                        "devices/foo"})
    EXPECT_TRUE(contains(r.kept, k)) << k;

  auto xml = exportLibvirtXml(d, true);
  ASSERT_TRUE(xml.ok());
  for (const char* s : {"<source pool=\"default\" volume=\"web.qcow2\"", "discard=\"unmap\"", "<tag id=\"47\" nativeMode=\"untagged\"",
                        "<inbound average=\"1000\" peak=\"5000\" burst=\"1024\"", "<link state=\"up\"", "<foo bar=\"1\">",
                        "protocol=\"nbd\"", "<feature policy=\"require\" name=\"vmx\"", "passwd=\"pw\""})
    EXPECT_NE(xml->find(s), std::string::npos) << s << "\n" << *xml;
  EXPECT_EQ(xml->find("vmm-key"), std::string::npos);
  auto noSecrets = exportLibvirtXml(d);
  EXPECT_EQ(noSecrets->find("passwd"), std::string::npos);
  auto again = mustImport(*xml);
  EXPECT_EQ(formatDomain(d, false), formatDomain(again.domain, false));
}

TEST(LibvirtXml, VmmOnlyFieldsTravelInMetadata) {
  auto parsed = parseDomain(json::parse(R"({"name":"m1","memory":"256MiB","labels":{"app":"web"},"metadata":{"owner":"ops"},
    "nics":[{"network":"default","mac":"52:54:00:01:02:03","port":{"isolated":true,"acl":[{"action":"deny","protocol":"tcp","port":"22"}]}}]})"));
  ASSERT_TRUE(parsed.ok()) << parsed.error().message;
  auto xml = exportLibvirtXml(*parsed);
  ASSERT_TRUE(xml.ok());
  EXPECT_NE(xml->find("urn:x-vmm:domain:1"), std::string::npos);
  auto back = mustImport(*xml);
  EXPECT_EQ(back.domain.labels.at("app"), "web");
  EXPECT_EQ(back.domain.metadata["owner"], "ops");
  EXPECT_TRUE(back.domain.nics[0].port.isolated);
  EXPECT_EQ(back.domain.nics[0].port.acl.size(), 1u);
  EXPECT_TRUE(back.kept.empty()) << back.kept[0];
}

TEST(LibvirtXml, ContainersMapToLxcXml) {
  auto parsed = parseDomain(json::parse(R"({"name":"c1","type":"lxc","memory":"128MiB",
    "container":{"rootfs":{"path":"/srv/c1"},"init":["/bin/sh","-c","sleep 1"],"env":{"A":"1"},"privileged":false,"idmap_base":200000,
    "mounts":[{"source":"/srv/data","target":"/data"}]}})"));
  ASSERT_TRUE(parsed.ok()) << parsed.error().message;
  auto xml = exportLibvirtXml(*parsed);
  ASSERT_TRUE(xml.ok());
  auto back = mustImport(*xml);
  EXPECT_EQ(formatDomain(*parsed, false), formatDomain(back.domain, false)) << *xml;
  EXPECT_TRUE(back.kept.empty());

  // vmm's containers are unprivileged by default, libvirt's run as the host's root without
  // <idmap>: a definition keeps its meaning both ways.
  auto defaulted = parseDomain(json::parse(R"({"name":"c2","type":"lxc","memory":"128MiB","container":{"rootfs":{"path":"/srv/c2"}}})"));
  ASSERT_TRUE(defaulted.ok()) << defaulted.error().message;
  EXPECT_FALSE(defaulted->container->privileged);
  auto privileged = defaulted.value();
  privileged.container->privileged = true;
  auto rootXml = exportLibvirtXml(privileged);
  ASSERT_TRUE(rootXml.ok());
  EXPECT_EQ(rootXml->find("<idmap"), std::string::npos) << *rootXml;
  EXPECT_TRUE(mustImport(*rootXml).domain.container->privileged);
}

void expectRefused(const std::string& xml, const std::string& words) {
  auto r = importLibvirtXml(xml);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, ErrorCode::invalid_argument);
  EXPECT_NE(r.error().message.find(words), std::string::npos) << r.error().message;
}

TEST(LibvirtXml, HostileInputsAreRefusedCleanly) {
  expectRefused("<domain type='kvm'><name>x</name><memory>1048576</memory>", "malformed XML");
  expectRefused("<domain type='kvm'><name>x</name></dommain>", "malformed XML");
  expectRefused("", "malformed XML");
  expectRefused("<domain type='kvm'><name>a</name><memory>1048576</memory></domain><domain/>", "one root element");
  std::string laughs = "<?xml version='1.0'?><!DOCTYPE lolz [<!ENTITY lol 'lol'>";
  for (int i = 1; i < 10; ++i) {
    laughs += "<!ENTITY lol" + std::to_string(i) + " '";
    for (int k = 0; k < 10; ++k) laughs += "&lol" + (i > 1 ? std::to_string(i - 1) : std::string()) + ";";
    laughs += "'>";
  }
  laughs += "]><domain type='kvm'><name>&lol9;</name><memory>1048576</memory></domain>";
  expectRefused(laughs, "DOCTYPE");
  expectRefused("<!DOCTYPE d [<!ENTITY x SYSTEM 'file:///etc/passwd'>]><domain type='kvm'><name>&x;</name>"
                "<memory>1048576</memory></domain>",
                "DOCTYPE");
  expectRefused("<!DOCTYPE domain SYSTEM 'http://127.0.0.1:1/evil.dtd'><domain/>", "DOCTYPE");
  std::string big = "<domain type='kvm'><name>big</name><memory>1048576</memory><description>" +
                    std::string(LibvirtXmlLimits::kMaxBytes, 'x') + "</description></domain>";
  expectRefused(big, "larger than 4 MiB");
  std::string deep = "<domain type='kvm'><name>d</name><memory>1048576</memory><devices>";
  for (int i = 0; i < 100000; ++i) deep += "<a>";
  for (int i = 0; i < 100000; ++i) deep += "</a>";
  deep += "</devices></domain>";
  expectRefused(deep, "nested deeper than");
  expectRefused("<network><name>n</name></network>", "root element must be <domain>");
  expectRefused("<domain type='kvm'><name>k</name><memory>1048576</memory><devices><interface type='network'>"
                "<source vmm-key='default'/></interface></devices></domain>",
                "the attribute vmm-key is reserved");
  expectRefused("<domain type='kvm'><name>d</name><memory>1048576</memory><devices/><devices><serial type='pty'/></devices></domain>",
                "<devices> appears 2 times in <domain>");
  expectRefused("<domain type='kvm'><name>d</name><memory>1048576</memory><devices><disk type='file' device='disk'>"
                "<source file='/a.qcow2'/><source file='/b.qcow2'/><target dev='vda'/></disk></devices></domain>",
                "<source> appears 2 times in <disk>");
  expectRefused("<domain type='kvm'><name>u</name><uuid>1be1176c<name>x</name></uuid><memory>1048576</memory></domain>",
                "<uuid> holds elements where a value belongs");
  expectRefused("<domain type='kvm'><name>g</name><memory>1048576</memory><devices><graphics type='vnc' type='-1'/></devices></domain>",
                "attribute \"type\" repeated in <graphics>");
  expectRefused("<domain type='kvm'><name>g</name><memory>1048576</memory><devices><graphics type='vnc' port='-$'/></devices></domain>",
                "port \"-$\" is not a port number");
  expectRefused("<domain type='kvm'><name>g</name><memory>1048576</memory><devices><graphics type='vnc' port='-0'/></devices></domain>",
                "port \"-0\" is not a port number");
  expectRefused("<domain type='kvm'><name>g</name><memory>1048576</memory><devices><graphics type='vnc' port='-1' autoport='ye{'/></devices></domain>",
                "autoport \"ye{\" is neither yes nor no");
  expectRefused("<domain type='kvm'><memory>1048576</memory></domain>", "<name> is required");
  expectRefused("<domain type='kvm'><name>bad name/</name><memory>1048576</memory></domain>", "name");
  expectRefused("<domain type='kvm'><name>m</name><memory unit='KiB'>lots</memory></domain>", "memory");
  expectRefused("<domain type='kvm'><name>m</name><memory>1048576</memory><currentMemory>104rrr8576</currentMemory></domain>",
                "<currentMemory>");
  auto unsupportedType = importLibvirtXml("<domain type='vmware'><name>v</name><memory>1048576</memory></domain>");
  ASSERT_FALSE(unsupportedType.ok());
  EXPECT_EQ(unsupportedType.error().code, ErrorCode::unsupported);
  // Entities that are not declared stay literal text, never file contents.
  auto literal = importLibvirtXml("<domain type='kvm'><name>e</name><description>&x;</description><memory>1048576</memory></domain>");
  ASSERT_TRUE(literal.ok()) << literal.error().message;
  EXPECT_EQ(literal->domain.description, "&x;");
}

// Round-trip breakers the libvirt_xml fuzz target found: import -> export -> import must give
// the same definition and the same XML.
void expectStableRoundTrip(const LibvirtImport& first) {
  auto x1 = exportLibvirtXml(first.domain, true);
  ASSERT_TRUE(x1.ok()) << x1.error().message;
  auto again = mustImport(*x1);
  auto x2 = exportLibvirtXml(again.domain, true);
  ASSERT_TRUE(x2.ok()) << x2.error().message;
  EXPECT_EQ(*x1, *x2);
  EXPECT_EQ(formatDomain(first.domain, false), formatDomain(again.domain, false));
}

TEST(LibvirtXml, InterfaceWithoutAddressGetsOneMacAndKeepsItsRemainder) {
  // <mac> without address (a misspelt attribute): libvirt generates the address at define. The
  // kept attribute must stay with that NIC, not come back as a second, unmodelled <interface>.
  auto imported = mustImport(
      "<domain type='kvm'><name>m</name><memory>1048576</memory><devices>"
      "<interface type='network'><source network='default'/><mac addrers='52:54:00:00:00:0a'/></interface>"
      "<interface type='network'><source network='default'/></interface>"
      "</devices></domain>");
  ASSERT_EQ(imported.domain.nics.size(), 2u);
  EXPECT_FALSE(imported.domain.nics[0].mac.empty());
  EXPECT_NE(imported.domain.nics[0].mac, imported.domain.nics[1].mac);
  auto x = exportLibvirtXml(imported.domain, true);
  ASSERT_TRUE(x.ok());
  EXPECT_NE(x->find("addrers=\"52:54:00:00:00:0a\""), std::string::npos) << *x;
  auto again = mustImport(*x);
  EXPECT_EQ(again.domain.nics.size(), 2u) << *x;
  expectStableRoundTrip(imported);
}

TEST(LibvirtXml, TextBetweenElementsIsKeptInFrontOfThem) {
  // Mixed content means nothing to libvirt; vmm keeps it, in the one place export puts it.
  auto imported = mustImport(
      "<domain type='kvm'>?? <name>t</name>stray<memory>1048576</memory>"
      "<devices>x<emulator>/usr/bin/qemu-system-x86_64</emulator>"
      "<graphics type='vnc'>words<listen type='address' address='127.0.0.1'/></graphics>"
      "<graphics type='vnc'>only words</graphics></devices>"
      "<description>kept text</description></domain>");
  EXPECT_EQ(imported.domain.description, "kept text");
  ASSERT_EQ(imported.domain.graphics.size(), 2u);
  auto x = exportLibvirtXml(imported.domain, true);
  ASSERT_TRUE(x.ok());
  EXPECT_NE(x->find("<domain type=\"kvm\">?? stray"), std::string::npos) << *x;
  EXPECT_NE(x->find("<devices>x"), std::string::npos) << *x;
  expectStableRoundTrip(imported);
  // Blank text from character references is formatting too.
  expectStableRoundTrip(mustImport("<domain type='kvm'><name>b</name><memory>1048576</memory><devices>"
                                   "<graphics type='vnc' tlsPort='-1'>&#10;   </graphics></devices></domain>"));
}

TEST(LibvirtXml, KeptAttributeValuesWinOverExportDefaults) {
  // Export writes match="exact"; an original with another value keeps its own.
  auto imported = mustImport(
      "<domain type='kvm'><name>c</name><memory>1048576</memory>"
      "<cpu mode='custom' match='minimum'><model fallback='forbid'>Skylake-Client</model></cpu></domain>");
  auto x = exportLibvirtXml(imported.domain, true);
  ASSERT_TRUE(x.ok());
  EXPECT_NE(x->find("match=\"minimum\""), std::string::npos) << *x;
  EXPECT_EQ(x->find("match=\"exact\""), std::string::npos) << *x;
  EXPECT_NE(x->find("fallback=\"forbid\""), std::string::npos) << *x;
  expectStableRoundTrip(imported);
  // An unknown attribute before the overridden one: the kept remainder must not depend on the
  // order export merged them in.
  expectStableRoundTrip(mustImport("<domain type='kvm'><name>c</name><memory>1048576</memory>"
                                   "<cpu zzz='1' mode='custom' match='minimum'><model>Skylake-Client</model></cpu></domain>"));
}

TEST(LibvirtXml, LooksLikeXml) {
  EXPECT_TRUE(looksLikeXml("  \n<domain/>"));
  EXPECT_FALSE(looksLikeXml("{\"name\":\"x\"}"));
  EXPECT_FALSE(looksLikeXml(""));
}

}  // namespace

TEST(LibvirtXml, GraphicsWithoutAnAddressBecomeAUnixSocket) {
  auto imported = mustImport(
      "<domain type='kvm'><name>g</name><memory>1048576</memory><devices>"
      "<graphics type='vnc' autoport='yes'/>"
      "<graphics type='spice'><listen type='socket' socket='/somewhere/else.sock'/></graphics>"
      "</devices></domain>");
  ASSERT_EQ(imported.domain.graphics.size(), 2u);
  EXPECT_FALSE(imported.domain.graphics[0].tcp());
  EXPECT_FALSE(imported.domain.graphics[1].tcp());
  auto x = exportLibvirtXml(imported.domain, true);
  ASSERT_TRUE(x.ok());
  EXPECT_NE(x->find("<graphics type=\"vnc\">\n      <listen type=\"socket\" />"), std::string::npos) << *x;
  EXPECT_EQ(x->find("autoport"), std::string::npos) << *x;
  EXPECT_EQ(x->find("/somewhere"), std::string::npos) << *x;  // vmm puts the socket in the domain's runtime directory
  expectStableRoundTrip(imported);

  // An address, or a fixed port (where libvirt listens on 127.0.0.1 by default), is TCP.
  auto tcp = mustImport(
      "<domain type='kvm'><name>t</name><memory>1048576</memory><devices>"
      "<graphics type='vnc' port='5905'/><graphics type='spice' autoport='yes'><listen type='address' address='0.0.0.0'/></graphics>"
      "</devices></domain>");
  ASSERT_EQ(tcp.domain.graphics.size(), 2u);
  EXPECT_EQ(tcp.domain.graphics[0].listen, "127.0.0.1");
  EXPECT_EQ(tcp.domain.graphics[0].port, 5905);
  EXPECT_EQ(tcp.domain.graphics[1].listen, "0.0.0.0");
}
