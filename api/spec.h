// The operation table: every call the API offers, with its parameters, access level,
// sync/async nature and HTTP route. Shared by vmmd (which binds handlers to it) and the
// client library (which uses the routes to speak HTTP). One table, two transports.
#pragma once

#include <optional>
#include <string>
#include <vector>

namespace vmm::api {

enum class Access { read, write };

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
};

struct OperationSpec {
  std::string name;        // "domain.start"
  std::string summary;
  Access access = Access::read;
  bool async = false;      // returns an operation (HTTP 202)
  bool cancellable = false;
  std::string object;      // object template for operations and events: "domains/{name}"
  std::vector<ParamSpec> params;
  std::optional<HttpRoute> http;
  // Never waits for a job, a guest or the network: bounded by memory and at most one local
  // state-store commit. The RPC transport runs these on its event loop instead of handing
  // them to a worker (each thread hand-off costs more than the call itself).
  bool quick = false;
};

const std::vector<OperationSpec>& operationSpecs();
const OperationSpec* findSpec(const std::string& name);

}  // namespace vmm::api
