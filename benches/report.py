#!/usr/bin/env python3
"""Turns benches/run.sh's results.jsonl into one JSON document (printed, and written
next to results.jsonl as results.json) and, unless --append=0, a dated entry at the end
of BENCHMARKS.md with the commit, the machine, each phase as a fraction of the ceiling,
and each issue-9 target met or missed.

Usage: report.py RESULTS.jsonl PHASE_SECONDS [--append=0|1]
"""
import datetime, json, os, platform, subprocess, sys

results_path, phase_seconds = sys.argv[1], sys.argv[2]
append = not any(a == "--append=0" for a in sys.argv[3:])
rows = [json.loads(line) for line in open(results_path) if line.strip()]


def sh(cmd):
    try:
        return subprocess.run(cmd, shell=True, capture_output=True, text=True).stdout.strip()
    except OSError:
        return ""


def first(pred):
    return next((r for r in rows if pred(r)), None)


work_dir = os.path.dirname(os.path.abspath(results_path))
machine = {
    "cpu": sh("lscpu | sed -n 's/^Model name: *//p'") or platform.processor(),
    "cores": os.cpu_count(),
    "memory_gib": round(int(sh("awk '/MemTotal/ {print $2}' /proc/meminfo") or 0) / 1048576, 1),
    "kernel": platform.release(),
    "filesystem": sh(f"df -T {work_dir} | awk 'NR==2 {{print $2}}'"),
    "rustc": sh("rustc --version"),
    "wrk": sh("wrk -v 2>&1 | head -1").split(" [")[0],
}
commit = sh("git rev-parse --short HEAD") + ("-dirty" if sh("git status --porcelain --untracked-files=no") else "")
ceiling = first(lambda r: r["phase"] == "ceiling")
insert_loop = first(lambda r: r["phase"] == "insert_loop")
sizes = sorted({r["users"] for r in rows if r["users"] > 0})

checks = []
for n in sizes:
    at = {r["phase"]: r for r in rows if r["users"] == n}
    for phase in ("get_by_id", "filter_username_eq"):
        if phase in at and ceiling:
            ratio = at[phase]["rps"] / ceiling["rps"]
            checks.append((n, f"{phase}: ≥ 50% of ceiling req/s", f"{ratio:.0%}", ratio >= 0.5))
            checks.append((n, f"{phase}: p99 < 5 ms", f"{at[phase]['p99_ms']:.2f} ms", at[phase]["p99_ms"] < 5))
    if "create" in at and insert_loop:
        ok = at["create"]["rps"] >= insert_loop["rps"]
        checks.append((n, "create: ≥ single-row synchronous=FULL insert loop", f"{at['create']['rps']:,.0f} vs {insert_loop['rps']:,.0f}/s", ok))
    for phase in ("member_add", "member_remove"):
        if phase in at:
            valid = at[phase].get("reused", 0) == 0
            measured = f"{at[phase]['p99_ms']:.2f} ms" + ("" if valid else f" ({at[phase]['reused']} requests reused an id: invalid)")
            checks.append((n, f"{phase} (100,000-member group): p99 < 5 ms", measured, valid and at[phase]["p99_ms"] < 5))
    if "memory_after_phases" in at and n >= 1_000_000:
        hwm = at["memory_after_phases"]["hwm_mib"]
        checks.append((n, "RSS < 64 MiB (peak, after all phases)", f"{hwm:.1f} MiB", hwm < 64))
    if "import" in at:
        ratio = at["import"]["last_over_first"]
        checks.append((n, "import walk: last page latency / first <= 2", f"{ratio}", ratio <= 2))
    if "startup" in at:
        ms = at["startup"]["ready_ms"]
        checks.append((n, "start-up < 200 ms (exec to READY=1)", f"{ms:.0f} ms", ms < 200))

document = {"date": datetime.date.today().isoformat(), "commit": commit, "machine": machine,
            "phase_seconds": int(phase_seconds), "connections": 16, "results": rows,
            "targets": [{"users": n, "target": t, "measured": m, "met": ok} for n, t, m, ok in checks]}
with open(os.path.join(work_dir, "results.json"), "w") as f:
    json.dump(document, f, indent=2)
print(json.dumps(document, indent=2))

if append:
    out = [f"\n## {document['date']} — benches/run.sh at {commit}\n",
           f"Machine: {machine['cpu']}, {machine['cores']} cores, {machine['memory_gib']} GiB, Linux {machine['kernel']}, "
           f"data on {machine['filesystem']}; {machine['rustc']}; {machine['wrk']} on the same box, "
           f"2 threads, 16 keep-alive TLS connections. Errors include requests that reused an id.\n",
           "```sh\nbenches/run.sh\n```\n"]
    for n in sizes:
        at = {r["phase"]: r for r in rows if r["users"] == n}
        seed = at.get("seed", {})
        out.append(f"\n### {n:,} users\n")
        if seed:
            out.append(f"Seeded through the API: {seed['users']:,} users in {seed['users_seconds']} s "
                       f"({seed['creates_per_second']:,.0f} creates/s), a group of {seed['group_members']:,} members "
                       f"in {seed['group_seconds']} s.\n")
        out.append("\n| phase | seconds | req/s | of ceiling | p50 ms | p99 ms | errors |\n|---|---|---|---|---|---|---|\n")
        for phase in ("get_by_id", "filter_username_eq", "list_page_100", "get_group_100k", "list_groups_no_members", "patch_active", "member_add", "member_remove", "create"):
            if phase in at:
                r = at[phase]
                share = f"{r['rps'] / ceiling['rps']:.0%}" if ceiling else "–"
                errors = r["errors"] + r.get("reused", 0)
                out.append(f"| {phase} | {r['seconds']:.0f} | {r['rps']:,.0f} | {share} | {r['p50_ms']:.2f} | {r['p99_ms']:.2f} | {errors} |\n")
        if "import" in at:
            imp = at["import"]
            out.append(f"\nOkta's import walk (bench-import, `startIndex` 1, 101, … `count=100`, one connection): "
                       f"{imp['users']:,} users in {imp['pages']:,} pages, {imp['seconds']} s; page p50 {imp['p50_ms']:.2f} ms, "
                       f"p99 {imp['p99_ms']:.2f} ms; last ten pages / first ten: {imp['last_over_first']}.\n")
        extra = []
        if "startup" in at:
            extra.append(f"start-up {at['startup']['ready_ms']:.0f} ms to READY=1, {at['startup']['healthz_ms']:.0f} ms to the first /healthz")
        for label in ("start", "after_phases", "after_group"):
            m = at.get(f"memory_{label}")
            if m:
                extra.append(f"RSS {label.replace('_', ' ')} {m['rss_mib']:.1f} MiB (peak {m['hwm_mib']:.1f} MiB)")
        if "disk" in at:
            extra.append(f"database {at['disk']['database_mib']} MiB")
        out.append("\n" + "; ".join(extra) + ".\n")
    if ceiling:
        out.append(f"\nCeiling (bench-ceiling, fixed 300-byte JSON over the same TLS): {ceiling['rps']:,.0f} req/s, "
                   f"p50 {ceiling['p50_ms']:.2f} ms, p99 {ceiling['p99_ms']:.2f} ms.\n")
    if insert_loop:
        out.append(f"Insert loop (bench-insert-loop, one row per synchronous=FULL WAL commit): {insert_loop['rps']:,.0f} rows/s, "
                   f"p50 {insert_loop['p50_ms']:.3f} ms, p99 {insert_loop['p99_ms']:.3f} ms.\n")
    out.append("\n| users | target | measured | met |\n|---|---|---|---|\n")
    for n, t, m, ok in checks:
        out.append(f"| {n:,} | {t} | {m} | {'yes' if ok else '**no**'} |\n")
    with open("BENCHMARKS.md", "a") as f:
        f.write("".join(out))
