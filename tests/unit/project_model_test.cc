// Projects in the model: qualified names (the only way objects of two projects can share a
// name), their parsing and merging, and the rewriting of replies for a project's callers.
#include <gtest/gtest.h>

#include "model/domain.h"
#include "model/names.h"
#include "model/project.h"

using namespace vmm;
using namespace vmm::model;
using json = nlohmann::json;

TEST(ProjectNames, QualifiedNamesSplitBackAndKeepToPlainNameRules) {
  EXPECT_EQ(qualifyName("default", "web"), "web");
  EXPECT_EQ(qualifyName("ci", "web"), "_ci_web");
  EXPECT_EQ(projectOf("_ci_web"), "ci");
  EXPECT_EQ(unqualifyName("_ci_web"), "web");
  EXPECT_EQ(projectOf("web"), "default");
  EXPECT_EQ(projectOf("web_1"), "default");
  EXPECT_EQ(unqualifyName("_ci_web-root.qcow2"), "web-root.qcow2");
  EXPECT_EQ(projectOf("_ci_web_1"), "ci");
  EXPECT_EQ(unqualifyName("_ci_web_1"), "web_1");
  // Too short or empty parts are no qualified names.
  EXPECT_EQ(projectOf("__web"), "default");
  EXPECT_EQ(projectOf("_ci_"), "default");
  EXPECT_TRUE(inProject("_ci_web", "ci"));
  EXPECT_FALSE(inProject("_ci_web", "default"));
  EXPECT_FALSE(inProject("_cix_web", "ci"));
}

TEST(ProjectNames, UserNamesCannotBeQualifiedOnes) {
  EXPECT_FALSE(validateName("_ci_web", "domain name").ok());
  EXPECT_TRUE(validateQualifiedName("_ci_web", "domain name").ok());
  EXPECT_FALSE(validateQualifiedName("_CI_web", "domain name").ok()) << "project names are lower-case";
  EXPECT_FALSE(validateQualifiedName("_ci_ web", "domain name").ok());
  EXPECT_FALSE(validateQualifiedName("_ci__web", "domain name").ok()) << "the user's part must start with a letter or digit";
  // The qualified form fits a plain name's length: a project's names are shorter by its prefix.
  std::string longest(63 - 4, 'a');
  EXPECT_TRUE(validateScopedName("ci", longest, "domain name").ok());
  auto tooLong = validateScopedName("ci", longest + "a", "domain name");
  ASSERT_FALSE(tooLong.ok());
  EXPECT_NE(tooLong.error().message.find("at most 59 characters there"), std::string::npos) << tooLong.error().message;
  EXPECT_TRUE(validateScopedName("default", std::string(63, 'a'), "domain name").ok());
  // Domains parse with either form (vmmd keeps qualified ones), never anything else.
  EXPECT_TRUE(parseDomain(json{{"name", "_ci_web"}, {"type", "test"}}).ok());
  EXPECT_FALSE(parseDomain(json{{"name", "_Bad_web"}, {"type", "test"}}).ok());
}

TEST(ProjectNames, ProjectNameRules) {
  EXPECT_TRUE(validateProjectName("ci").ok());
  EXPECT_TRUE(validateProjectName("team-a").ok());
  for (const char* bad : {"", "-a", "A", "a_b", "a.b", "a/b", "abcdefghijklmnopq"}) EXPECT_FALSE(validateProjectName(bad).ok()) << bad;
}

TEST(ProjectNames, RepliesAndMessagesShowTheNamesTheProjectKnows) {
  EXPECT_EQ(unqualifyText("domain _ci_web is not running", "ci"), "domain web is not running");
  EXPECT_EQ(unqualifyText("volume \"_ci_a\" is used by _ci_b, _ci_c", "ci"), "volume \"a\" is used by b, c");
  EXPECT_EQ(unqualifyText("domains/_ci_web", "ci"), "domains/web");
  EXPECT_EQ(unqualifyText("x_ci_web", "ci"), "x_ci_web") << "only at the start of a name";
  EXPECT_EQ(unqualifyText("_ci_web", "default"), "_ci_web");
  json reply = {{"name", "_ci_web"},
                {"object", "domains/_ci_web"},
                {"definition", {{"disks", {{{"source", {{"pool", "default"}, {"volume", "_ci_web-root.qcow2"}}}}}}}},
                {"used_by", {"_ci_a", "b"}},
                {"result", {{"stdout", "_ci_secret stays as the guest printed it"}}}};
  unqualifyJson(reply, "ci");
  EXPECT_EQ(reply["name"], "web");
  EXPECT_EQ(reply["object"], "domains/web");
  EXPECT_EQ(reply["definition"]["disks"][0]["source"]["volume"], "web-root.qcow2");
  EXPECT_EQ(reply["used_by"], json({"a", "b"}));
  EXPECT_EQ(reply["result"]["stdout"], "_ci_secret stays as the guest printed it");
  EXPECT_EQ(projectOfObject("pools/default/volumes/_ci_disk"), "ci");
  EXPECT_EQ(projectOfObject("domains/web"), "default");
  EXPECT_EQ(projectOfObject("operations/8fca"), "default");
}

TEST(ProjectRecords, ParseFormatAndMerge) {
  auto p = parseProject(json{{"name", "ci"},
                             {"description", "CI runners"},
                             {"restrictions", {{"pools", {"default"}}, {"networks", {"isolated"}}}},
                             {"limits", {{"domains", 5}, {"memory", "4GiB"}, {"running", 2}}}});
  ASSERT_TRUE(p.ok()) << p.error().message;
  EXPECT_TRUE(p->restrictions.restricted) << "new projects are restricted unless asked";
  EXPECT_EQ(*p->limits.memory, 4ULL << 30);
  EXPECT_FALSE(p->limits.vcpus.has_value());
  auto again = parseProject(formatProject(*p));
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(formatProject(*again), formatProject(*p));
  auto merged = mergeProject(*p, json{{"limits", {{"domains", nullptr}, {"vcpus", 8}}}, {"description", "x"}});
  ASSERT_TRUE(merged.ok()) << merged.error().message;
  EXPECT_FALSE(merged->limits.domains.has_value());
  EXPECT_EQ(*merged->limits.vcpus, 8);
  EXPECT_EQ(*merged->limits.running, 2) << "keys not named stay";
  EXPECT_EQ(merged->restrictions.pools, std::vector<std::string>{"default"});
  EXPECT_FALSE(mergeProject(*p, json{{"name", "other"}}).ok());
  EXPECT_FALSE(mergeProject(*p, json{{"limits", {{"domains", -1}}}}).ok());
  EXPECT_FALSE(mergeProject(*p, json{{"limits", {{"bogus", 1}}}}).ok());
  EXPECT_FALSE(parseProject(json{{"name", "default"}, {"restrictions", {{"restricted", true}}}}).ok());
  EXPECT_FALSE(parseProject(json{{"name", "ci"}, {"restrictions", {{"pools", {"../x"}}}}}).ok());
  EXPECT_FALSE(parseProject(json{{"name", "ci"}, {"description", "a\x1b[2Jb"}}).ok());
}
