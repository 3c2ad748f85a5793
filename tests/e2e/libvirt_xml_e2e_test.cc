// libvirt domain XML against libvirt itself and through a live vmmd.
// - Corpus (tests/data/libvirt-xml, made by virt-install): each file is imported and exported;
//   the export must pass virt-xml-validate and be accepted by libvirt's test driver, and what
//   libvirt keeps of our export must equal, field by field, what it keeps of the original.
// - The qemu/kvm corpus files defined in a vmmd with the QEMU driver; vmmd's dumpxml of each
//   must be accepted by libvirt's QEMU driver (qemu:///system of a private libvirtd).
// - vmmd: vmctl define FILE.xml / vmctl dumpxml, POST with Content-Type application/xml,
//   GET .../xml, and hostile XML refused with nothing defined.
#include <gtest/gtest.h>
#include <httplib.h>

#include <filesystem>
#include <pugixml.hpp>
#include <regex>
#include <set>

#include "base/fs.h"
#include "base/process.h"
#include "base/strings.h"
#include "model/libvirt_xml.h"
#include "tests/support/host_tools.h"
#include "tests/support/require.h"
#include "tests/support/vmmd_process.h"

using namespace vmm;
using nlohmann::json;
using testutil::VmmdProcess;

namespace {

std::string dataDir() { return std::string(VMM_SOURCE_DIR) + "/tests/data/libvirt-xml"; }

std::vector<std::string> corpus() {
  std::vector<std::string> files;
  for (const auto& e : std::filesystem::directory_iterator(dataDir()))
    if (e.path().extension() == ".xml") files.push_back(e.path().string());
  std::sort(files.begin(), files.end());
  return files;
}

class TempDir {
 public:
  TempDir() {
    char tmpl[] = "/tmp/vmm-libvirt-xml-XXXXXX";
    path = ::mkdtemp(tmpl);
  }
  ~TempDir() { (void)fs::removeTree(path); }
  std::string path;
};

Result<CommandResult> run(const std::vector<std::string>& argv) {
  RunOptions opts;
  opts.deadline = Deadline::after(Millis(60000));
  return runCommand(argv, opts);
}

// Every attribute and text of the document as "path@attr=value" / "path=text", elements
// numbered among their same-named siblings: /domain/devices/disk[1]/target@dev=vdb.
void flatten(const pugi::xml_node& n, const std::string& path, std::set<std::string>& out) {
  for (auto a : n.attributes()) out.insert(path + "@" + a.name() + "=" + a.value());
  std::map<std::string, int> seen;
  for (auto c : n.children()) {
    if (c.type() == pugi::node_pcdata || c.type() == pugi::node_cdata) {
      out.insert(path + "=" + std::string(trim(c.value())));
    } else if (c.type() == pugi::node_element) {
      std::string p = path + "/" + c.name() + "[" + std::to_string(seen[c.name()]++) + "]";
      out.insert(p);
      flatten(c, p, out);
    }
  }
}

std::set<std::string> fieldsOf(const std::string& xml) {
  pugi::xml_document doc;
  EXPECT_TRUE(doc.load_string(xml.c_str())) << xml;
  std::set<std::string> out;
  flatten(doc.document_element(), "/domain", out);
  return out;
}

// What our export may add to what libvirt keeps of the original: the values vmm makes
// explicit (disk driver, format and cache; the graphics listen address, or the socket that
// replaces libvirt's default address).
const std::regex kAllowedExtra(
    R"(/domain/devices\[0\]/disk\[\d+\]/driver\[0\](@(name|type|cache)=.*)?|)"
    R"(/domain/devices\[0\]/graphics\[\d+\](@listen=.*|/listen\[0\]@address=.*|/listen\[0\]@type=socket))");
// What it may drop: a display with no address (libvirt: its default listen address, any port)
// is a unix socket in vmm, which has no port.
const std::regex kAllowedLost(R"(/domain/devices\[0\]/graphics\[\d+\](@port=-1|@autoport=yes|/listen\[0\]@type=address))");

TEST(LibvirtXmlCorpus, ExportValidatesAndLibvirtKeepsTheSameFields) {
  TempDir tmp;
  auto files = corpus();
  ASSERT_GE(files.size(), 12u);
  size_t compared = 0;
  for (const auto& f : files) {
    SCOPED_TRACE(f);
    auto original = fs::readFile(f, 1 << 20);
    ASSERT_TRUE(original.ok());
    auto imported = model::importLibvirtXml(*original);
    ASSERT_TRUE(imported.ok()) << imported.error().message;
    auto xml = model::exportLibvirtXml(imported->domain, true);
    ASSERT_TRUE(xml.ok()) << xml.error().message;
    std::string exported = tmp.path + "/" + imported->domain.name + ".xml";
    ASSERT_TRUE(fs::writeFileAtomic(exported, *xml).ok());

    auto valid = run({"virt-xml-validate", exported, "domain"});
    ASSERT_TRUE(valid.ok());
    EXPECT_EQ(valid->exitCode, 0) << valid->out << valid->err << *xml;

    // One virsh process: the test driver's state lives as long as its connection.
    const std::string& name = imported->domain.name;
    auto virsh = run({"virsh", "-q", "-c", "test:///default",
                      "define " + f + "; dumpxml " + name + "; undefine " + name + "; define " + exported + "; dumpxml " + name});
    ASSERT_TRUE(virsh.ok());
    ASSERT_EQ(virsh->exitCode, 0) << virsh->err << *xml;
    std::vector<std::string> dumps;
    for (size_t at = 0; (at = virsh->out.find("<domain", at)) != std::string::npos;) {
      size_t end = virsh->out.find("</domain>", at);
      ASSERT_NE(end, std::string::npos);
      dumps.push_back(virsh->out.substr(at, end + 9 - at));
      at = end;
    }
    ASSERT_EQ(dumps.size(), 2u) << virsh->out;
    auto theirs = fieldsOf(dumps[0]), ours = fieldsOf(dumps[1]);
    for (const auto& field : theirs) {
      if (!ours.count(field)) {
        EXPECT_TRUE(std::regex_match(field, kAllowedLost)) << "lost: " << field << "\n" << *xml;
      }
    }
    for (const auto& field : ours) {
      if (!theirs.count(field)) {
        EXPECT_TRUE(std::regex_match(field, kAllowedExtra)) << "added: " << field;
      }
    }
    compared += theirs.size();
  }
  std::cout << "[ corpus ] " << files.size() << " files, " << compared << " libvirt fields compared\n";
}

// vmm's export of every qemu/kvm corpus file, defined in libvirt's QEMU driver: each file is
// defined in a vmmd with the QEMU driver (which refuses what QEMU could not run, such as IDE
// on q35), dumped with vmctl dumpxml, and given to `virsh -c qemu:///system define` of a
// private libvirtd (libvirt_private_define.sh: its own mount namespace, started and stopped
// by pid, nothing of the host's libvirt seen or changed).
TEST(LibvirtQemuDriver, DefinesVmmsExportOfEveryQemuCorpusFile) {
  std::string missing = testutil::missingTools({"libvirtd"}, "libvirt-daemon-system");
  if (missing.empty()) missing = testutil::missingTools({"virsh"}, "libvirt-clients");
  if (missing.empty()) missing = testutil::missingTools({"unshare"}, "util-linux");
  if (missing.empty()) missing = testutil::missingRoot("a mount namespace and libvirtd");
  VMM_REQUIRE(missing.empty(), missing);
  VmmdProcess vmmd("", {"--drivers", "qemu"});
  ASSERT_TRUE(vmmd.start().ok()) << vmmd.log();
  std::vector<std::string> exports;
  for (const auto& f : corpus()) {
    auto text = fs::readFile(f, 1 << 20);
    ASSERT_TRUE(text.ok());
    pugi::xml_document doc;
    ASSERT_TRUE(doc.load_string(text->c_str()));
    std::string type = doc.document_element().attribute("type").value();
    if (type != "kvm" && type != "qemu") continue;
    SCOPED_TRACE(f);
    std::string name = doc.document_element().child_value("name");
    auto r = vmmd.vmctl({"define", f});
    ASSERT_EQ(r.exitCode, 0) << r.err;
    r = vmmd.vmctl({"dumpxml", name});
    ASSERT_EQ(r.exitCode, 0) << r.err;
    exports.push_back(vmmd.dir() + "/" + name + ".xml");
    ASSERT_TRUE(fs::writeFileAtomic(exports.back(), r.out).ok());
  }
  ASSERT_GE(exports.size(), 5u) << "qemu/kvm files in the corpus";
  std::vector<std::string> argv{std::string(VMM_SOURCE_DIR) + "/tests/e2e/libvirt_private_define.sh"};
  argv.insert(argv.end(), exports.begin(), exports.end());
  RunOptions opts;
  opts.deadline = Deadline::after(Millis(120000));
  auto r = runCommand(argv, opts);
  ASSERT_TRUE(r.ok()) << r.error().message;
  ASSERT_EQ(r->exitCode, 0) << r->out << r->err;
  for (const auto& e : exports) EXPECT_NE(r->out.find("defined " + e + "\n"), std::string::npos) << r->out << r->err;
  std::cout << "[ qemu:///system ] " << exports.size() << " exports defined and undefined\n";
}

class XmlE2E : public ::testing::Test {
 protected:
  void SetUp() override {
    vmmd = std::make_unique<VmmdProcess>();
    ASSERT_TRUE(vmmd->start().ok()) << vmmd->log();
    auto c = vmmd->connect();
    ASSERT_TRUE(c.ok());
    auto admin = (*c)->call("token.create", {{"name", "admin"}, {"role", "admin"}});
    ASSERT_TRUE(admin.ok());
    token = (*admin)["token"];
  }
  void TearDown() override {
    if (HasFailure()) std::cerr << "---- vmmd log ----\n" << vmmd->log() << "\n";
  }
  httplib::Client http() {
    httplib::Client c("127.0.0.1", vmmd->httpPort());
    c.set_read_timeout(60, 0);
    c.set_write_timeout(60, 0);
    c.set_bearer_token_auth(token.c_str());
    return c;
  }
  size_t domainCount() { return json::parse(vmmd->vmctl({"list", "--all", "-o", "json"}).out).size(); }

  std::unique_ptr<VmmdProcess> vmmd;
  std::string token;
};

TEST_F(XmlE2E, VmctlDefineXmlThenDumpxmlValidates) {
  auto r = vmmd->vmctl({"define", dataDir() + "/devices-rng-watchdog-tpm.xml"});
  ASSERT_EQ(r.exitCode, 0) << r.err;
  EXPECT_EQ(r.out, "Domain devices-rng-watchdog-tpm defined.\n");
  EXPECT_NE(r.err.find("warning: kept, not applied by vmm: "), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("devices/tpm"), std::string::npos) << r.err;
  r = vmmd->vmctl({"dumpxml", "devices-rng-watchdog-tpm"});
  ASSERT_EQ(r.exitCode, 0) << r.err;
  for (const char* s : {"<watchdog model=\"i6300esb\" action=\"reset\"", "<tpm model=\"tpm-crb\"", "<rng model=\"virtio\""})
    EXPECT_NE(r.out.find(s), std::string::npos) << s;
  std::string file = vmmd->dir() + "/dump.xml";
  ASSERT_TRUE(fs::writeFileAtomic(file, r.out).ok());
  auto valid = run({"virt-xml-validate", file, "domain"});
  ASSERT_TRUE(valid.ok());
  EXPECT_EQ(valid->exitCode, 0) << valid->err << r.out;
  // The dump defines again under another name and gives the same definition.
  std::string again = std::regex_replace(r.out, std::regex("<name>[^<]*</name>"), "<name>copy</name>");
  again = std::regex_replace(again, std::regex("<uuid>[^<]*</uuid>"), "");
  again = std::regex_replace(again, std::regex("52:54:00:00:00:07"), "52:54:00:00:01:07");
  ASSERT_EQ(vmmd->vmctl({"define", "-"}, again).exitCode, 0);
  auto a = json::parse(vmmd->vmctl({"dumpjson", "devices-rng-watchdog-tpm"}).out);
  auto b = json::parse(vmmd->vmctl({"dumpjson", "copy"}).out);
  for (auto* j : {&a, &b}) {
    j->erase("name");
    j->erase("uuid");
    (*j)["nics"][0].erase("mac");
  }
  EXPECT_EQ(a, b);
}

TEST_F(XmlE2E, HttpXmlInAndOut) {
  auto original = fs::readFile(dataDir() + "/multi-nic-disk.xml", 1 << 20);
  ASSERT_TRUE(original.ok());
  auto c = http();
  auto res = c.Post("/v1/domains", *original, "application/xml");
  ASSERT_TRUE(res);
  ASSERT_EQ(res->status, 201) << res->body;
  auto body = json::parse(res->body);
  EXPECT_EQ(body["name"], "multi-nic-disk");
  ASSERT_TRUE(body.contains("warnings"));
  EXPECT_EQ(body["definition"]["nics"].size(), 3u);
  res = c.Get("/v1/domains/multi-nic-disk/xml", {{"Accept", "application/xml"}});
  ASSERT_TRUE(res);
  ASSERT_EQ(res->status, 200);
  EXPECT_EQ(res->get_header_value("Content-Type"), "application/xml");
  EXPECT_EQ(res->body.find("passwd"), std::string::npos);  // secrets stay out, as in virsh dumpxml
  EXPECT_NE(res->body.find("<source bridge=\"virbr1\""), std::string::npos) << res->body;
  res = c.Get("/v1/domains/multi-nic-disk/xml");
  ASSERT_TRUE(res);
  EXPECT_EQ(json::parse(res->body)["name"], "multi-nic-disk");
  res = c.Get("/v1/domains/nosuch/xml", {{"Accept", "application/xml"}});
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 404);
}

TEST_F(XmlE2E, HostileXmlIsRefusedAndDefinesNothing) {
  auto c = http();
  std::string laughs = "<?xml version='1.0'?><!DOCTYPE lolz [<!ENTITY lol 'lol'>";
  for (int i = 1; i < 10; ++i) {
    laughs += "<!ENTITY lol" + std::to_string(i) + " '";
    for (int k = 0; k < 10; ++k) laughs += "&lol" + (i > 1 ? std::to_string(i - 1) : std::string()) + ";";
    laughs += "'>";
  }
  laughs += "]><domain type='test'><name>&lol9;</name><memory>1048576</memory></domain>";
  const std::vector<std::string> hostile = {
      laughs,
      "<!DOCTYPE d [<!ENTITY x SYSTEM 'file:///etc/passwd'>]><domain type='test'><name>x</name><description>&x;</description>"
      "<memory>1048576</memory></domain>",
      "<domain type='test'><name>m</name><memory>1048576</memory>",
      "<domain type='test'><name>" + std::string(3000, 'a') + "</name><memory>1048576</memory></domain>",
      "<!DOCTYPE domain SYSTEM 'file:///etc/passwd'><domain type='test'><name>dtd</name><memory>1048576</memory></domain>",
      "<domain type='vmware'><name>v</name><memory>1048576</memory></domain>",
  };
  for (const auto& xml : hostile) {
    auto res = c.Post("/v1/domains", xml, "application/xml");
    ASSERT_TRUE(res);
    bool unsupportedType = xml.find("vmware") != std::string::npos;
    EXPECT_EQ(res->status, unsupportedType ? 501 : 400) << res->body;
  }
  std::string deep = "<domain type='test'><name>deep</name><memory>1048576</memory><devices>";
  for (int i = 0; i < 5000; ++i) deep += "<a>";
  for (int i = 0; i < 5000; ++i) deep += "</a>";
  deep += "</devices></domain>";
  auto res = c.Post("/v1/domains", deep, "application/xml");
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 400);
  EXPECT_NE(res->body.find("nested deeper"), std::string::npos) << res->body;

  // 100 MB: refused with 413 after at most the body limit is kept (the rest is drained).
  const size_t huge = 100u << 20;
  std::string chunk = "<domain type='test'><description>" + std::string(64 << 10, 'x');
  res = c.Post("/v1/domains", huge,
               [&](size_t offset, size_t length, httplib::DataSink& sink) {
                 size_t n = std::min({length, chunk.size(), huge - offset});
                 return sink.write(chunk.data(), n);
               },
               "application/xml");
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 413);

  // Through vmctl (RPC) too.
  std::string file = vmmd->dir() + "/laughs.xml";
  ASSERT_TRUE(fs::writeFileAtomic(file, laughs).ok());
  auto r = vmmd->vmctl({"define", file});
  EXPECT_EQ(r.exitCode, 2) << r.err;
  EXPECT_NE(r.err.find("DOCTYPE"), std::string::npos) << r.err;
  EXPECT_EQ(domainCount(), 0u);
}

}  // namespace
