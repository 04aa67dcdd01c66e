"""Checks what promtool does not: every alert of rules.yml has a severity
(page or ticket), a summary, a runbook_url naming its own section of
runbooks.md (which exists), and unit tests in tests/*.test.yml that show
it firing (for each severity it has) and staying quiet. Also: no runbook
section without its alert.

Run by scripts/monitoring-check.sh; prints one line per problem.
"""

import pathlib
import re
import sys

import yaml

MONITORING = pathlib.Path(__file__).resolve().parent.parent
SEVERITIES = {"page", "ticket"}


def main() -> int:
    rules = yaml.safe_load((MONITORING / "rules.yml").read_text())
    alerts = [r for g in rules["groups"] for r in g["rules"] if "alert" in r]
    runbook = (MONITORING / "runbooks.md").read_text()
    sections = set(re.findall(r"^## (Folio\w+)$", runbook, flags=re.MULTILINE))

    fires, quiet = set(), set()
    for path in sorted((MONITORING / "tests").glob("*.test.yml")):
        for test in yaml.safe_load(path.read_text())["tests"]:
            for case in test.get("alert_rule_test", []):
                expected = case.get("exp_alerts") or []
                if not expected:
                    quiet.add(case["alertname"])
                for alert in expected:
                    severity = alert.get("exp_labels", {}).get("severity")
                    fires.add((case["alertname"], severity))

    problems = []
    for alert in alerts:
        name = alert["alert"]
        severity = alert.get("labels", {}).get("severity")
        annotations = alert.get("annotations", {})
        if severity not in SEVERITIES:
            problems.append(f"{name}: severity {severity!r} is not one of {sorted(SEVERITIES)}")
        if not annotations.get("summary"):
            problems.append(f"{name}: no summary")
        url = f"deploy/monitoring/runbooks.md#{name.lower()}"
        if annotations.get("runbook_url") != url:
            problems.append(f"{name}: runbook_url {annotations.get('runbook_url')!r}, expected {url!r}")
        if name not in sections:
            problems.append(f"{name}: no '## {name}' section in runbooks.md")
        if (name, severity) not in fires:
            problems.append(f"{name}: no unit test shows it firing with severity {severity}")
        if name not in quiet:
            problems.append(f"{name}: no unit test shows it quiet")
    names = {a["alert"] for a in alerts}
    for section in sorted(sections - names):
        problems.append(f"runbooks.md: section {section} has no alert in rules.yml")

    for problem in problems:
        print(problem)
    if problems:
        return 1
    print(f"{len(names)} alerts ({len(alerts)} rules): each with a severity, a summary, "
          "a runbook section, and unit tests firing and quiet")
    return 0


if __name__ == "__main__":
    sys.exit(main())
