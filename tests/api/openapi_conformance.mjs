// The OpenAPI document against independent tools and against what vmmd really sends:
//   node tests/api/openapi_conformance.mjs BUILD_DIR
// 1. swagger-parser validates the document (OpenAPI 3.0 schema, $refs, operation ids).
// 2. A vmmd of its own (test driver, private state, HTTP on a free loopback port) gets one or
//    more objects of each kind a non-root test can make; every response of every call the test
//    makes, errors too, is validated by ajv against the schema the document declares for that
//    path, method and status; a status the document does not declare fails.
// 3. Every GET operation with a JSON answer must have been answered with a success once.
// Closes with "N passed, N failed" (one check per validated response, plus the document's).
import { spawn, spawnSync } from "node:child_process";
import { createRequire } from "node:module";
import fs from "node:fs";
import net from "node:net";
import os from "node:os";
import path from "node:path";

const build = path.resolve(process.argv[2] ?? "");
if (!process.argv[2]) {
  console.error("usage: node openapi_conformance.mjs BUILD_DIR");
  process.exit(2);
}
const tools = path.join(build, "npm-tools", "package.json");
if (!fs.existsSync(tools)) {
  console.error(`openapi_conformance: ${tools} is missing: run scripts/install-npm-tools.sh ${build}`);
  process.exit(1);
}
const require = createRequire(tools);
const SwaggerParser = require("@apidevtools/swagger-parser");
const Ajv = require("ajv");
const addFormats = require("ajv-formats");

let passed = 0;
const failures = [];
function fail(what) {
  failures.push(what);
  console.log("FAIL " + what);
}

// ---- vmmd

function freePort() {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.on("error", reject);
    srv.listen(0, "127.0.0.1", () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
  });
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), "vmm-openapi-"));
let vmmd = null;

async function startVmmd() {
  const config = path.join(tmp, "empty.toml");
  fs.writeFileSync(config, "");
  const port = await freePort();
  const log = fs.openSync(path.join(tmp, "vmmd.log"), "w");
  vmmd = spawn(path.join(build, "app", "vmmd"),
    ["--config", config, "--state-dir", path.join(tmp, "state"), "--run-dir", path.join(tmp, "run"),
     "--listen", `127.0.0.1:${port}`, "--drivers", "test", "--default-network", "no", "--default-pool", "no",
     "--log-level", "warn"], { stdio: ["ignore", log, log] });
  const sock = path.join(tmp, "run", "vmmd.sock");
  const deadline = Date.now() + 20000;
  while (!fs.existsSync(sock)) {
    if (vmmd.exitCode !== null || Date.now() > deadline)
      throw new Error("vmmd did not start:\n" + fs.readFileSync(path.join(tmp, "vmmd.log"), "utf8"));
    await sleep(50);
  }
  const made = spawnSync(path.join(build, "client", "vmctl"), ["-c", sock, "token", "create", "conformance", "--role", "admin"],
    { encoding: "utf8", timeout: 20000 });
  if (made.status !== 0) throw new Error("vmctl token create: " + made.stderr);
  return { base: `http://127.0.0.1:${port}`, token: made.stdout.trim() };
}

async function stopVmmd() {
  if (vmmd && vmmd.exitCode === null) {
    vmmd.kill("SIGTERM");
    const deadline = Date.now() + 20000;
    while (vmmd.exitCode === null && vmmd.signalCode === null && Date.now() < deadline) await sleep(50);
    if (vmmd.exitCode === null && vmmd.signalCode === null) vmmd.kill("SIGKILL");
  }
  fs.rmSync(tmp, { recursive: true, force: true });
}

// ---- the document and its schemas

// ajv takes the OpenAPI 3.0 schemas as they are (it knows `nullable`); each component is added
// under its own id so that $refs resolve.
function schemaValidator(doc) {
  const ajv = new Ajv({ strict: true, allErrors: true });
  addFormats(ajv);
  ajv.addKeyword("example");
  const rewrite = (v) => {
    if (Array.isArray(v)) return v.map(rewrite);
    if (v && typeof v === "object") {
      const out = {};
      for (const [k, x] of Object.entries(v))
        out[k] = k === "$ref" ? x.replace("#/components/schemas/", "vmm-") : rewrite(x);
      return out;
    }
    return v;
  };
  for (const [name, schema] of Object.entries(doc.components.schemas)) ajv.addSchema(rewrite(schema), "vmm-" + name);
  const compiled = new Map();
  return (schema, value) => {
    const key = JSON.stringify(schema);
    if (!compiled.has(key)) compiled.set(key, ajv.compile(rewrite(schema)));
    const validate = compiled.get(key);
    return validate(value) ? null : ajv.errorsText(validate.errors, { separator: "; " });
  };
}

// Fields the server sent that the schema does not name: a schema that lets unknown fields
// through would otherwise pass anything. Returns "field.path" strings.
function undeclaredFields(doc, valid, schema, value, at = "") {
  if (schema?.$ref) schema = doc.components.schemas[schema.$ref.split("/").pop()];
  if (!schema || value === null || typeof value !== "object") return [];
  if (schema.anyOf) {
    const branch = schema.anyOf.find((b) => !valid(b, value));
    return branch ? undeclaredFields(doc, valid, branch, value, at) : [];
  }
  if (Array.isArray(value))
    return schema.items ? value.flatMap((v, i) => undeclaredFields(doc, valid, schema.items, v, `${at}[${i}]`)) : [];
  const parts = [schema, ...(schema.allOf ?? []).map((b) => (b.$ref ? doc.components.schemas[b.$ref.split("/").pop()] : b))];
  const props = Object.assign({}, ...parts.map((p) => p.properties ?? {}));
  const extra = parts.find((p) => p.additionalProperties !== undefined)?.additionalProperties;
  if (!parts.some((p) => p.properties) && extra === undefined) return [];  // a free-form object
  const out = [];
  for (const [k, v] of Object.entries(value)) {
    const sub = props[k] ?? (typeof extra === "object" ? extra : undefined);
    if (!sub && extra !== true) out.push(at + "." + k);
    else out.push(...undeclaredFields(doc, valid, sub, v, at + "." + k));
  }
  return out;
}

function routeOf(doc, method, urlPath) {
  const parts = urlPath.split("?")[0].split("/");
  for (const [template, item] of Object.entries(doc.paths)) {
    const t = template.split("/");
    if (t.length !== parts.length) continue;
    if (t.every((seg, i) => (seg.startsWith("{") && seg.endsWith("}")) || seg === parts[i]) && item[method])
      return { template, op: item[method] };
  }
  return null;
}

function responseOf(doc, op, status) {
  let r = op.responses[String(status)];
  if (r && r.$ref) r = doc.components.responses[r.$ref.split("/").pop()];
  return r;
}

// ---- the run

const doc0 = await (async () => {
  const server = await startVmmd();
  return server;
})().catch(async (e) => {
  console.error(String(e.stack || e));
  await stopVmmd();
  process.exit(1);
});
const { base, token } = doc0;

async function raw(method, urlPath, body, headers = {}) {
  const init = { method, headers: { Authorization: "Bearer " + token, ...headers } };
  if (init.headers.Authorization === null) delete init.headers.Authorization;
  if (body !== undefined) {
    init.body = typeof body === "string" ? body : JSON.stringify(body);
    init.headers["Content-Type"] ??= "application/json";
  }
  const res = await fetch(base + urlPath, init);
  const text = await res.text();
  return { status: res.status, text, type: res.headers.get("content-type") ?? "" };
}

let doc, check;
function ok(what) {
  passed++;
  console.log("ok   " + what);
}
function undeclared(schema, value) {
  const fields = undeclaredFields(doc, check, schema, value);
  return fields.length ? "fields the schema does not name: " + [...new Set(fields)].slice(0, 20).join(", ") : null;
}
const answered = new Set();  // operationIds answered with a success

// One call: its answer is validated against the document (path, method, status, schema).
async function api(method, urlPath, body, headers) {
  const r = await raw(method, urlPath, body, headers);
  const what = `${method} ${urlPath} -> ${r.status}`;
  const route = routeOf(doc, method.toLowerCase(), urlPath);
  if (!route) {
    // A method the path does not have: 405 with the Error body.
    const pathKnown = ["get", "put", "post", "delete", "patch"].some((m) => routeOf(doc, m, urlPath));
    const err = r.status !== 405 || !pathKnown ? `status ${r.status} for a method the document does not have`
                                               : check({ $ref: "#/components/schemas/Error" }, JSON.parse(r.text));
    if (err) fail(`${what}: ${err}`);
    else ok(what);
    return r;
  }
  const declared = responseOf(doc, route.op, r.status);
  if (!declared) {
    fail(`${what}: status not declared for ${route.op.operationId} (${Object.keys(route.op.responses).join(", ")})`);
    return r;
  }
  if (r.status >= 200 && r.status < 300) {
    answered.add(route.op.operationId);
    // What the server took, the document must take too.
    const request = route.op.requestBody?.content?.["application/json"]?.schema;
    if (request && body !== undefined && typeof body !== "string") {
      const err = check(request, body);
      if (err) fail(`${what}: the server took a request body the document refuses: ${err}\n  body: ${JSON.stringify(body).slice(0, 400)}`);
      else ok(`${what}: request body`);
    }
  }
  const media = declared.content?.["application/json"];
  if (!media) return r;
  if (!r.type.startsWith("application/json")) {
    fail(`${what}: Content-Type ${r.type}, the document says application/json`);
    return r;
  }
  r.body = JSON.parse(r.text);
  const err = check(media.schema, r.body) ?? undeclared(media.schema, r.body);
  if (err) fail(`${what}: does not match ${JSON.stringify(media.schema).slice(0, 200)}: ${err}\n  body: ${r.text.slice(0, 600)}`);
  else ok(what);
  return r;
}

// Waits for an operation and validates its end against the 202 schema of the call that
// started it (the result typed as that call returns).
async function finished(accepted, startedBy) {
  if (accepted.status !== 202) {
    fail(`${startedBy}: expected 202, got ${accepted.status}: ${accepted.text}`);
    return null;
  }
  const done = await api("GET", `/v1/operations/${accepted.body.id}/wait?timeout=30s`);
  const [method, ...rest] = startedBy.split(" ");
  const route = routeOf(doc, method.toLowerCase(), rest.join(" "));
  const schema202 = route.op.responses["202"].content["application/json"].schema;
  const err = check(schema202, done.body) ?? undeclared(schema202, done.body);
  if (err) fail(`${startedBy}: the finished operation does not match its 202 schema: ${err}\n  body: ${done.text.slice(0, 600)}`);
  else ok(`${startedBy}: finished operation ${done.body.status}`);
  if (done.body?.status !== "succeeded") console.log(`note: ${startedBy} ended ${done.body?.status}: ${JSON.stringify(done.body?.error)}`);
  return done.body;
}

// Operations that answer with a success only on host resources a test makes as root: the
// leases of an active network (a bridge and dnsmasq). Their errors are still checked.
const needsRoot = new Set(["network.leases"]);

async function run() {
  const fetched = await raw("GET", "/v1/openapi.json");
  doc = JSON.parse(fetched.text);
  try {
    await SwaggerParser.validate(structuredClone(doc));
    passed++;
  } catch (e) {
    fail("swagger-parser: " + e.message);
  }
  check = schemaValidator(doc);
  for (const [p, item] of Object.entries(doc.paths))
    for (const [m, op] of Object.entries(item)) {
      if (!op["x-vmm-role"]) fail(`${m.toUpperCase()} ${p}: no x-vmm-role`);
      const success = Object.keys(op.responses).filter((s) => s.startsWith("2"));
      if (success.length !== 1) fail(`${m.toUpperCase()} ${p}: ${success.length} success statuses`);
      const ok = op.responses[success[0]];
      if (ok && !ok.content && success[0] !== "204") fail(`${m.toUpperCase()} ${p}: its success has no content`);
    }
  await api("GET", "/v1/openapi.json");
  await api("GET", "/v1/host");

  // Objects of every kind a test without root-only resources can make.
  const poolDir = path.join(tmp, "pool");
  await api("POST", "/v1/projects", { name: "oa-proj", description: "conformance", limits: { domains: 10, memory: "8GiB" } });
  await api("PUT", "/v1/projects/oa-proj", { description: "changed" });
  await api("POST", "/v1/tokens", { name: "oa-read", role: "read", expires: "1d", description: "conformance" });
  await api("POST", "/v1/tokens", { name: "oa-bound", role: "operator", project: "oa-proj" });
  await api("POST", "/v1/pools?build=true", { name: "oa-pool", type: "dir", path: poolDir, labels: { t: "1" } });
  await api("POST", "/v1/pools/oa-pool/refresh");
  await api("POST", "/v1/pools/oa-pool/volumes", { name: "oa-disk", capacity: "16M", format: "raw" });
  await api("POST", "/v1/pools/oa-pool/volumes", { name: "oa-q", capacity: "16M", format: "qcow2" });
  await api("POST", "/v1/pools/oa-pool/volumes/oa-q/resize", { capacity: "32M" });
  await finished(await api("POST", "/v1/pools/oa-pool/volumes/oa-disk/clone", { target: "oa-copy", linked: false }),
    "POST /v1/pools/oa-pool/volumes/oa-disk/clone");
  await finished(await api("POST", "/v1/pools/oa-pool/volumes/oa-copy/wipe"), "POST /v1/pools/oa-pool/volumes/oa-copy/wipe");
  await api("POST", "/v1/networks?start=false",
    { name: "oa-net", mode: "isolated", ipv4: "192.168.231.1/24", dhcp: { enabled: true }, labels: { t: "1" } });

  await api("POST", "/v1/domains", {
    name: "oa-web", type: "test", title: "web", vcpus: 2, memory: "256MiB", labels: { tier: "web" },
    disks: [{ source: { pool: "oa-pool", volume: "oa-q" } }], nics: [{ type: "user" }],
    lifecycle: { on_crash: "destroy" }, metadata: { owner: "conformance" },
  });
  await api("POST", "/v1/domains?start=true", { name: "oa-db", type: "test", memory: 134217728 });
  await api("POST", "/v1/domains?project=oa-proj", { name: "oa-in-proj", type: "test" });
  await api("POST", "/v1/domains", { name: "oa-bad", type: "test", colour: "red" });  // 400: unknown field
  const def = (await api("GET", "/v1/domains/oa-web")).body?.definition;
  if (def) await api("PUT", "/v1/domains/oa-web", { ...def, vcpus: 1 }, { "If-Match": "\"1\"" });
  await api("PUT", "/v1/domains/oa-web", def, { "If-Match": "\"1\"" });  // 412: stale
  await api("POST", "/v1/domains/oa-web/disks", { source: { pool: "oa-pool", volume: "oa-disk" }, target: "vdb" });
  await api("POST", "/v1/domains/oa-web/nics", { type: "user", mac: "52:54:00:aa:bb:cc" });
  await api("DELETE", "/v1/domains/oa-web/nics/52:54:00:aa:bb:cc");
  await finished(await api("POST", "/v1/domains/oa-web/start", {}), "POST /v1/domains/oa-web/start");
  await api("POST", "/v1/domains/oa-web/suspend");
  await api("POST", "/v1/domains/oa-web/resume");
  await finished(await api("POST", "/v1/domains/oa-web/snapshots", { snapshot: "s1", description: "first" }),
    "POST /v1/domains/oa-web/snapshots");
  await finished(await api("POST", "/v1/domains/oa-web/snapshots", { snapshot: "s2" }), "POST /v1/domains/oa-web/snapshots");
  await finished(await api("POST", "/v1/domains/oa-web/exec", { command: ["/bin/echo", "hi"] }), "POST /v1/domains/oa-web/exec");
  await finished(await api("POST", "/v1/domains/oa-web/reboot"), "POST /v1/domains/oa-web/reboot");
  await api("POST", "/v1/domains/oa-web/guest/ping");
  fs.writeFileSync(path.join(tmp, "image.raw"), Buffer.alloc(1 << 20));
  await finished(await api("POST", "/v1/images", { name: "oa-img", file: path.join(tmp, "image.raw"), os: "none", description: "zeros" }),
    "POST /v1/images");

  // Every GET with a JSON answer.
  const gets = [
    "/v1/host", "/v1/domains", "/v1/domains?full=true", "/v1/domains?fields=name,state", "/v1/domains?all_projects=true&label=tier=web",
    "/v1/domains/oa-web", "/v1/domains/oa-db", "/v1/domains/oa-web/xml", "/v1/domains/oa-web/stats", "/v1/stats/domains",
    "/v1/stats/domains?all_projects=true", "/v1/domains/oa-web/console/log",
    "/v1/domains/oa-web/snapshots", "/v1/domains/oa-web/snapshots/s1", "/v1/domains/oa-web/current-snapshot",
    "/v1/domains/oa-db/current-snapshot",
    "/v1/pools", "/v1/pools/oa-pool", "/v1/pools/oa-pool/volumes", "/v1/pools/oa-pool/volumes/oa-q",
    "/v1/networks", "/v1/networks/oa-net", "/v1/networks/oa-net/leases",
    "/v1/images", "/v1/images/oa-img",
    "/v1/operations", "/v1/operations?active=true", "/v1/projects", "/v1/projects/oa-proj", "/v1/projects/default",
    "/v1/audit?limit=50", "/v1/tokens",
  ];
  for (const g of gets) await api("GET", g);
  const ops = (await api("GET", "/v1/operations")).body ?? [];
  for (const op of ops.slice(0, 20)) {
    await api("GET", `/v1/operations/${op.id}`);
    await api("GET", `/v1/operations/${op.id}/result`);
  }

  // A read token: operator calls refused, guest output withheld.
  const reader = (await api("POST", "/v1/tokens", { name: "oa-reader", role: "read" })).body?.token;
  const asReader = { Authorization: "Bearer " + reader };
  await api("POST", "/v1/domains/oa-db/suspend", undefined, asReader);
  const execOp = ops.find((o) => o.kind === "domain.exec");
  if (execOp) {
    const seen = await api("GET", `/v1/operations/${execOp.id}`, undefined, asReader);
    if (!seen.body?.result_withheld) fail("a read token saw a domain.exec result");
  }
  await api("GET", "/v1/domains", undefined, { Authorization: null });  // 401

  // Streams: the media types the document declares.
  const streams = [["/v1/events", "text/event-stream"], ["/v1/pools/oa-pool/volumes/oa-q/content", "application/octet-stream"]];
  for (const [p, type] of streams) {
    const ctl = new AbortController();
    const res = await fetch(base + p, { headers: { Authorization: "Bearer " + token }, signal: ctl.signal });
    const declared = Object.keys(routeOf(doc, "get", p)?.op.responses["200"]?.content ?? {});
    const got = (res.headers.get("content-type") ?? "").split(";")[0];
    if (res.status !== 200 || got !== type || !declared.includes(got)) fail(`GET ${p}: ${res.status} ${got}, the document says ${declared}`);
    else ok(`GET ${p} -> 200 ${got}`);
    ctl.abort();
    await res.body?.cancel().catch(() => {});
  }

  // Errors: each in the shape and status the document declares.
  await api("GET", "/v1/domains/no-such-domain");
  await api("PATCH", "/v1/domains");
  await api("GET", "/v1/domains?colour=red");
  await api("DELETE", "/v1/operations/no-such-operation");

  // Teardown through the API, also checked.
  await finished(await api("POST", "/v1/domains/oa-web/snapshots/s2/revert"), "POST /v1/domains/oa-web/snapshots/s2/revert");
  await finished(await api("DELETE", "/v1/domains/oa-web/snapshots/s1?children=true"), "DELETE /v1/domains/oa-web/snapshots/s1");
  await finished(await api("POST", "/v1/domains/oa-db/shutdown", { timeout: "5s" }), "POST /v1/domains/oa-db/shutdown");
  await api("POST", "/v1/domains/oa-web/destroy");
  await api("POST", "/v1/domains/oa-web/reset");
  await api("DELETE", "/v1/domains/oa-web/disks/vdb");
  await api("DELETE", "/v1/domains/oa-db");
  await api("DELETE", "/v1/images/oa-img");
  await api("DELETE", "/v1/pools/oa-pool/volumes/oa-copy");
  await api("DELETE", "/v1/networks/oa-net");
  await api("DELETE", "/v1/tokens/oa-read");
  await api("POST", "/v1/pools/oa-pool/stop");
  await api("POST", "/v1/pools/oa-pool/start");

  for (const [p, item] of Object.entries(doc.paths))
    for (const [m, op] of Object.entries(item)) {
      const ok = Object.entries(op.responses).find(([s]) => s.startsWith("2"));
      if (m === "get" && ok?.[1].content?.["application/json"] && !answered.has(op.operationId) && !needsRoot.has(op.operationId))
        fail(`GET ${p} (${op.operationId}): never answered with a success here`);
    }
}

try {
  await run();
} catch (e) {
  fail("the run stopped: " + (e.stack || e));
}
if (failures.length) console.log("vmmd log tail:\n" + fs.readFileSync(path.join(tmp, "vmmd.log"), "utf8").slice(-3000));
await stopVmmd();
console.log(`${passed} passed, ${failures.length} failed`);
process.exit(failures.length ? 1 : 0);
