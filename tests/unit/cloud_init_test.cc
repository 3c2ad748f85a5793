// cloud-init NoCloud seed: rendered YAML (checked textually and parsed back with PyYAML), quoting of hostile strings, validation, and the seed ISO read back with isoinfo.
#include "storage/customize/cloud_init.h"

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "base/fs.h"
#include "base/process.h"
#include "base/strings.h"
#include "tests/support/require.h"
#include "tests/unit/test_util.h"

using namespace vmm;
using namespace vmm::customize;

namespace {

Deadline dl() { return Deadline::after(Millis(30000)); }

const std::string kHostile = "a: b\n- c";

CloudInitSpec sampleSpec() {
  CloudInitSpec s;
  s.instanceId = "iid-web1-0001";
  s.hostname = "web1";
  s.sshAuthorizedKeys = {"ssh-ed25519 AAAAC3Nza default@host"};
  CloudUser alice;
  alice.name = "alice";
  alice.sshAuthorizedKeys = {"ssh-rsa AAAAB3 alice@laptop"};
  alice.sudo = "ALL=(ALL) NOPASSWD:ALL";
  alice.shell = "/bin/bash";
  alice.groups = {"adm", "sudo"};
  s.users = {alice};
  s.packages = {"nginx", "qemu-guest-agent"};
  s.packageUpdate = true;
  s.runcmd = {"systemctl enable --now nginx", kHostile};
  CloudWriteFile f;
  f.path = "/etc/motd";
  f.content = "quote \" backslash \\ tab \t ctl \x01 del \x7f e\xc3\xa9 sep \xe2\x80\xa8 end\n";
  f.owner = "root:root";
  s.writeFiles = {f};
  s.extraMetaData = {{"vmm-domain", kHostile}};
  return s;
}

// Whether PyYAML can be imported: "" or what is missing. scripts/install-deps.sh installs
// python3-yaml; asked separately so that a missing module is never mistaken for a parse error.
std::string pyYamlMissing() {
  RunOptions opts;
  opts.deadline = dl();
  auto r = runCommand({"python3", "-c", "import yaml"}, opts);
  if (!r.ok()) return "python3: " + r.error().message;
  return r->success() ? "" : "python3-yaml (PyYAML): " + r->describe();
}

// PyYAML's view of a YAML document, as JSON; an error with PyYAML's message when the document
// does not parse.
Result<nlohmann::json> parseWithPyYaml(const std::string& yaml) {
  RunOptions opts;
  opts.deadline = dl();
  opts.stdinData = yaml;
  VMM_ASSIGN(auto r, runCommand({"python3", "-c", "import sys, json, yaml; print(json.dumps(yaml.safe_load(sys.stdin.read())))"}, opts));
  if (!r.success()) return invalidArgument("PyYAML rejects the document: " + r.err);
  return nlohmann::json::parse(r.out);
}

std::string isoFile(const std::string& iso, const std::string& name) {
  RunOptions opts;
  opts.deadline = dl();
  auto r = runCommand({"isoinfo", "-R", "-i", iso, "-x", "/" + name}, opts);
  EXPECT_TRUE(r.ok() && r->success()) << (r.ok() ? r->describe() : r.error().message);
  return r.ok() ? r->out : "";
}

}  // namespace

// The parse-back check can fail: broken YAML is an error, not a missing PyYAML.
TEST(CloudInit, PyYamlCheckRejectsBrokenYaml) {
  std::string missing = pyYamlMissing();
  VMM_REQUIRE(missing.empty(), missing);
  auto bad = parseWithPyYaml("#cloud-config\nruncmd:\n  - \"unterminated\n  - [\n");
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.error().message.find("PyYAML rejects"), std::string::npos) << bad.error().message;
  auto good = parseWithPyYaml("a: [1, 2]\n");
  ASSERT_TRUE(good.ok()) << good.error().message;
  EXPECT_EQ((*good)["a"], nlohmann::json({1, 2}));
}

TEST(CloudInit, RendersUserDataMetaDataAndNetwork) {
  auto spec = sampleSpec();
  CloudInterface nic;
  nic.id = "eth0";
  nic.macAddress = "52:54:00:AB:CD:EF";
  nic.addresses = {"192.0.2.10/24", "2001:db8::10/64"};
  nic.gateway4 = "192.0.2.1";
  nic.nameservers = {"192.0.2.53"};
  nic.searchDomains = {"example.test"};
  spec.interfaces = {nic};
  auto seed = renderNoCloudSeed(spec);
  ASSERT_TRUE(seed.ok()) << seed.error().message;

  EXPECT_TRUE(startsWith(seed->userData, "#cloud-config\n"));
  EXPECT_NE(seed->userData.find("hostname: \"web1\"\n"), std::string::npos);
  EXPECT_NE(seed->userData.find("users:\n  - default\n  - name: \"alice\"\n"), std::string::npos);
  EXPECT_NE(seed->userData.find("  - \"a: b\\n- c\"\n"), std::string::npos) << seed->userData;
  EXPECT_EQ(seed->metaData, "instance-id: \"iid-web1-0001\"\nlocal-hostname: \"web1\"\nvmm-domain: \"a: b\\n- c\"\n");
  EXPECT_TRUE(startsWith(seed->networkConfig, "version: 2\nethernets:\n  eth0:\n"));
  EXPECT_NE(seed->networkConfig.find("macaddress: \"52:54:00:ab:cd:ef\""), std::string::npos);
  // No line of the output was started by a value: every "- c" stays inside its quotes.
  for (const auto& line : split(seed->userData, '\n'))
    EXPECT_FALSE(startsWith(std::string(trim(line)), "- c")) << line;

  std::string missing = pyYamlMissing();
  VMM_REQUIRE(missing.empty(), missing);
  auto ud = parseWithPyYaml(seed->userData);
  ASSERT_TRUE(ud.ok()) << ud.error().message << "\n" << seed->userData;
  EXPECT_EQ((*ud)["hostname"], "web1");
  EXPECT_EQ((*ud)["users"][0], "default");
  EXPECT_EQ((*ud)["users"][1]["name"], "alice");
  EXPECT_EQ((*ud)["users"][1]["ssh_authorized_keys"][0], "ssh-rsa AAAAB3 alice@laptop");
  EXPECT_EQ((*ud)["users"][1]["sudo"], "ALL=(ALL) NOPASSWD:ALL");
  EXPECT_EQ((*ud)["ssh_authorized_keys"][0], spec.sshAuthorizedKeys[0]);
  EXPECT_EQ((*ud)["packages"], nlohmann::json({"nginx", "qemu-guest-agent"}));
  EXPECT_EQ((*ud)["package_update"], true);
  EXPECT_EQ((*ud)["runcmd"][1], kHostile);
  EXPECT_EQ((*ud)["write_files"][0]["content"], spec.writeFiles[0].content);
  EXPECT_EQ((*ud)["write_files"][0]["permissions"], "0644");
  auto md = parseWithPyYaml(seed->metaData);
  ASSERT_TRUE(md.ok()) << md.error().message << "\n" << seed->metaData;
  EXPECT_EQ((*md)["instance-id"], "iid-web1-0001");
  EXPECT_EQ((*md)["vmm-domain"], kHostile);
  auto nc = parseWithPyYaml(seed->networkConfig);
  ASSERT_TRUE(nc.ok()) << nc.error().message << "\n" << seed->networkConfig;
  const auto& eth0 = (*nc)["ethernets"]["eth0"];
  EXPECT_EQ(eth0["set-name"], "eth0");
  EXPECT_EQ(eth0["addresses"][1], "2001:db8::10/64");
  EXPECT_EQ(eth0["routes"][0]["via"], "192.0.2.1");
  EXPECT_EQ(eth0["nameservers"]["search"][0], "example.test");
  EXPECT_EQ(eth0["dhcp4"], false);
}

TEST(CloudInit, MinimalSpecAndOverrides) {
  CloudInitSpec s;
  s.instanceId = "i-1";
  auto seed = renderNoCloudSeed(s);
  ASSERT_TRUE(seed.ok()) << seed.error().message;
  EXPECT_EQ(seed->userData, "#cloud-config\n");
  EXPECT_EQ(seed->metaData, "instance-id: \"i-1\"\n");
  EXPECT_EQ(seed->networkConfig, "");  // no file: cloud-init's DHCP fallback

  s.userDataOverride = "#!/bin/sh\necho hi\n";
  s.networkConfigOverride = "version: 2\nethernets: {}\n";
  seed = renderNoCloudSeed(s);
  ASSERT_TRUE(seed.ok());
  EXPECT_EQ(seed->userData, s.userDataOverride);
  EXPECT_EQ(seed->networkConfig, s.networkConfigOverride);

  CloudInterface dhcp;
  dhcp.id = "enp1s0";
  dhcp.dhcp4 = true;
  s.networkConfigOverride.clear();
  s.interfaces = {dhcp};
  seed = renderNoCloudSeed(s);
  ASSERT_TRUE(seed.ok());
  EXPECT_EQ(seed->networkConfig, "version: 2\nethernets:\n  enp1s0:\n    dhcp4: true\n    dhcp6: false\n");
}

TEST(CloudInit, YamlQuote) {
  EXPECT_EQ(*yamlQuote("plain"), "\"plain\"");
  EXPECT_EQ(*yamlQuote("a: b\n- c"), "\"a: b\\n- c\"");
  EXPECT_EQ(*yamlQuote("\"\\"), "\"\\\"\\\\\"");
  EXPECT_EQ(*yamlQuote(std::string("\x00\x1b", 2)), "\"\\x00\\x1B\"");
  EXPECT_EQ(*yamlQuote("\xc2\x85"), "\"\\x85\"");              // NEL
  EXPECT_EQ(*yamlQuote("\xe2\x80\xa8"), "\"\\u2028\"");        // line separator
  EXPECT_EQ(*yamlQuote("caf\xc3\xa9 \xf0\x9f\x99\x82"), "\"caf\xc3\xa9 \xf0\x9f\x99\x82\"");
  EXPECT_FALSE(yamlQuote("\xff").ok());
  EXPECT_FALSE(yamlQuote("\xc0\xaf").ok());      // overlong '/'
  EXPECT_FALSE(yamlQuote("\xed\xa0\x80").ok());  // surrogate
}

TEST(CloudInit, RejectsBadInput) {
  auto bad = [](auto mutate) {
    auto s = sampleSpec();
    mutate(s);
    auto r = renderNoCloudSeed(s);
    EXPECT_FALSE(r.ok());
    return r.ok() ? std::string() : r.error().message;
  };
  EXPECT_NE(bad([](CloudInitSpec& s) { s.instanceId = ""; }).find("instance_id"), std::string::npos);
  EXPECT_NE(bad([](CloudInitSpec& s) { s.hostname = "web_1;reboot"; }).find("hostname"), std::string::npos);
  EXPECT_NE(bad([](CloudInitSpec& s) { s.sshAuthorizedKeys = {"ssh-rsa A\nssh-rsa B"}; }).find("one non-empty line"), std::string::npos);
  EXPECT_NE(bad([](CloudInitSpec& s) { s.users[0].name = "Alice Smith"; }).find("user name"), std::string::npos);
  EXPECT_NE(bad([](CloudInitSpec& s) { s.userDataOverride = "#cloud-config\n"; }).find("override"), std::string::npos);
  EXPECT_NE(bad([](CloudInitSpec& s) { s.writeFiles[0].path = "etc/motd"; }).find("absolute"), std::string::npos);
  EXPECT_NE(bad([](CloudInitSpec& s) { s.writeFiles[0].permissions = "rw-r--r--"; }).find("octal"), std::string::npos);
  EXPECT_NE(bad([](CloudInitSpec& s) { s.packages = {"nginx; rm -rf /"}; }).find("package"), std::string::npos);
  EXPECT_NE(bad([](CloudInitSpec& s) { s.runcmd = {"echo \xff"}; }).find("UTF-8"), std::string::npos);
  EXPECT_NE(bad([](CloudInitSpec& s) { s.extraMetaData = {{"instance-id", "x"}}; }).find("own field"), std::string::npos);
  EXPECT_NE(bad([](CloudInitSpec& s) { s.extraMetaData = {{"a: b", "x"}}; }).find("invalid key"), std::string::npos);
  CloudInterface nic;
  nic.id = "eth0";
  EXPECT_NE(bad([&](CloudInitSpec& s) { s.interfaces = {nic}; }).find("needs DHCP"), std::string::npos);
  nic.dhcp4 = true;
  nic.macAddress = "52:54:00:zz:00:01";
  EXPECT_NE(bad([&](CloudInitSpec& s) { s.interfaces = {nic}; }).find("MAC"), std::string::npos);
  nic.macAddress.clear();
  nic.addresses = {"192.0.2.300/24"};
  EXPECT_NE(bad([&](CloudInitSpec& s) { s.interfaces = {nic}; }).find("address"), std::string::npos);
  nic.addresses = {"192.0.2.3/24"};
  nic.gateway4 = "2001:db8::1";
  EXPECT_NE(bad([&](CloudInitSpec& s) { s.interfaces = {nic}; }).find("gateway"), std::string::npos);
}

TEST(CloudInit, SeedIsoReadsBack) {
  testutil::TempDir dir;
  auto spec = sampleSpec();
  CloudInterface nic;
  nic.id = "eth0";
  nic.dhcp4 = true;
  spec.interfaces = {nic};
  auto seed = renderNoCloudSeed(spec);
  ASSERT_TRUE(seed.ok());
  std::string iso = dir / "seed.iso";
  auto st = writeSeedIso(spec, iso, dl());
  ASSERT_TRUE(st.ok()) << st.error().message;

  RunOptions opts;
  opts.deadline = dl();
  auto info = runCommand({"isoinfo", "-d", "-i", iso}, opts);
  ASSERT_TRUE(info.ok() && info->success());
  EXPECT_NE(info->out.find("Volume id: cidata\n"), std::string::npos) << info->out;
  EXPECT_NE(info->out.find("Joliet"), std::string::npos);
  EXPECT_NE(info->out.find("Rock Ridge"), std::string::npos);
  EXPECT_EQ(isoFile(iso, "user-data"), seed->userData);
  EXPECT_EQ(isoFile(iso, "meta-data"), seed->metaData);
  EXPECT_EQ(isoFile(iso, "network-config"), seed->networkConfig);
  // Only the ISO is left in the directory (no staging directory, no temporary file).
  auto names = fs::listDir(dir.path());
  ASSERT_TRUE(names.ok());
  EXPECT_EQ(*names, std::vector<std::string>{"seed.iso"});

  // Rewriting replaces the ISO whole.
  spec.hostname = "web2";
  ASSERT_TRUE(writeSeedIso(spec, iso, dl()).ok());
  EXPECT_NE(isoFile(iso, "meta-data").find("local-hostname: \"web2\""), std::string::npos);
  EXPECT_EQ(fs::listDir(dir.path())->size(), 1u);
}

TEST(CloudInit, SeedIsoFailuresLeaveNothing) {
  testutil::TempDir dir;
  auto spec = sampleSpec();

  auto st = writeSeedIso(spec, dir / "missing/seed.iso", dl());
  ASSERT_FALSE(st.ok());
  EXPECT_EQ(st.error().code, ErrorCode::not_found);
  EXPECT_NE(st.error().message.find("does not exist"), std::string::npos) << st.error().message;

  st = writeSeedIso(spec, dir.path(), dl());
  ASSERT_FALSE(st.ok());
  EXPECT_EQ(st.error().code, ErrorCode::invalid_argument);

  spec.hostname = "bad host";
  st = writeSeedIso(spec, dir / "seed.iso", dl());
  ASSERT_FALSE(st.ok());
  EXPECT_EQ(st.error().code, ErrorCode::invalid_argument);

  // The tool is killed at an expired deadline: no ISO, no temporary file.
  spec.hostname = "web1";
  st = writeSeedIso(spec, dir / "seed.iso", Deadline::after(Millis(0)));
  ASSERT_FALSE(st.ok());
  EXPECT_EQ(st.error().code, ErrorCode::timeout) << st.error().message;
  EXPECT_TRUE(fs::listDir(dir.path())->empty());

  // A read-only directory: mkdtemp fails, with the reason.
  if (geteuid() != 0) {
    ASSERT_EQ(chmod(dir.path().c_str(), 0555), 0);
    st = writeSeedIso(spec, dir / "seed.iso", dl());
    EXPECT_FALSE(st.ok());
    chmod(dir.path().c_str(), 0755);
  }
  EXPECT_TRUE(fs::listDir(dir.path())->empty());
}
