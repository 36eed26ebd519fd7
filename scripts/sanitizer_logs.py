#!/usr/bin/python3
"""Turn the sanitizer log folder of the e2e-asan stage into a JUnit result.

    sanitizer_logs.py LOG_DIR OUT_XML

AddressSanitizer, LeakSanitizer and UBSan write a report to LOG_DIR/<kind>.<pid>
only when they find something, so an empty folder is a pass. Every report is
one failed test case (its first lines are printed), so a leak at iocd's exit
or a finding in a process whose crash no test noticed still fails the run.
"""
import pathlib
import sys
from xml.sax.saxutils import escape, quoteattr


def main():
    logs = pathlib.Path(sys.argv[1])
    out = pathlib.Path(sys.argv[2])
    reports = sorted(p for p in logs.iterdir() if p.is_file()) if logs.is_dir() else []
    cases = []
    for rep in reports:
        text = rep.read_text(errors="replace")
        print(f"sanitizer report {rep.name}:")
        print("\n".join(text.splitlines()[:40]))
        cases.append(f'<testcase classname="e2e-asan" name={quoteattr(rep.name)}>'
                     f'<failure message="sanitizer report">{escape(text[:20000])}</failure>'
                     f'</testcase>')
    if not cases:
        cases.append('<testcase classname="e2e-asan" name="no sanitizer reports"/>')
        print(f"e2e-asan: no sanitizer reports in {logs}")
    out.write_text("<testsuite>" + "".join(cases) + "</testsuite>\n")
    return 1 if reports else 0


if __name__ == "__main__":
    sys.exit(main())
