#!/usr/bin/python3
"""Sum up a test run: meson test logs (*.json), pytest and fuzz JUnit files (*.xml).

Prints one line per stage and, last, "N passed, M failed". Exit status 1 if
anything failed or nothing ran. Skips count as failures: every test here must
run on a machine set up by scripts/deps.sh, so a skip means something is wrong.
"""
import json
import pathlib
import sys
import xml.etree.ElementTree as ET


def meson_counts(path):
    passed, failed, names = 0, 0, []
    for line in path.read_text().splitlines():
        if not line.strip():
            continue
        rec = json.loads(line)
        if rec.get("result") == "OK":
            passed += 1
        else:
            failed += 1
            names.append(f"{rec.get('name')} ({rec.get('result')})")
    return passed, failed, names


def junit_counts(path):
    passed, failed, names = 0, 0, []
    try:
        root = ET.parse(path).getroot()
    except ET.ParseError as e:
        return 0, 1, [f"{path.name}: unreadable ({e})"]
    for case in root.iter("testcase"):
        bad = [c.tag for c in case if c.tag in ("failure", "error", "skipped")]
        if bad:
            failed += 1
            names.append(f"{case.get('classname', '')}::{case.get('name')} ({bad[0]})")
        else:
            passed += 1
    return passed, failed, names


def main():
    results = pathlib.Path(sys.argv[1])
    total_p = total_f = 0
    for path in sorted(results.glob("*.json")) + sorted(results.glob("*.xml")):
        p, f, names = meson_counts(path) if path.suffix == ".json" else junit_counts(path)
        print(f"{path.stem:10s} {p} passed, {f} failed")
        for n in names:
            print(f"    FAILED {n}")
        total_p += p
        total_f += f
    if total_p + total_f == 0:
        print("no test ran")
        total_f = 1
    print(f"{total_p} passed, {total_f} failed")
    return 1 if total_f else 0


if __name__ == "__main__":
    sys.exit(main())
