"""The GitHub side of the keyscope Action's report, run by scripts/github-action.sh.

Reads keyscope's JSON report and turns it into what GitHub shows: error annotations on stdout,
a job summary table, and a SARIF report GitHub will ingest. GitHub caps each of them, so each is
capped here with a line saying how much was left out, while the exit status and the JSON report
stay complete:

- annotations: GitHub shows 10 error annotations per step; the 11th and later are dropped
  silently. At most 10 findings are annotated, and a warning (a separate quota) says how many
  more there are.
- SARIF: code scanning ingests at most 25,000 results per run and rejects the upload beyond.
  Results past that are cut from the file and a tool execution notification says how many.
- the job summary: GitHub refuses a step summary over 1 MiB. The table stops at 1,000 rows or
  well under that size, whichever comes first, with a "N more not shown" line.

Leaked keys (`kind` "secret") and usage findings (flat-key rules: "usage", "correlation") are
counted apart. Usage that .gitignore kept out of a working-tree scan is named with the way to
include it.

Usage: github-action-report.py REPORT.json SARIF SUMMARY SCOPE RANGE
Prints the annotations, then a last line `FINDINGS KEYS USAGE`.
keyscope's output is already redacted and nothing here adds file content.
"""

import json
import sys

MAX_ANNOTATIONS = 10
MAX_SARIF_RESULTS = 25_000
MAX_SUMMARY_ROWS = 1_000
# GitHub's limit is 1 MiB; the rest of the summary (heading, notes) fits in what is left.
MAX_TABLE_BYTES = 900 * 1024


def data(text):
    return text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def prop(text):
    return data(text).replace(":", "%3A").replace(",", "%2C")


def cell(text):
    return str(text).replace("\r", " ").replace("\n", " ").replace("|", "\\|")


def code(text):
    text = cell(text).replace("`", "'")
    return f"`{text}`" if text else ""


def path_of(finding):
    path = finding.get("path", "")
    return path[2:] if path.startswith("./") else path


def plural(count, one, many):
    return f"{count:,} {one if count == 1 else many}"


def is_key(finding):
    return finding.get("kind", "secret") == "secret"


def annotate(findings):
    for f in findings[:MAX_ANNOTATIONS]:
        commit = f.get("commit") or {}
        where = f" in commit {commit['id'][:12]}" if commit.get("id") else ""
        message = (
            f"{f.get('rule_name', '')} ({f.get('rule_id', '')}): {f.get('redacted', '')}{where}. "
            f"{f.get('help', '')}"
        ).strip()
        props = [
            f"file={prop(path_of(f))}",
            f"line={f.get('line', 1)}",
            f"col={f.get('column', 1)}",
            f"endColumn={f.get('end_column', 2)}",
            f"title={prop('keyscope: ' + f.get('rule_name', f.get('rule_id', 'leaked key')))}",
        ]
        print(f"::error {','.join(props)}::{data(message)}")
    hidden = len(findings) - MAX_ANNOTATIONS
    if hidden > 0:
        print(
            "::warning title=keyscope::"
            + data(
                f"{plural(hidden, 'more finding', 'more findings')} not shown as annotations "
                f"(GitHub shows {MAX_ANNOTATIONS} per step): see the job summary, code scanning "
                "or the JSON report (output report-file)"
            )
        )


def cap_sarif(sarif_path):
    """Cuts each run to MAX_SARIF_RESULTS results; returns how many were cut."""
    try:
        with open(sarif_path, encoding="utf-8") as f:
            sarif = json.load(f)
    except (OSError, ValueError):
        return 0
    cut = 0
    for run in sarif.get("runs", []):
        results = run.get("results") or []
        if len(results) <= MAX_SARIF_RESULTS:
            continue
        hidden = len(results) - MAX_SARIF_RESULTS
        cut += hidden
        run["results"] = results[:MAX_SARIF_RESULTS]
        invocations = run.setdefault("invocations", [])
        if not invocations:
            invocations.append({"executionSuccessful": True})
        invocations[0].setdefault("toolExecutionNotifications", []).append(
            {
                "level": "warning",
                "descriptor": {"id": "keyscope/results-not-shown"},
                "message": {
                    "text": f"{hidden} more results not shown: GitHub code scanning ingests at "
                    f"most {MAX_SARIF_RESULTS} results per run. The JSON report lists them all."
                },
            }
        )
    if cut:
        with open(sarif_path, "w", encoding="utf-8") as f:
            json.dump(sarif, f, separators=(",", ":"))
    return cut


def table(findings):
    """The summary table, cut to MAX_SUMMARY_ROWS rows and MAX_TABLE_BYTES bytes."""
    lines = ["| Rule | Location | Secret (redacted) | Commit |\n", "| --- | --- | --- | --- |\n"]
    size = sum(len(line.encode("utf-8")) for line in lines)
    shown = 0
    for f in findings[:MAX_SUMMARY_ROWS]:
        commit = f.get("commit") or {}
        others = len(f.get("locations") or [])
        location = code(f"{path_of(f)}:{f.get('line', 1)}")
        if others:
            location += f" (+{others} more)"
        row = (
            f"| {cell(f.get('rule_name', ''))} {code(f.get('rule_id', ''))} "
            f"| {location} | {code(f.get('redacted', ''))} "
            f"| {code(commit.get('id', '')[:12])} |\n"
        )
        size += len(row.encode("utf-8"))
        if size > MAX_TABLE_BYTES:
            break
        lines.append(row)
        shown += 1
    hidden = len(findings) - shown
    if hidden:
        lines.append(
            f"\n**{plural(hidden, 'more finding', 'more findings')} not shown here** "
            "(a job summary must stay under 1 MiB): code scanning and the JSON report "
            "(output `report-file`) have them all.\n"
        )
    return "".join(lines)


def heading(keys, usage):
    if not keys and not usage:
        return "no leaked keys"
    parts = []
    if keys:
        parts.append(plural(len(keys), "leaked key", "leaked keys"))
    if usage:
        parts.append(plural(len(usage), "usage finding", "usage findings"))
    return ", ".join(parts)


def ignored_note(report):
    ignored = [s for s in report.get("skipped", []) if s.get("kind") == "ignored"]
    count = report.get("summary", {}).get("ignored", len(ignored))
    if not count:
        return ""
    names = ", ".join(code(s.get("path", "").removeprefix("./")) for s in ignored[:5])
    more = f" and {count - 5:,} more" if count > 5 else ""
    return (
        f"\n{plural(count, 'path was', 'paths were')} not scanned because `.gitignore` or "
        f"`.ignore` files exclude {'it' if count == 1 else 'them'}: {names}{more}. Keys in "
        "ignored files such as `.env` still leak through caches, images and artifacts: add "
        "`args: --no-ignore` to scan them.\n"
    )


def main():
    report_path, sarif_path, summary_path, scope, scan_range = sys.argv[1:6]
    with open(report_path, encoding="utf-8") as f:
        report = json.load(f)
    findings = report.get("findings", [])
    keys = [f for f in findings if is_key(f)]
    usage = [f for f in findings if not is_key(f)]
    ordered = keys + usage

    annotate(ordered)
    cap_sarif(sarif_path)

    where = f"{scope} (`{scan_range}`)" if scan_range else scope
    with open(summary_path, "a", encoding="utf-8") as summary:
        summary.write(f"## keyscope: {heading(keys, usage)}\n\nScanned {where}.\n")
        summary.write(ignored_note(report))
        if ordered:
            summary.write("\n" + table(ordered))
        if keys:
            summary.write(
                "\nRotate each key at its provider: removing it from the code does not "
                "un-leak it.\n"
            )
    print(f"{len(findings)} {len(keys)} {len(usage)}")


main()
