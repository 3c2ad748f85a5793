// The OpenAPI 3 document, generated from the operation table.
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
    if (spec.name == "domain.update")
      parameters.push_back({{"name", "If-Match"},
                            {"in", "header"},
                            {"required", false},
                            {"description", "the generation (ETag) the update is based on"},
                            {"schema", {{"type", "string"}}}});
    if (!parameters.empty()) op["parameters"] = parameters;
    if (!route.bodyParam.empty()) {
      json content = {{"application/json", {{"schema", {{"type", "object"}}}}}};
      if (spec.name == "domain.create" || spec.name == "domain.update") content["application/xml"] = {{"schema", {{"type", "string"}}}};
      op["requestBody"] = {{"required", true}, {"content", content}};
    } else if (!bodyProps.empty()) {
      json schema = {{"type", "object"}, {"properties", bodyProps}, {"additionalProperties", false}};
      if (!bodyRequired.empty()) schema["required"] = bodyRequired;
      op["requestBody"] = {{"required", !bodyRequired.empty()}, {"content", {{"application/json", {{"schema", schema}}}}}};
    }
    json responses = json::object();
    if (spec.async) {
      responses["202"] = {{"description", "accepted: the operation that does the work"},
                          {"headers", {{"Location", {{"schema", {{"type", "string"}}}}}}},
                          {"content", {{"application/json", {{"schema", {{"$ref", "#/components/schemas/Operation"}}}}}}}};
    } else {
      responses[std::to_string(route.status)] = {{"description", "success"},
                                                 {"content", {{"application/json", {{"schema", {{"type", "object"}}}}}}}};
      if (spec.name == "domain.xml")  // with Accept: application/xml
        responses[std::to_string(route.status)]["content"]["application/xml"] = {{"schema", {{"type", "string"}}}};
    }
    responses["400"] = errorResponse("invalid argument");
    responses["401"] = errorResponse("no or unknown token");
    responses["403"] = errorResponse("read-only token for a write operation");
    responses["404"] = errorResponse("not found");
    responses["409"] = errorResponse("conflict with the object's state");
    if (spec.name == "domain.update") responses["412"] = errorResponse("If-Match generation mismatch");
    responses["500"] = errorResponse("internal error");
    op["responses"] = responses;
    std::string method = route.method;
    for (auto& c : method) c = static_cast<char>(tolower(c));
    paths[route.path][method] = op;
  }
  paths["/v1/events"]["get"] = {
      {"operationId", "events.stream"},
      {"summary", "Server-Sent Events: every event as it happens; slow readers get an events.overflow event and are disconnected. "
                  "operation.output events reach operators and admins only, audit and token events admins only; the "
                  "stream ends within a second of its token's revocation or expiry"},
      {"x-vmm-role", "read"},
      {"parameters",
       {{{"name", "types"}, {"in", "query"}, {"schema", {{"type", "string"}}}, {"description", "comma-separated type prefixes (domain, operation, ...)"}},
        {{"name", "object"}, {"in", "query"}, {"schema", {{"type", "string"}}}, {"description", "only events of this object (domains/web1)"}}}},
      {"responses", {{"200", {{"description", "text/event-stream"}}}}}};
  // Byte streams, served by the transport rather than the operation table.
  json poolAndName = {{{"name", "pool"}, {"in", "path"}, {"required", true}, {"schema", {{"type", "string"}}}},
                      {{"name", "name"}, {"in", "path"}, {"required", true}, {"schema", {{"type", "string"}}}}};
  paths["/v1/pools/{pool}/volumes/{name}/content"]["get"] = {
      {"operationId", "volume.download"},
      {"summary", "Download a volume's bytes; Content-Length is the volume's size"},
      {"x-vmm-role", "operator"},
      {"parameters", poolAndName},
      {"responses", {{"200", {{"description", "application/octet-stream"}}}, {"404", errorResponse("no such pool or volume")}}}};
  paths["/v1/pools/{pool}/volumes/{name}/content"]["put"] = {
      {"operationId", "volume.upload"},
      {"summary", "Replace a volume's content with the request body (Content-Length required); "
                  "the volume changes only when every byte arrived"},
      {"x-vmm-role", "operator"},
      {"parameters", poolAndName},
      {"requestBody", {{"required", true}, {"content", {{"application/octet-stream", {{"schema", {{"type", "string"}, {"format", "binary"}}}}}}}}},
      {"responses", {{"200", {{"description", "the volume"}}}, {"400", errorResponse("short or oversized body")},
                     {"404", errorResponse("no such pool or volume")}, {"409", errorResponse("the volume is busy or used by a domain")}}}};
  paths["/v1/domains/{name}/console"]["get"] = {
      {"operationId", "domain.console"},
      {"summary", "The console's output as a chunked byte stream; POST sends keyboard input"},
      {"x-vmm-role", "operator"},
      {"parameters", {{{"name", "name"}, {"in", "path"}, {"required", true}, {"schema", {{"type", "string"}}}}}},
      {"responses", {{"200", {{"description", "application/octet-stream"}}}}}};
  paths["/v1/openapi.json"]["get"] = {{"operationId", "openapi"}, {"summary", "This document"}, {"x-vmm-role", "read"},
                                      {"responses", {{"200", {{"description", "OpenAPI 3.0 document"}}}}}};
  paths["/metrics"]["get"] = {{"operationId", "metrics"}, {"summary", "Prometheus metrics"}, {"x-vmm-role", "read"},
                              {"responses", {{"200", {{"description", "text/plain; version=0.0.4"}}}}}};

  json schemas = {
      {"Error",
       {{"type", "object"},
        {"properties",
         {{"error",
           {{"type", "object"},
            {"properties",
             {{"code", {{"type", "integer"}, {"description", "the HTTP status"}}},
              {"kind", {{"type", "string"}, {"example", "not-found"}}},
              {"message", {{"type", "string"}}}}}}}}}}},
      {"Operation",
       {{"type", "object"},
        {"properties",
         {{"id", {{"type", "string"}}},
          {"kind", {{"type", "string"}}},
          {"object", {{"type", "string"}}},
          {"status", {{"type", "string"}, {"enum", {"pending", "running", "succeeded", "failed", "cancelled"}}}},
          {"progress", {{"type", "object"}}},
          {"error", {{"type", "object"}, {"nullable", true}}},
          {"result", {{"nullable", true}}},
          {"created", {{"type", "string"}, {"format", "date-time"}}},
          {"updated", {{"type", "string"}, {"format", "date-time"}}},
          {"cancellable", {{"type", "boolean"}}}}}}}};
  return {{"openapi", "3.0.3"},
          {"info", {{"title", "vmm HTTP API"}, {"version", "1"}, {"description", "One host's virtual machines and containers. Bearer-token authentication."}}},
          {"servers", {{{"url", "/"}}}},
          {"components",
           {{"schemas", schemas},
            {"securitySchemes", {{"bearer", {{"type", "http"}, {"scheme", "bearer"}}}}}}},
          {"security", {{{"bearer", json::array()}}}},
          {"paths", paths}};
}

}  // namespace vmm::api
