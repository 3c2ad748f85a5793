#!/usr/bin/env python3
"""Turns api_bench's samples into bench/api.sh's result: the statistics of every op and client
(bench/sampling.py), the memory measurements and what was run."""
import argparse, json, os, sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import sampling  # noqa: E402

p = argparse.ArgumentParser()
p.add_argument("raw")
p.add_argument("--rss", required=True, help="JSON: RSS measurements in KiB")
p.add_argument("--vmmd-command", required=True)
p.add_argument("--out", required=True)
args = p.parse_args()
raw = json.load(open(args.raw))
ops = {}
for op, d in raw["ops"].items():
    samples = d["samples_ms"]
    ops[op] = dict(d, stats_ms={t: sampling.summary(v) for t, v in samples.items()})
sampling.write_result(args.out, {"count": raw["count"], "ops": ops, "info": raw["info"],
                                 "rss_kb": json.loads(args.rss), "vmmd_command": args.vmmd_command})
