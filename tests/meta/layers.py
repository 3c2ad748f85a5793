#!/usr/bin/env python3
"""The layering rule as a test: every #include "folder/..." in the source tree must point into a
layer its own layer may use. Lower layers never include higher ones; the composition root (app/)
is the only folder above api/. Also checks that each layer's CMake library links no library of a
layer it may not use.

    tests/meta/layers.py SOURCE_DIR        exit 1 listing every violation (file:line)
"""
import os
import re
import sys

# Who may include whom. A layer always may include itself. The folders under api/ that are
# layers of their own are named by their path (api/types: the wire types, below the daemon).
MAY_USE = {
    "base": set(),
    "model": {"base"},
    "api/types": {"base"},
    "network": {"base", "model"},
    "storage": {"base", "model"},
    "drivers": {"base", "model", "network"},
    "daemon": {"base", "model", "api/types", "network", "storage", "drivers"},
    "api": {"base", "model", "api/types", "network", "storage", "drivers", "daemon"},
    "app": {"base", "model", "api/types", "network", "storage", "drivers", "daemon", "api"},
    # The client shares the operation table and the wire types, nothing of the daemon.
    "client": {"base", "model", "api/types", "api/spec", "api/wire"},
}
# What a layer's CMake libraries are (target name -> layer), for the link check.
LIBRARIES = {
    "vmm_base": "base", "vmm_model": "model", "vmm_wire_types": "api/types", "vmm_network": "network",
    "vmm_storage": "storage", "vmm_customize": "storage", "vmm_drivers": "drivers", "vmm_daemon": "daemon",
    "vmm_api": "api", "vmm_api_spec": "api/spec", "vmmd_app": "app", "vmmclient": "client",
}
SOURCE_FOLDERS = ["base", "model", "network", "storage", "drivers", "daemon", "api", "app", "client"]
INCLUDE = re.compile(r'^\s*#\s*include\s+"([^"]+)"')


def layer_of(path):
    """The layer a repository path belongs to (the longest MAY_USE key it starts with)."""
    best = None
    for name in list(MAY_USE) + ["api/spec", "api/wire"]:
        if path == name or path.startswith(name + "/") or path.startswith(name + "."):
            if best is None or len(name) > len(best):
                best = name
    return best


def allowed(src_layer, dst_layer):
    if dst_layer is None or dst_layer == src_layer:
        return True
    # api/spec and api/wire are part of api for everyone but the client.
    if src_layer == "api" and dst_layer in ("api/spec", "api/wire"):
        return True
    uses = MAY_USE.get(src_layer, set())
    if dst_layer in ("api/spec", "api/wire") and "api" in uses:
        return True
    return dst_layer in uses


def check_includes(root):
    problems = []
    for folder in SOURCE_FOLDERS:
        for dirpath, _, files in os.walk(os.path.join(root, folder)):
            for f in sorted(files):
                if not f.endswith((".h", ".cc")):
                    continue
                rel = os.path.relpath(os.path.join(dirpath, f), root)
                src = layer_of(rel)
                # The spec and wire files of api/ belong to api for their own includes.
                if src in ("api/spec", "api/wire"):
                    src = "api"
                with open(os.path.join(root, rel), encoding="utf-8", errors="replace") as fh:
                    for n, line in enumerate(fh, 1):
                        m = INCLUDE.match(line)
                        if not m or "/" not in m.group(1):
                            continue
                        dst = layer_of(m.group(1))
                        if not allowed(src, dst):
                            problems.append(f"{rel}:{n}: {src}/ includes {m.group(1)} ({dst}/ is not below it)")
    return problems


def check_links(root):
    problems = []
    link = re.compile(r"target_link_libraries\(\s*(\S+)\s+(?:PUBLIC|PRIVATE|INTERFACE)\s+([^)]*)\)", re.S)
    for folder in SOURCE_FOLDERS:
        for dirpath, _, files in os.walk(os.path.join(root, folder)):
            if "CMakeLists.txt" not in files:
                continue
            rel = os.path.relpath(os.path.join(dirpath, "CMakeLists.txt"), root)
            text = open(os.path.join(root, rel), encoding="utf-8").read()
            for target, deps in link.findall(text):
                src = LIBRARIES.get(target)
                if src is None:
                    continue
                for dep in deps.split():
                    dst = LIBRARIES.get(dep)
                    if dst is not None and not allowed("api" if src in ("api/spec", "api/wire") else src, dst):
                        problems.append(f"{rel}: {target} ({src}/) links {dep} ({dst}/ is not below it)")
    return problems


def main():
    root = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), "..", "..")
    problems = check_includes(root) + check_links(root)
    for p in problems:
        print(p)
    if problems:
        print(f"{len(problems)} layering violation(s); the layers and who may use whom: tests/meta/layers.py, docs/architecture.md")
        return 1
    print("layering: every include and library link points down")
    return 0


if __name__ == "__main__":
    sys.exit(main())
