// The operation table: every call the API offers, with its parameters, access level,
// sync/async nature and HTTP route. Shared by vmmd (which binds handlers to it) and the
// client library (which uses the routes to speak HTTP). One table, two transports.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace vmm::api {

// What a principal may do, and the least a call needs. Ordered: each role may do what the ones
// before it may.
//   read     - see domains, volumes, networks, operations and events; never guest output
//   operate  - ("operator" in text) manage domains, volumes, images, snapshots and operations,
//              exec, consoles and transfers - without host paths or host-side devices
//   admin    - everything, pools, networks and tokens too: an admin is root on the host
enum class Role { read, operate, admin };
std::string_view roleName(Role r);
std::optional<Role> parseRole(std::string_view text);

enum class ParamType { string, integer, boolean, object, array, any, duration };
std::string_view paramTypeName(ParamType t);

enum class ParamIn { body, path, query };

struct ParamSpec {
  std::string name;
  ParamType type = ParamType::string;
  bool required = false;
  std::string description;
  ParamIn in = ParamIn::body;        // where HTTP carries it
  std::vector<std::string> choices;  // allowed values (strings)
};

struct HttpRoute {
  std::string method;      // GET, POST, PUT, DELETE
  std::string path;        // "/v1/domains/{name}/start"
  std::string bodyParam;   // when set, the whole request body is this parameter
  int status = 200;        // success status of a synchronous call (201 for creations)
  // What a success returns, a schema of api/openapi_schemas.cc: the body of a synchronous call,
  // the result of an asynchronous call's operation. "Pool", a list "Pool[]", "Snapshot?" when
  // it may be null. Required: the OpenAPI document and its unit test hold every route to it.
  std::string returns{};
  std::string bodySchema{};  // the schema of the bodyParam, when set ("DomainDefinition")
  // HTTP-only forms of a call, so the transport and the document need no operation names:
  bool xmlBody = false;          // the bodyParam may come as libvirt XML (Content-Type application/xml)
  std::string xmlReply{};        // with Accept: application/xml, this field of the reply is the body
  std::string ifMatchParam{};    // an If-Match header's generation becomes this parameter
};

// Where a transport runs a call's handler; set on each row of the table (spec.cc).
//
// The rule: a call is `quick` only when it does no I/O and takes no job. It reads in-memory
// state under short mutexes and returns: no file, socket, child process, driver or guest call,
// no state-store commit (sqlite with synchronous=FULL is an fsync), no stat of a host path, no
// waiting for an object's job. Quick calls run inline on the transport's event loop (a thread
// hand-off costs more than such a call), so breaking the rule freezes every client of that
// loop - and deadlocks it when the handler waits for something only the loop can deliver (a
// QMP greeting). Everything else is a `call` and runs on the call pool. A `wait` blocks until
// something happens elsewhere (operation.wait, up to an hour): it runs on its own pool within
// per-principal caps, so that waiting clients never hold the threads that calls and
// operations need.
enum class Lane { call, quick, wait };

struct OperationSpec {
  std::string name;        // "domain.start"
  std::string summary;
  Role role = Role::read;  // the least role the call needs
  bool async = false;      // returns an operation (HTTP 202)
  bool cancellable = false;
  std::string object;      // object template for operations and events: "domains/{name}"
  std::vector<ParamSpec> params;
  std::optional<HttpRoute> http;
  Lane lane = Lane::call;  // see the rule above
};

const std::vector<OperationSpec>& operationSpecs();
const OperationSpec* findSpec(const std::string& name);

}  // namespace vmm::api
