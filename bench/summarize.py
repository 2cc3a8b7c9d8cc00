#!/usr/bin/env python3
"""Helpers for bench/compare.sh.

    summarize.py count TOOL REPORT.json        number of findings in a scanner's JSON report
    summarize.py recall KEYS.json REPORT.json  how many planted keys a report finds
    summarize.py merge-rounds DIR              merge round-*.json (one run each) into one hyperfine JSON
    summarize.py table OUT_DIR                 markdown summary of a compare.sh run
"""
import json, os, re, statistics, sys
from pathlib import Path

ORDER = ["worktree", "small", "history", "staged"]
TITLES = {
    "worktree": "(a) large working tree",
    "small": "(b) small checkout (start-up cost)",
    "history": "(c) whole-history sweep",
    "staged": "(d) pre-commit, one staged file",
}


def load_report(path):
    text = Path(path).read_text(errors="replace")
    if not text.strip():
        return text, []
    try:
        return text, json.loads(text)
    except json.JSONDecodeError:  # JSON Lines
        return text, [json.loads(line) for line in text.splitlines() if line.strip()]


def findings(data):
    """The list of findings in any of the report shapes seen here."""
    if isinstance(data, list):
        return data
    if isinstance(data, dict):
        for key in ("findings", "results", "leaks", "matches"):
            v = data.get(key)
            if isinstance(v, list):
                return v
            if isinstance(v, dict):  # detect-secrets: {file: [..]}
                return [x for xs in v.values() for x in xs]
        if "runs" in data:  # SARIF
            return [r for run in data["runs"] for r in run.get("results", [])]
    raise ValueError("unknown report shape")


def count(tool, path):
    _, data = load_report(path)
    print(len(findings(data)))


def recall(keys_path, path):
    """A planted key counts as found when the report contains the key itself, or (for reports that
    redact secrets) the path of the only file it was ever planted in."""
    keys = json.loads(Path(keys_path).read_text())
    text, _ = load_report(path)
    missed = [k["provider"] for k in keys if k["key"] not in text and k["path"] not in text]
    found = len(keys) - len(missed)
    print(f"{found}/{len(keys)}" + (f" (missed: {', '.join(missed)})" if missed else ""))


def merge_rounds(d):
    rounds = sorted(Path(d).glob("round-*.json"), key=lambda p: int(re.findall(r"\d+", p.name)[-1]))
    merged = {}
    for p in rounds:
        for r in json.loads(p.read_text())["results"]:
            m = merged.setdefault(r["command"], {"command": r["command"], "times": [], "users": [],
                                                 "systems": [], "exit_codes": []})
            m["times"] += r["times"]
            m["users"].append(r["user"])
            m["systems"].append(r["system"])
            m["exit_codes"] += r.get("exit_codes", [])
    out = []
    for m in merged.values():
        t = m["times"]
        out.append({"command": m["command"], "times": t, "mean": statistics.mean(t),
                    "stddev": statistics.stdev(t) if len(t) > 1 else 0.0, "median": statistics.median(t),
                    "min": min(t), "max": max(t), "user": statistics.mean(m["users"]),
                    "system": statistics.mean(m["systems"]), "exit_codes": m["exit_codes"]})
    json.dump({"results": out, "interleaved": True}, sys.stdout, indent=1)


def read_measures(path):
    rows = []
    if path.exists():
        for line in path.read_text().splitlines():
            if line.startswith("MEASURE"):
                rows.append(dict(kv.split("=", 1) for kv in line.split()[1:]))
    return rows


def fmt_t(s):
    if s is None:  # hyperfine's stddev with a single run
        return "–"
    return f"{s * 1000:.1f} ms" if s < 1 else f"{s:.2f} s"


def read(p, default="–"):
    return p.read_text().strip() if p.exists() and p.read_text().strip() else default


def table(out):
    out = Path(out)
    lines = []
    env = out / "env.txt"
    if env.exists():
        lines += ["```", env.read_text().rstrip(), "```", ""]
    for sc in ORDER:
        d = out / sc
        hj = d / "hyperfine.json"
        if not hj.exists():
            continue
        results = json.loads(hj.read_text())["results"]
        lines.append(f"### {TITLES[sc]}")
        lines.append("")
        lines.append(f"Target: `{read(d / 'target.txt')}`  ")
        lines.append("Load average (1, 5, 15 min): " + "; ".join(
            l.replace(f" {sc}:", "") for l in read(d / "load.txt").splitlines()))
        lines.append("")
        ks = next((r for r in results if r["command"] == "keyscope"), None)
        hdr = "| tool | median | mean ± sd | user+sys CPU | peak RSS | findings |"
        sep = "|---|---:|---:|---:|---:|---:|"
        if sc == "history":
            hdr += " planted keys found |"
            sep += "---|"
        if ks:
            hdr += " time / keyscope |"
            sep += "---:|"
        lines += [hdr, sep]
        peer_medians, peer_rss = {}, {}
        ks_failed = False
        for r in results:
            name = r["command"]
            ms = read_measures(d / f"{name}.rss")
            rss = max((int(m["rss_kb"]) for m in ms), default=None)
            codes = [int(m["exit"]) for m in ms] or r.get("exit_codes") or []
            # keyscope: 0 clean, 1 findings, anything else is an error. Peers use their own codes
            # for "found something" (kingfisher: 200), so theirs are not judged.
            bad = [c for c in codes if c not in (0, 1)] if name == "keyscope" else []
            if bad:
                ks_failed = True
            cpu = r["user"] + r["system"]
            row = (f"| {name} | {fmt_t(r['median'])} | {fmt_t(r['mean'])} ± {fmt_t(r['stddev'])} | "
                   f"{fmt_t(cpu)} ({fmt_t(r['user'])} + {fmt_t(r['system'])}) | "
                   f"{f'{rss / 1024:.0f} MiB' if rss else '–'} | {read(d / f'{name}.findings')}"
                   + (f" (exit {sorted(set(bad))})" if bad else "") + " |")
            if sc == "history":
                row += f" {read(d / f'{name}.recall')} |"
            if ks:
                row += f" {r['median'] / ks['median']:.2f}x |"
            lines.append(row)
            if name != "keyscope":
                peer_medians[name] = r["median"]
                if rss:
                    peer_rss[name] = rss
        lines.append("")
        if ks and peer_medians and not ks_failed:
            fastest = min(peer_medians, key=peer_medians.get)
            lines.append(f"keyscope is **{peer_medians[fastest] / ks['median']:.2f}x** faster than the "
                         f"fastest peer ({fastest}).")
            ks_ms = read_measures(d / "keyscope.rss")
            if ks_ms and peer_rss:
                k = max(int(m["rss_kb"]) for m in ks_ms)
                lo = min(peer_rss, key=peer_rss.get)
                lines.append(f"keyscope peak RSS {k / 1024:.0f} MiB vs lowest peer {lo} "
                             f"{peer_rss[lo] / 1024:.0f} MiB ({'OK' if k <= peer_rss[lo] else 'HIGHER'}).")
            lines.append("")
        elif ks_failed:
            lines += ["keyscope FAILED in this scenario (exit code >= 2): no ratio.", ""]
        elif not ks:
            lines += ["keyscope not measured in this scenario (missing binary or mode not implemented).", ""]
    print("\n".join(lines))


def main():
    cmd, *args = sys.argv[1:]
    {"count": count, "recall": recall, "merge-rounds": merge_rounds, "table": table}[cmd](*args)


if __name__ == "__main__":
    main()
