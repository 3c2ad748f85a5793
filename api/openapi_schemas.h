// The component schemas of the OpenAPI document: the objects the API sends and takes, as the
// handlers and model formatters write them (OpenAPI 3.0: `nullable`, no `type: "null"`).
#pragma once

#include <nlohmann/json.hpp>
#include <string>
#include <string_view>

namespace vmm::api {

// Every schema under #/components/schemas, by name.
nlohmann::json openapiSchemas();

// The schema of an HttpRoute::returns value: "Pool" (a $ref), "Pool[]" (an array of them),
// "Snapshot?" (the object or null). Empty for a value that names no component schema.
nlohmann::json returnsSchema(std::string_view returns);

// The component a returns value refers to ("Pool" for "Pool[]" and "Pool?").
std::string returnsComponent(std::string_view returns);

}  // namespace vmm::api
