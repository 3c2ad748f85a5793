// The OpenAPI 3 document, generated from the operation table.
#include "api/openapi_schemas.h"
#include "api/registry.h"

namespace vmm::api {

namespace {

json schemaOf(const ParamSpec& p) {
  json s;
  switch (p.type) {
    case ParamType::string: s = {{"type", "string"}}; break;
    case ParamType::integer: s = {{"type", "integer"}}; break;
    case ParamType::boolean: s = {{"type", "boolean"}}; break;
    case ParamType::object: s = {{"type", "object"}}; break;
    case ParamType::array: s = {{"type", "array"}, {"items", {{"type", "string"}}}}; break;
    case ParamType::duration: s = {{"type", "string"}, {"example", "30s"}}; break;
    case ParamType::any: s = json::object(); break;
  }
  if (!p.choices.empty()) s["enum"] = p.choices;
  return s;
}

json errorResponse(const std::string& description) {
  return {{"description", description},
          {"content", {{"application/json", {{"schema", {{"$ref", "#/components/schemas/Error"}}}}}}}};
}

// Every error status vmmd sends, each with the Error body: the ErrorCode table (base/result.cc)
// and the protocol's own refusals (api/http/http_server.cc, http_wire.cc). Any route can meet
// the protocol's; 412 is domain.update's If-Match.
const std::vector<std::pair<std::string, std::string>>& errorStatuses() {
  static const std::vector<std::pair<std::string, std::string>> statuses = {
      {"400", "invalid argument, malformed request"},
      {"401", "no, unknown, expired or revoked token"},
      {"403", "the token's role is below the operation's (x-vmm-role), or the call names a host path or device below admin"},
      {"404", "no such object or endpoint"},
      {"405", "the path exists, but not with this method"},
      {"408", "the request head or body did not arrive in time"},
      {"409", "conflict with the object's state, or cancelled"},
      {"411", "a chunked request body (send Content-Length)"},
      {"412", "If-Match generation mismatch"},
      {"413", "request body too large, or a project limit reached"},
      {"414", "request line too long"},
      {"415", "a Content-Encoding other than identity"},
      {"417", "an Expect other than 100-continue"},
      {"421", "a Host this server does not answer to ([http] allowed_hosts)"},
      {"431", "request head too large"},
      {"500", "internal error"},
      {"501", "unsupported by this host or driver"},
      {"503", "unavailable: a driver missing on this host, or vmmd too busy"},
      {"504", "timeout"}};
  return statuses;
}

json errorRef(const std::string& status) { return {{"$ref", "#/components/responses/Error" + status}}; }

void addErrors(json& responses, bool withPrecondition = false) {
  for (const auto& [status, description] : errorStatuses())
    if (status != "412" || withPrecondition) responses[status] = errorRef(status);
}

json errorComponents() {
  json out = json::object();
  for (const auto& [status, description] : errorStatuses()) out["Error" + status] = errorResponse(description);
  return out;
}

json jsonContent(json schema) { return {{"application/json", {{"schema", std::move(schema)}}}}; }

// An asynchronous call's 202: the operation, its result typed as the call's `returns` (or a
// note where the result is too large to keep here).
json operationOf(const std::string& returns) {
  json result = {{"anyOf", {returnsSchema(returns), {{"$ref", "#/components/schemas/ResultTooLarge"}},
                            {{"type", "object"}, {"nullable", true}, {"enum", {nullptr}}}}}};
  return {{"allOf", {{{"$ref", "#/components/schemas/Operation"}}, {{"type", "object"}, {"properties", {{"result", result}}}}}}};
}

json withSuccess(json responses, const json& success) {
  for (auto it = success.begin(); it != success.end(); ++it) responses[it.key()] = it.value();
  return responses;
}

json pathParam(const std::string& name, const std::string& description) {
  return {{"name", name}, {"in", "path"}, {"required", true}, {"description", description}, {"schema", {{"type", "string"}}}};
}
json projectParam() {
  return {{"name", "project"}, {"in", "query"}, {"required", false}, {"description", "the project to act in"}, {"schema", {{"type", "string"}}}};
}

}  // namespace

json Registry::openapi() const {
  json paths = json::object();
  for (const auto& spec : operationSpecs()) {
    if (!spec.http) continue;
    const auto& route = *spec.http;
    json op = {{"operationId", spec.name},
               {"summary", spec.summary},
               {"tags", {spec.name.substr(0, spec.name.find('.'))}},
               {"x-vmm-role", roleName(spec.role)}};
    json parameters = json::array();
    json bodyProps = json::object();
    json bodyRequired = json::array();
    for (const auto& p : spec.params) {
      if (p.in == ParamIn::path || p.in == ParamIn::query) {
        parameters.push_back({{"name", p.name},
                              {"in", p.in == ParamIn::path ? "path" : "query"},
                              {"required", p.in == ParamIn::path || p.required},
                              {"description", p.description},
                              {"schema", schemaOf(p)}});
      } else if (p.name != route.bodyParam) {
        json ps = schemaOf(p);
        ps["description"] = p.description;
        bodyProps[p.name] = ps;
        if (p.required) bodyRequired.push_back(p.name);
      }
    }
    if (!route.ifMatchParam.empty())
      parameters.push_back({{"name", "If-Match"},
                            {"in", "header"},
                            {"required", false},
                            {"description", "the generation (ETag) the update is based on"},
                            {"schema", {{"type", "string"}}}});
    if (!parameters.empty()) op["parameters"] = parameters;
    if (!route.bodyParam.empty()) {
      json content = jsonContent(route.bodySchema.empty() ? json{{"type", "object"}} : json{{"$ref", "#/components/schemas/" + route.bodySchema}});
      if (route.xmlBody) content["application/xml"] = {{"schema", {{"type", "string"}}}};
      op["requestBody"] = {{"required", true}, {"content", content}};
    } else if (!bodyProps.empty()) {
      json schema = {{"type", "object"}, {"properties", bodyProps}, {"additionalProperties", false}};
      if (!bodyRequired.empty()) schema["required"] = bodyRequired;
      op["requestBody"] = {{"required", !bodyRequired.empty()}, {"content", {{"application/json", {{"schema", schema}}}}}};
    }
    json responses = json::object();
    if (spec.async) {
      responses["202"] = {{"description", "accepted: the operation that does the work; once it succeeded, its result is " + route.returns},
                          {"headers", {{"Location", {{"schema", {{"type", "string"}}}}}}},
                          {"content", jsonContent(operationOf(route.returns))}};
    } else {
      responses[std::to_string(route.status)] = {{"description", "success"}, {"content", jsonContent(returnsSchema(route.returns))}};
      if (!route.xmlReply.empty())  // with Accept: application/xml
        responses[std::to_string(route.status)]["content"]["application/xml"] = {{"schema", {{"type", "string"}}}};
    }
    addErrors(responses, !route.ifMatchParam.empty());
    op["responses"] = responses;
    std::string method = route.method;
    for (auto& c : method) c = static_cast<char>(tolower(c));
    paths[route.path][method] = op;
  }
  json streamErrors = json::object();
  addErrors(streamErrors);
  paths["/v1/events"]["get"] = {
      {"operationId", "events.stream"},
      {"summary", "Server-Sent Events: every event as it happens; slow readers get an events.overflow event and are disconnected. "
                  "operation.output events reach operators and admins only, audit and token events admins only; the "
                  "stream ends within a second of its token's revocation or expiry"},
      {"x-vmm-role", "read"},
      {"parameters",
       {{{"name", "types"}, {"in", "query"}, {"schema", {{"type", "string"}}}, {"description", "comma-separated type prefixes (domain, operation, ...)"}},
        {{"name", "object"}, {"in", "query"}, {"schema", {{"type", "string"}}}, {"description", "only events of this object (domains/web1)"}},
        projectParam()}},
      {"responses",
       withSuccess(streamErrors, {{"200", {{"description", "an event stream: each event's `data:` line is an Event (JSON)"},
                                           {"content", {{"text/event-stream", {{"schema", {{"type", "string"}}},
                                                                               {"x-vmm-event", {{"$ref", "#/components/schemas/Event"}}}}}}}}}})}};
  // Byte streams, served by the transport rather than the operation table.
  json poolAndName = {pathParam("pool", "the pool's name"), pathParam("name", "the volume's name"), projectParam()};
  json octets = {{"application/octet-stream", {{"schema", {{"type", "string"}, {"format", "binary"}}}}}};
  paths["/v1/pools/{pool}/volumes/{name}/content"]["get"] = {
      {"operationId", "volume.download"},
      {"summary", "Download a volume's bytes; Content-Length is the volume's size"},
      {"x-vmm-role", "operator"},
      {"parameters", poolAndName},
      {"responses", withSuccess(streamErrors, {{"200", {{"description", "the volume's bytes"}, {"content", octets}}}})}};
  paths["/v1/pools/{pool}/volumes/{name}/content"]["put"] = {
      {"operationId", "volume.upload"},
      {"summary", "Replace a volume's content with the request body (Content-Length required); "
                  "the volume changes only when every byte arrived"},
      {"x-vmm-role", "operator"},
      {"parameters", poolAndName},
      {"requestBody", {{"required", true}, {"content", octets}}},
      {"responses", withSuccess(streamErrors, {{"200", {{"description", "the volume"}, {"content", jsonContent(returnsSchema("Volume"))}}}})}};
  json consoleParams = {pathParam("name", "the domain's name"), projectParam()};
  paths["/v1/domains/{name}/console"]["get"] = {
      {"operationId", "domain.console"},
      {"summary", "The console's output as a chunked byte stream"},
      {"x-vmm-role", "operator"},
      {"parameters", consoleParams},
      {"responses", withSuccess(streamErrors, {{"200", {{"description", "the console's output as it comes"}, {"content", octets}}}})}};
  paths["/v1/domains/{name}/console"]["post"] = {
      {"operationId", "domain.console_input"},
      {"summary", "Send the request body to the console as keyboard input"},
      {"x-vmm-role", "operator"},
      {"parameters", consoleParams},
      {"requestBody", {{"required", true}, {"content", octets}}},
      {"responses", withSuccess(streamErrors, {{"204", {{"description", "written"}}}})}};
  paths["/v1/openapi.json"]["get"] = {
      {"operationId", "openapi"},
      {"summary", "This document"},
      {"x-vmm-role", "read"},
      {"responses", withSuccess(streamErrors, {{"200", {{"description", "OpenAPI 3.0 document"}, {"content", jsonContent({{"type", "object"}})}}}})}};
  paths["/metrics"]["get"] = {
      {"operationId", "metrics"},
      {"summary", "Prometheus metrics"},
      {"x-vmm-role", "read"},
      {"responses", withSuccess(streamErrors, {{"200", {{"description", "Prometheus text format 0.0.4"},
                                                        {"content", {{"text/plain", {{"schema", {{"type", "string"}}}}}}}}}})}};

  return {{"openapi", "3.0.3"},
          {"info", {{"title", "vmm HTTP API"}, {"version", "1"}, {"description", "One host's virtual machines and containers. Bearer-token authentication."}}},
          {"servers", {{{"url", "/"}}}},
          {"components",
           {{"schemas", openapiSchemas()},
            {"responses", errorComponents()},
            {"securitySchemes", {{"bearer", {{"type", "http"}, {"scheme", "bearer"}}}}}}},
          {"security", {{{"bearer", json::array()}}}},
          {"paths", paths}};
}

}  // namespace vmm::api
