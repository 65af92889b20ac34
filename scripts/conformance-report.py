#!/usr/bin/env python3
"""Turn ginkgo JSON reports of the conformance suite into CONFORMANCE.md, or check a run
against the list of specs that must pass.

  conformance-report.py table VKUBE.json BASELINE.json OUT.md --command CMD --machine M [--note TEXT]...
  conformance-report.py passing VKUBE.json > LIST          # the specs vkube passes
  conformance-report.py check VKUBE.json LIST               # exit 1 if one of LIST failed
  conformance-report.py from-log GINKGO.log OUT.json        # a report from `ginkgo -v` output
  conformance-report.py merge BASE.json RERUN.json OUT.json # RERUN's results replace BASE's

`from-log` is for a run whose JSON report ginkgo lost (it writes none when one of its
processes dies, e.g. a spec that fails outside its own goroutine).

A spec's name is ginkgo's full text (containers and leaf joined by spaces), as
`--focus` matches it. Only stdlib: it runs before anything is installed.
"""
import datetime
import json
import re
import sys


def specs(path):
    """name -> (state, first line of the failure, seconds)."""
    with open(path) as f:
        data = json.load(f)
    out = {}
    for suite in data if isinstance(data, list) else [data]:
        for r in suite.get("SpecReports") or []:
            if r.get("LeafNodeType") != "It":
                continue
            name = " ".join([*(r.get("ContainerHierarchyTexts") or []), r.get("LeafNodeText", "")]).strip()
            if "[Conformance]" not in name:
                continue
            state = r.get("State", "")
            message = ((r.get("Failure") or {}).get("Message") or "").strip()
            first = next((line.strip() for line in message.splitlines() if line.strip()), "")
            out[name] = (state, first, (r.get("RunTime") or 0) / 1e9)
    return out


STATES = {"": "passed", "FAILED": "failed", "PANICKED": "panicked", "TIMEDOUT": "timedout",
          "INTERRUPTED": "interrupted", "SKIPPED": "skipped", "ABORTED": "aborted", "PENDING": "pending"}


def from_log(log_path, out_path):
    """Rebuild spec results from `ginkgo -v` output: each result is a line `• [STATE]
    [time]` (no state when it passed) followed by the spec's text and its labels."""
    with open(log_path, errors="replace") as f:
        lines = [re.sub(r"\x1b\[[0-9;]*m", "", l.rstrip("\n")) for l in f]
    reports = []
    for i, line in enumerate(lines):
        m = re.match(r"^[•S] (?:\[([A-Z]+)\] )?\[[0-9.]+ seconds\]$", line)
        if not m or i + 1 >= len(lines):
            continue
        text = lines[i + 1].strip()
        text = re.sub(r" \[[^\[\]]*\]$", "", text)  # the labels
        text = text.replace(" [It] ", " ")
        state = STATES.get(m.group(1) or "", (m.group(1) or "").lower())
        message = ""
        for follow in lines[i + 2 : i + 400]:
            if re.match(r"^[•S] (?:\[[A-Z]+\] )?\[[0-9.]+ seconds\]$", follow):
                break
            fm = re.match(r"^\s*\[(FAILED|PANICKED|TIMEDOUT)\] (.*)$", follow)
            if fm and not fm.group(2).startswith("in ["):
                message = fm.group(2)
                break
        reports.append({"LeafNodeType": "It", "ContainerHierarchyTexts": [], "LeafNodeText": text,
                        "State": state, "Failure": {"Message": message}, "RunTime": 0})
    with open(out_path, "w") as f:
        json.dump([{"SpecReports": reports}], f)
    return len(reports)


def sig(name):
    m = re.match(r"\[(sig-[a-z-]+)\]", name)
    return m.group(1) if m else "other"


def cell(entry):
    if entry is None:
        return "not run"
    state, reason, _ = entry
    if state == "passed":
        return "pass"
    if state == "skipped":
        return "skipped"
    reason = reason.replace("|", "\\|")
    if len(reason) > 140:
        reason = reason[:137] + "..."
    return f"**{state}**: {reason}" if reason else f"**{state}**"


def table(vkube_path, base_path, out_path, command, machine, notes=()):
    vk, base = specs(vkube_path), specs(base_path)
    ran = lambda d, n: d.get(n, ("skipped",))[0] != "skipped"
    # Only the specs the run selected: a report also lists every other spec as skipped.
    names = sorted(n for n in set(vk) | set(base) if ran(vk, n) or ran(base, n))
    passed = lambda d, n: d.get(n, ("",))[0] == "passed"
    sigs = sorted({sig(n) for n in names})
    lines = [
        "# Conformance",
        "",
        "The Kubernetes v1.36.2 conformance suite (`e2e.test`, every `[Conformance]` spec but",
        "`[Serial]` ones) against a vkube virtual cluster (`vkube up`, nodes synced from its",
        "simulated host) and, as the baseline in the same run, against a real v1.36 control",
        "plane (`../shared/bin/real-cluster`) with the same simulated nodes (`vkube nodes`).",
        "A spec that fails on both needs what no simulated node has (real containers: exec",
        "into a process, networking, volumes, images that serve); one that passes on the",
        "baseline and fails on vkube is vkube's to fix.",
        "",
        f"- Date: {datetime.date.today().isoformat()}",
        f"- Machine: {machine}",
        f"- Command: `{command}`",
        "- CI runs the specs in `conformance/passing.txt` (those vkube passes) on every run:",
        "  `scripts/conformance --list conformance/passing.txt --only vkube`.",
        *[f"- {n}" for n in notes],
        "",
        "## Totals",
        "",
        "| SIG | specs | vkube pass | baseline pass | pass on baseline, fail on vkube |",
        "|---|---|---|---|---|",
    ]
    total = [0, 0, 0, 0]
    for s in sigs:
        ns = [n for n in names if sig(n) == s]
        row = [
            len(ns),
            sum(passed(vk, n) for n in ns),
            sum(passed(base, n) for n in ns),
            sum(passed(base, n) and not passed(vk, n) for n in ns),
        ]
        total = [a + b for a, b in zip(total, row)]
        lines.append(f"| {s} | " + " | ".join(map(str, row)) + " |")
    lines.append("| **all** | " + " | ".join(f"**{t}**" for t in total) + " |")
    gap = [n for n in names if passed(base, n) and not passed(vk, n)]
    lines += ["", "## Passing on the baseline, failing on vkube", ""]
    if gap:
        lines += [f"- {n} — {cell(vk.get(n))}" for n in gap]
    else:
        lines.append("None.")
    lines += ["", "## Every spec", "", "| spec | vkube | baseline |", "|---|---|---|"]
    for n in names:
        escaped = n.replace("|", "\\|")
        lines.append(f"| {escaped} | {cell(vk.get(n))} | {cell(base.get(n))} |")
    with open(out_path, "w") as f:
        f.write("\n".join(lines) + "\n")


def main(argv):
    if len(argv) >= 2 and argv[1] == "table":
        args = argv[2:]
        command = machine = ""
        notes = []
        while "--note" in args:
            i = args.index("--note")
            notes.append(args[i + 1])
            del args[i : i + 2]
        if "--command" in args:
            i = args.index("--command")
            command = args[i + 1]
            del args[i : i + 2]
        if "--machine" in args:
            i = args.index("--machine")
            machine = args[i + 1]
            del args[i : i + 2]
        table(args[0], args[1], args[2], command, machine, notes)
        return 0
    if len(argv) == 5 and argv[1] == "merge":
        reports = {}
        for path in argv[2:4]:
            with open(path) as f:
                data = json.load(f)
            for suite in data if isinstance(data, list) else [data]:
                for r in suite.get("SpecReports") or []:
                    if r.get("LeafNodeType") == "It" and r.get("State") != "skipped":
                        name = " ".join([*(r.get("ContainerHierarchyTexts") or []), r.get("LeafNodeText", "")]).strip()
                        reports[name] = r
        with open(argv[4], "w") as f:
            json.dump([{"SpecReports": list(reports.values())}], f)
        return 0
    if len(argv) == 4 and argv[1] == "from-log":
        print(f"{from_log(argv[2], argv[3])} spec results read from {argv[2]}", file=sys.stderr)
        return 0
    if len(argv) == 3 and argv[1] == "passing":
        for name, (state, _, _) in sorted(specs(argv[2]).items()):
            if state == "passed":
                print(name)
        return 0
    if len(argv) == 4 and argv[1] == "check":
        got = specs(argv[2])
        with open(argv[3]) as f:
            want = [line.rstrip("\n") for line in f if line.strip() and not line.startswith("#")]
        bad = [(n, got.get(n)) for n in want if got.get(n, ("",))[0] != "passed"]
        for n, e in bad:
            print(f"REGRESSED: {n} — {cell(e)}")
        print(f"{len(want) - len(bad)}/{len(want)} listed specs passed")
        return 1 if bad else 0
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))
