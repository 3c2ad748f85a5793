// vmctl's human output and terminal escape injection: text from vmmd (some of it written by a
// guest) must not reach the terminal with control characters in it.
#include <gtest/gtest.h>

#include <algorithm>
#include <functional>
#include <iostream>
#include <sstream>

#include "client/vmctl/output.h"
#include "client/vmctl/terminal_safe.h"

namespace vmm::vmctl {
namespace {

const std::vector<std::string> kHostile = {
    "\x1b]0;pwned\x07",  // OSC: retitles the window, ended by BEL
    "\x1b[2J",           // CSI: clears the screen
    "\xc2\x9b" "2J",     // the same with the C1 CSI, U+009B
};

// ESC, BEL, CSI and any other control a terminal acts on; \n and \t are plain text.
bool hasTerminalControl(std::string_view s) {
  for (size_t i = 0; i < s.size(); ++i) {
    auto c = static_cast<unsigned char>(s[i]);
    if ((c < 0x20 && c != '\n' && c != '\t') || c == 0x7f || c == 0x9b) return true;
    if (c == 0xc2 && i + 1 < s.size() && static_cast<unsigned char>(s[i + 1]) < 0xa0) return true;
  }
  return false;
}

struct Captured {
  std::string out, err;
};

// What the printing helpers write, with standard output and error filtered as in vmctl.
Captured captureVmctlOutput(const std::function<void()>& print) {
  std::ostringstream out, err;
  auto* oldOut = std::cout.rdbuf(out.rdbuf());
  auto* oldErr = std::cerr.rdbuf(err.rdbuf());
  {
    TerminalSafeOutput safe;
    print();
  }
  std::cout.rdbuf(oldOut);
  std::cerr.rdbuf(oldErr);
  return {out.str(), err.str()};
}

size_t lineCount(const std::string& s) { return static_cast<size_t>(std::count(s.begin(), s.end(), '\n')); }

TEST(TerminalSafe, ReplacesEscapesBelAndC1Controls) {
  for (const auto& h : kHostile) {
    EXPECT_FALSE(hasTerminalControl(terminalSafe(h))) << testing::PrintToString(terminalSafe(h));
    EXPECT_FALSE(hasTerminalControl(terminalSafeLine(h)));
  }
  EXPECT_EQ(terminalSafe("\x1b[2J"), "\xef\xbf\xbd[2J");
  EXPECT_EQ(terminalSafe("\xc2\x9b" "2J"), "\xef\xbf\xbd" "2J");
}

TEST(TerminalSafe, KeepsTextNewlinesAndTabs) {
  const std::string text = "h\xc3\xa9llo \xe2\x9c\x93 \xf0\x9f\x99\x82 \xc2\xa0nbsp\n\tnext line";
  EXPECT_EQ(terminalSafe(text), text);
  EXPECT_EQ(terminalSafe("boot\r\nok\r\n"), "boot\nok\n");
  EXPECT_EQ(terminalSafeLine("a\nb\tc"), "a\xef\xbf\xbd" "b\xef\xbf\xbd" "c");
}

TEST(TerminalSafe, ReplacesDelCarriageReturnAndInvalidUtf8) {
  for (std::string bad : {"\x7f", "hidden\rshown", "\x9b", "\xc0\x9b", "\xed\xa0\x80", "\xf4\x90\x80\x80", "cut \xe2\x82"}) {
    std::string safe = terminalSafe(bad);
    EXPECT_FALSE(hasTerminalControl(safe)) << testing::PrintToString(bad);
    EXPECT_NE(safe.find("\xef\xbf\xbd"), std::string::npos) << testing::PrintToString(bad);
  }
}

TEST(TerminalSafe, SequencesSplitAcrossWritesAreJudgedWhole) {
  std::ostringstream sink;
  TerminalSafeBuf buf(sink.rdbuf());
  std::ostream out(&buf);
  out << "\xc2" << "\x9b" << "2J|" << "\xc3" << "\xa9|" << "a\r" << "\nb\r";
  buf.finish();
  EXPECT_EQ(sink.str(), "\xef\xbf\xbd" "2J|\xc3\xa9|a\nb\xef\xbf\xbd");
}

TEST(VmctlOutput, TableCellsReachTheTerminalWithoutControls) {
  auto printed = captureVmctlOutput([] {
    Table t({"NAME", "DESCRIPTION"});
    for (const auto& h : kHostile) t.add({"web1", h});
    t.add({"web2", "two\nlines"});
    t.print();
  });
  EXPECT_FALSE(hasTerminalControl(printed.out)) << testing::PrintToString(printed.out);
  EXPECT_EQ(lineCount(printed.out), kHostile.size() + 2);  // a cell cannot add a row
}

TEST(VmctlOutput, FieldsMessagesAndErrorsReachTheTerminalWithoutControls) {
  auto printed = captureVmctlOutput([] {
    std::vector<std::pair<std::string, std::string>> fields;
    for (const auto& h : kHostile) fields.emplace_back("OS", h);
    printFields(fields);
    for (const auto& h : kHostile) std::cout << "Domain " << h << " defined.\n";
    for (const auto& h : kHostile) reportError(internalError("guest agent: " + h));
  });
  EXPECT_FALSE(hasTerminalControl(printed.out)) << testing::PrintToString(printed.out);
  EXPECT_FALSE(hasTerminalControl(printed.err)) << testing::PrintToString(printed.err);
  EXPECT_EQ(lineCount(printed.out), 2 * kHostile.size());
  EXPECT_EQ(lineCount(printed.err), kHostile.size());
}

TEST(VmctlOutput, JsonKeepsItsValuesWithoutRawControls) {
  json value = {{"names", kHostile}, {"del", "\x7f"}, {"latin", "\xc2\xa0\xc3\xa9"}};
  auto printed = captureVmctlOutput([&] { printJson(value); });
  EXPECT_FALSE(hasTerminalControl(printed.out)) << printed.out;
  EXPECT_EQ(json::parse(printed.out), value);
}

TEST(VmctlOutput, RawStreamsAreTheGuestsOwnBytes) {
  auto printed = captureVmctlOutput([] {
    rawStdout() << "\x1b[2J" << std::flush;
    std::cout << "\x1b[2J" << std::flush;
  });
  EXPECT_EQ(printed.out, "\x1b[2J\xef\xbf\xbd[2J");
}

TEST(VmctlOutput, ProjectTableShowsUsageAgainstLimits) {
  json projects = json::array(
      {{{"name", "ci"},
        {"description", "CI runners"},
        {"restrictions", {{"restricted", true}, {"pools", {"default"}}, {"networks", json::array()}, {"images", json::array()}}},
        {"limits", {{"domains", 5}, {"memory", uint64_t{8} << 30}}},
        {"usage", {{"domains", 2}, {"vcpus", 3}, {"memory", uint64_t{1} << 30}, {"disk", 0}, {"running", 1}}}},
       {{"name", "default"},
        {"description", ""},
        {"restrictions", {{"restricted", false}}},
        {"limits", json::object()},
        {"usage", {{"domains", 1}, {"vcpus", 2}, {"memory", uint64_t{256} << 20}, {"disk", 0}, {"running", 0}}}}});
  auto printed = captureVmctlOutput([&] { printProjectTable(projects); });
  EXPECT_EQ(printed.out,
            "NAME     RESTRICTED  DOMAINS  RUNNING  VCPUS  MEMORY     DISK  DESCRIPTION\n"
            "ci       yes         2/5      1        3      1GiB/8GiB  0B    CI runners\n"
            "default  no          1        0        2      256MiB     0B\n");
}

TEST(VmctlOutput, ProjectDescriptionsReachTheTerminalWithoutControls) {
  json projects = json::array();
  for (const auto& h : kHostile) projects.push_back({{"name", "ci"}, {"description", h + "\nsecond line"}});
  auto printed = captureVmctlOutput([&] {
    printProjectTable(projects);
    printProjectInfo(projects[0]);
  });
  EXPECT_FALSE(hasTerminalControl(printed.out)) << testing::PrintToString(printed.out);
  EXPECT_EQ(lineCount(printed.out), 1 + kHostile.size() + 13);  // one line per row and per field
}

TEST(VmctlOutput, EntriesOfOtherProjectsShowTheirProjectAndPlainName) {
  EXPECT_EQ(entryProject({{"name", "_ci_web"}}), "ci");
  EXPECT_EQ(entryName({{"name", "_ci_web"}}), "web");
  EXPECT_EQ(entryProject({{"name", "web"}}), "default");
  EXPECT_EQ(entryName({{"name", "web"}, {"project", "ci"}}), "web");
  EXPECT_EQ(entryProject({{"object", "domains/_ci_web"}}, "object"), "ci");
  EXPECT_EQ(entryName({{"object", "domains/_ci_web"}}, "object"), "domains/web");
}

}  // namespace
}  // namespace vmm::vmctl
