#include "model/image.h"

#include "base/strings.h"
#include "base/time_util.h"
#include "model/names.h"
#include "model/project.h"

namespace vmm::model {

json formatImage(const Image& i) {
  json j = {{"name", i.name},
            {"pool", i.pool},
            {"volume", i.volume},
            {"format", enumName(kDiskFormats, i.format)},
            {"size", i.size},
            {"media", i.media},
            {"os", i.os},
            {"arch", i.arch},
            {"default_user", i.defaultUser},
            {"description", i.description},
            {"source", i.source},
            {"sha256", i.sha256},
            {"created", formatTimestamp(i.createdUs)},
            {"template", i.domainTemplate}};
  if (!i.kernel.empty()) j["kernel"] = i.kernel;
  if (!i.initrd.empty()) j["initrd"] = i.initrd;
  return j;
}

Result<Image> parseImageRecord(const json& j) {
  Image i;
  JsonReader r(j, "image");
  r.required("name", i.name);
  r.required("pool", i.pool);
  r.required("volume", i.volume);
  r.optionalEnum("format", i.format, kDiskFormats);
  int64_t size = 0;
  r.optional("size", size, 0, INT64_MAX);
  i.size = static_cast<uint64_t>(size);
  r.optional("media", i.media);
  r.optional("kernel", i.kernel);
  r.optional("initrd", i.initrd);
  r.optional("os", i.os);
  r.optional("arch", i.arch);
  r.optional("default_user", i.defaultUser);
  r.optional("description", i.description);
  r.optional("source", i.source);
  r.optional("sha256", i.sha256);
  std::string created;
  r.optional("created", created);
  r.optionalAny("template", i.domainTemplate);
  VMM_TRY(r.finish());
  VMM_TRY(validateImageName(i.name));  // a record is read back only with a name import would accept
  if (auto t = parseTimestamp(created)) i.createdUs = *t;
  return i;
}

Status validateImageName(const std::string& name) {
  if (auto st = validateQualifiedName(name, "image name"); !st.ok()) return st.error().wrap("name");
  for (const char* suffix : {"-root", "-seed"})
    if (endsWith(unqualifyName(name), suffix)) return invalidArgument(std::string("name: image names may not end in ") + suffix + " (reserved for the volumes of launched domains)");
  return {};
}

Status validateDomainTemplate(const json& tmpl, bool imageHasKernel) {
  VMM_TRY(domainTemplateProbe(tmpl, imageHasKernel));
  return {};
}

Result<Domain> domainTemplateProbe(const json& tmpl, bool imageHasKernel) {
  if (!tmpl.is_object()) return invalidArgument("template: expected an object");
  for (const char* key : {"name", "uuid"})
    if (tmpl.contains(key)) return invalidArgument(std::string("template: must not contain \"") + key + "\"");
  json probe = tmpl;
  probe["name"] = "template-check";
  if (!probe.contains("type")) probe["type"] = "qemu";
  // The image's own kernel is filled in at launch.
  if (imageHasKernel && !(probe.contains("boot") && probe["boot"].contains("kernel"))) probe["boot"]["kernel"] = "/image/kernel";
  auto d = parseDomain(probe);
  if (!d.ok()) return d.error().wrap("template");
  return d;
}

Result<ImageImportSpec> parseImageImportSpec(const json& j) {
  ImageImportSpec s;
  JsonReader r(j, "");
  r.required("name", s.name);
  r.optional("file", s.file);
  r.optional("url", s.url);
  r.optional("sha256", s.sha256);
  r.optional("kernel", s.kernelFile);
  r.optional("initrd", s.initrdFile);
  r.optional("os", s.os);
  r.optional("arch", s.arch);
  r.optional("default_user", s.defaultUser);
  r.optional("description", s.description);
  r.optionalAny("template", s.domainTemplate);
  VMM_TRY(r.finish());
  VMM_TRY(validateImageName(s.name));
  if (s.file.empty() == s.url.empty()) return invalidArgument("give exactly one of file or url");
  for (auto [path, what] : {std::pair{&s.file, "file"}, {&s.kernelFile, "kernel"}, {&s.initrdFile, "initrd"}})
    if (!path->empty()) {
      VMM_TRY(validateAbsolutePath(*path, what));
    }
  // Whether plain http:// may be used is vmmd's configuration ([images] allow_http), checked at download.
  if (!s.url.empty() && !startsWith(s.url, "http://") && !startsWith(s.url, "https://"))
    return invalidArgument("url: only http:// and https:// URLs are supported");
  s.sha256 = toLower(s.sha256);
  if (!s.sha256.empty() && (s.sha256.size() != 64 || s.sha256.find_first_not_of("0123456789abcdef") != std::string::npos))
    return invalidArgument("sha256: expected 64 hexadecimal digits, got " + quote(s.sha256));
  if (!s.initrdFile.empty() && s.kernelFile.empty()) return invalidArgument("initrd: needs a kernel");
  if (s.description.size() > 4096) return invalidArgument("description: longer than 4096 characters");
  if (s.domainTemplate.is_null()) s.domainTemplate = json::object();
  VMM_TRY(validateDomainTemplate(s.domainTemplate, !s.kernelFile.empty()));
  return s;
}

Result<LaunchSpec> parseLaunchSpec(const json& j) {
  LaunchSpec s;
  JsonReader r(j, "");
  r.required("image", s.image);
  r.optional("name", s.name);
  if (r.has("memory")) {
    uint64_t m = 0;
    r.optionalSize("memory", m);
    s.memory = m;
  } else {
    r.accept("memory");
  }
  r.optional("vcpus", s.vcpus, 1, DomainLimits::kMaxVcpus);
  r.optional("networks", s.networks);
  r.optional("full_copy", s.fullCopy);
  std::string ttl;
  r.optional("ttl", ttl);
  r.optional("remove_on_stop", s.removeOnStop);
  r.optional("labels", s.labels);
  r.optionalAny("cloud_init", s.cloudInit);
  r.optionalAny("customize", s.customize);
  r.optional("start", s.start);
  VMM_TRY(r.finish());
  if (auto st = validateName(s.image, "image name"); !st.ok()) return st.error().wrap("image");
  if (!s.name.empty())
    if (auto st = validateName(s.name, "domain name"); !st.ok()) return st.error().wrap("name");
  if (!ttl.empty()) {
    auto d = parseDuration(ttl);
    if (!d || d->count() <= 0) return invalidArgument("ttl: expected a positive duration like 30m or 2h, got " + quote(ttl));
    s.ttlMs = d->count();
  }
  if (s.memory && (*s.memory < DomainLimits::kMinMemory || *s.memory > DomainLimits::kMaxMemory))
    return invalidArgument("memory: out of range");
  if (s.networks.size() > DomainLimits::kMaxNics) return invalidArgument("networks: too many");
  for (const auto& n : s.networks)
    if (auto st = validateName(n, "network name"); !st.ok()) return st.error().wrap("networks");
  if (!s.cloudInit.is_null() && !s.cloudInit.is_object()) return invalidArgument("cloud_init: expected an object");
  if (!s.customize.is_null() && !s.customize.is_object()) return invalidArgument("customize: expected an object");
  return s;
}

}  // namespace vmm::model
