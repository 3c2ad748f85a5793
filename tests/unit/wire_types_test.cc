// The typed wire objects (api/types): vmmd's writer and libvmmclient's readers agree, field
// projections carry only what was asked, and the readers refuse wrong types with a path.
#include <gtest/gtest.h>

#include "api/types/domain_summary.h"
#include "api/types/json_text.h"

using namespace vmm;

namespace {

wire::DomainSummary sample() {
  wire::DomainSummary s;
  s.name = "web1";
  s.project = "default";
  s.uuid = "00097266-a40d-4c3d-b07a-8250b70f5d40";
  s.type = "qemu";
  s.state = "running";
  s.reason = "booted";
  s.stateSince = "2026-12-05T10:58:58.215Z";
  s.vcpus = 2;
  s.memory = "1GiB";
  s.autostart = true;
  s.labels = {{"tier", "web"}, {"quote\"d", "back\\slash\n"}};
  s.generation = 7;
  s.title = "Front end";
  s.pendingChanges = true;
  return s;
}

}  // namespace

TEST(WireTypes, SummaryTextIsTheKeysInSortedOrder) {
  wire::DomainSummary s = sample();
  s.labels = {{"tier", "web"}};
  EXPECT_EQ(wire::toJson(s),
            R"({"autostart":true,"generation":7,"labels":{"tier":"web"},"memory":"1GiB","name":"web1",)"
            R"("pending_changes":true,"project":"default","reason":"booted","state":"running",)"
            R"("state_since":"2026-12-05T10:58:58.215Z","title":"Front end","type":"qemu",)"
            R"("uuid":"00097266-a40d-4c3d-b07a-8250b70f5d40","vcpus":2})");
  s.title.clear();
  s.stateSince.reset();
  std::string text = wire::toJson(s);
  EXPECT_EQ(text.find("title"), std::string::npos);
  EXPECT_NE(text.find(R"("state_since":null)"), std::string::npos);
}

TEST(WireTypes, SummariesRoundTripThroughWriterAndReader) {
  std::string text = "[" + wire::toJson(sample()) + "," + wire::toJson(wire::DomainSummary{}) + "]";
  auto list = wire::parseDomainSummaries(text);
  ASSERT_TRUE(list.ok()) << list.error().message;
  ASSERT_EQ(list->size(), 2u);
  const auto& a = (*list)[0];
  EXPECT_EQ(a.name, "web1");
  EXPECT_EQ(a.labels.at("quote\"d"), "back\\slash\n");
  EXPECT_EQ(a.stateSince, std::optional<std::string>("2026-12-05T10:58:58.215Z"));
  EXPECT_EQ(a.vcpus, 2);
  EXPECT_EQ(a.generation, 7u);
  EXPECT_TRUE(a.autostart);
  EXPECT_TRUE(a.pendingChanges);
  EXPECT_EQ(a.title, "Front end");
  EXPECT_FALSE((*list)[1].stateSince.has_value());
}

TEST(WireTypes, InvalidUtf8IsReplacedNotFatal) {
  wire::DomainSummary s;
  s.labels = {{"k", std::string("a\xff" "b")}};
  std::string text = "[" + wire::toJson(s) + "]";
  auto list = wire::parseDomainSummaries(text);
  ASSERT_TRUE(list.ok()) << list.error().message;
  EXPECT_EQ((*list)[0].labels.at("k"), "a\xEF\xBF\xBD" "b");
}

TEST(WireTypes, FieldsProjectTheSummary) {
  auto mask = wire::parseSummaryFields("name, state");
  ASSERT_TRUE(mask.ok());
  EXPECT_EQ(*mask, wire::kName | wire::kState);
  EXPECT_EQ(wire::toJson(sample(), *mask), R"({"name":"web1","state":"running"})");
  auto unknown = wire::parseSummaryFields("name,definition");
  ASSERT_FALSE(unknown.ok());
  EXPECT_EQ(unknown.error().code, ErrorCode::invalid_argument);
  EXPECT_NE(unknown.error().message.find("definition"), std::string::npos);
  EXPECT_FALSE(wire::parseSummaryFields(",").ok());
}

TEST(WireTypes, ReaderRefusesWrongTypesWithTheirPath) {
  std::string text = R"([{"name":"a","vcpus":1},{"name":"b","vcpus":"2"}])";
  auto list = wire::parseDomainSummaries(text);
  ASSERT_FALSE(list.ok());
  EXPECT_NE(list.error().message.find("[1].vcpus"), std::string::npos) << list.error().message;
  std::string labels = R"([{"labels":{"k":3}}])";
  auto bad = wire::parseDomainSummaries(labels);
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.error().message.find("[0].labels.k"), std::string::npos) << bad.error().message;
  for (std::string t : {std::string("{}"), std::string("[1]"), std::string("[{}] x"), std::string("[{\"name\":\"\xff\"}]")})
    EXPECT_FALSE(wire::parseDomainSummaries(t).ok()) << t;
}

TEST(WireTypes, ReaderSkipsFieldsOfANewerDaemon) {
  std::string text = R"([{"name":"a","addresses":[{"ip":"10.0.0.2"}],"future":{"x":null}}])";
  auto list = wire::parseDomainSummaries(text);
  ASSERT_TRUE(list.ok()) << list.error().message;
  EXPECT_EQ((*list)[0].name, "a");
}

TEST(WireTypes, RpcReplyIsCutWithoutParsingOrParsedWhole) {
  auto fast = wire::splitRpcReply(R"({"jsonrpc":"2.0","id":42,"result":[{"name":"a"}]})");
  ASSERT_TRUE(fast.ok());
  EXPECT_TRUE(fast->hasId);
  EXPECT_EQ(fast->id, 42);
  EXPECT_EQ(fast->result, R"([{"name":"a"}])");
  EXPECT_TRUE(fast->error.empty());

  // Any other layout (key order, an error, a notification) is parsed whole.
  auto reordered = wire::splitRpcReply(R"({"result":{"a":1},"id":7,"jsonrpc":"2.0"})");
  ASSERT_TRUE(reordered.ok());
  EXPECT_EQ(reordered->id, 7);
  EXPECT_EQ(reordered->result, R"({"a":1})");
  auto error = wire::splitRpcReply(R"({"error":{"code":404,"message":"no"},"id":null,"jsonrpc":"2.0"})");
  ASSERT_TRUE(error.ok());
  EXPECT_TRUE(error->idIsNull);
  EXPECT_EQ(error->error, R"({"code":404,"message":"no"})");
  auto event = wire::splitRpcReply(R"({"jsonrpc":"2.0","method":"event","params":{}})");
  ASSERT_TRUE(event.ok());
  EXPECT_TRUE(event->isNotification);
  EXPECT_FALSE(wire::splitRpcReply("not json").ok());
  EXPECT_FALSE(wire::splitRpcReply(R"({"jsonrpc":"2.0","id":01,"result":[]})").ok()) << "a leading zero is not JSON";

  // A cut line whose middle is not exactly one value gives a result no reader accepts.
  auto two = wire::splitRpcReply(R"({"jsonrpc":"2.0","id":1,"result":[],"error":{}})");
  ASSERT_TRUE(two.ok());
  EXPECT_FALSE(wire::parseDomainSummaries(two->result).ok());
}
