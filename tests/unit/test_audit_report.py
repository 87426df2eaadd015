"""The audit report formats (deploy/audit/report.py): pure functions over check rows, no database."""

from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ET

from pgprov.audit.report import FORMATS, Check, render_report, summary

CHECKS = [
    Check.compare(
        "db1", "probes", "app_runtime", "table app.checklist", "TRUNCATE", "denied", "denied"
    ),
    Check.compare("db1", "roles", "app_runtime", "role", "SUPERUSER", "no", "yes"),
    Check.compare("db1", "roles", "app_runtime", "role", "LOGIN", "yes", "yes"),
    Check(
        "db1",
        "probes",
        "app_runtime",
        "database postgres",
        "CONNECT",
        "denied",
        "allowed",
        "NOTE",
        "through PUBLIC",
    ),
    Check.compare("db2", "public", "PUBLIC", "database d|x", "CONNECT", "not granted", "granted"),
]


def test_compare_gives_drift_only_when_declared_and_actual_differ():
    assert [c.verdict for c in CHECKS] == ["OK", "DRIFT", "OK", "NOTE", "DRIFT"]
    assert [c.is_difference for c in CHECKS] == [False, True, False, False, True]


def test_summary_counts_checks_and_differences_but_not_notes():
    assert summary(CHECKS) == "5 checks, 2 differences"
    assert summary([]) == "0 checks, 0 differences"


def test_text_groups_rows_per_host_in_group_order_with_cells_two_spaces_apart():
    text = render_report(CHECKS, "text", {"db1": "db1: database hinfelaar_fastapi"})
    lines = text.splitlines()
    assert lines[0] == "db1: database hinfelaar_fastapi"
    assert lines[1] == "  roles"
    assert re.split(r"\s{2,}", lines[2].strip()) == [
        "DRIFT",
        "app_runtime",
        "role",
        "SUPERUSER",
        "no",
        "yes",
    ]
    assert lines.index("  probes") > lines.index("  roles")
    assert "db2" in lines and lines.index("db2") > lines.index("  probes")
    assert lines[-1] == "5 checks, 2 differences"


def test_text_shows_a_note_detail_next_to_the_actual_value():
    text = render_report(CHECKS, "text")
    note = next(line for line in text.splitlines() if line.strip().startswith("NOTE"))
    assert note.rstrip().endswith("allowed (through PUBLIC)")


def test_json_is_a_list_of_check_objects():
    parsed = json.loads(render_report(CHECKS, "json"))
    assert len(parsed) == len(CHECKS)
    assert parsed[1] == {
        "host": "db1",
        "group": "roles",
        "subject": "app_runtime",
        "object": "role",
        "check": "SUPERUSER",
        "declared": "no",
        "actual": "yes",
        "verdict": "DRIFT",
        "detail": "",
        "difference": True,
    }


def test_markdown_is_one_table_per_host_with_pipes_escaped_and_drift_in_bold():
    text = render_report(CHECKS, "markdown")
    assert "### db1" in text and "### db2" in text
    assert "| roles | **DRIFT** | app_runtime | role | SUPERUSER | no | yes |" in text
    assert "database d\\|x" in text
    assert text.rstrip().endswith("**5 checks, 2 differences**")


def test_junit_has_one_testcase_per_check_and_a_failure_per_difference():
    root = ET.fromstring(render_report(CHECKS, "junit"))  # noqa: S314 - our own output
    assert root.tag == "testsuites"
    assert (root.get("tests"), root.get("failures")) == ("5", "2")
    suites = root.findall("testsuite")
    assert [(s.get("name"), s.get("tests"), s.get("failures")) for s in suites] == [
        ("audit db1", "4", "1"),
        ("audit db2", "1", "1"),
    ]
    failures = root.findall(".//testcase/failure")
    assert [f.get("message") for f in failures] == [
        "declared no, actual yes",
        "declared not granted, actual granted",
    ]
    assert root.find(".//testcase[@name='app_runtime role SUPERUSER']") is not None
    assert root.find(".//testcase/system-out").text.startswith("NOTE probes")


def test_an_empty_audit_still_renders_in_every_format():
    assert set(FORMATS) == {"text", "json", "markdown", "junit"}
    assert render_report([], "text") == "0 checks, 0 differences\n"
    assert json.loads(render_report([], "json")) == []
    assert "**0 checks, 0 differences**" in render_report([], "markdown")
    root = ET.fromstring(render_report([], "junit"))  # noqa: S314 - our own output
    assert (root.get("tests"), root.get("failures"), len(root)) == ("0", "0", 0)
