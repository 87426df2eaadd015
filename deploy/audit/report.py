"""The audit's matrix: one ``Check`` per row, and its formats (text, json, markdown, junit).

A check is one comparison (who, on what, which privilege or attribute: declared, actual,
verdict). Formatting is pure, so the formats are tested without a database:

    checks = [Check("@local", "roles", "app_runtime", "role", "SUPERUSER", "no", "yes")]
    print(render_report(checks, "text"))   # grouped matrix + "1 checks, 1 differences"
"""

from __future__ import annotations

import json
import sys
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal

Verdict = Literal["OK", "DRIFT", "NOTE"]
FORMATS = ("text", "json", "markdown", "junit")
# The order groups are shown in; a group not listed here comes last, in order of appearance.
GROUP_ORDER = (
    "access",
    "bypass",
    "roles",
    "memberships",
    "readers",
    "settings",
    "ownership",
    "code",
    "privileges",
    "default privileges",
    "public",
    "bookkeeping",
    "index",
    "migrations",
    "probes",
)
COLUMNS = ("verdict", "subject", "object", "check", "declared", "actual")


@dataclass(frozen=True)
class Check:
    """One row of the matrix.

    ``verdict`` is OK or DRIFT when ``declared`` and ``actual`` are compared; NOTE is for a
    fact worth showing that the spec does not govern (it never counts as a difference).
    """

    host: str
    group: str
    subject: str  # a role, or PUBLIC
    object: str  # "database d", "table app.checklist", "role", ...
    check: str  # a privilege, an attribute, "owner", "search_path", a probe
    declared: str
    actual: str
    verdict: Verdict = "OK"
    detail: str = ""

    @classmethod
    def compare(
        cls,
        host: str,
        group: str,
        subject: str,
        obj: str,
        check: str,
        declared: str,
        actual: str,
        detail: str = "",
    ) -> Check:
        verdict: Verdict = "OK" if declared == actual else "DRIFT"
        return cls(host, group, subject, obj, check, declared, actual, verdict, detail)

    @property
    def is_difference(self) -> bool:
        return self.verdict == "DRIFT"

    def sentence(self) -> str:
        """The row as one line: what was checked, what was declared, what was found."""
        text = (
            f"{self.verdict} {self.group}: {self.subject} {self.object} {self.check}: "
            f"declared {self.declared}, actual {self.actual}"
        )
        return f"{text} ({self.detail})" if self.detail else text


def summary(checks: Sequence[Check]) -> str:
    differences = sum(check.is_difference for check in checks)
    return f"{len(checks)} checks, {differences} differences"


def grouped(checks: Iterable[Check]) -> list[tuple[str, str, list[Check]]]:
    """(host, group, rows) in host order of appearance, then GROUP_ORDER."""
    buckets: dict[tuple[str, str], list[Check]] = {}
    hosts: list[str] = []
    for check in checks:
        if check.host not in hosts:
            hosts.append(check.host)
        buckets.setdefault((check.host, check.group), []).append(check)

    def rank(group: str) -> int:
        return GROUP_ORDER.index(group) if group in GROUP_ORDER else len(GROUP_ORDER)

    out = []
    for host in hosts:
        groups = [g for h, g in buckets if h == host]
        for group in sorted(groups, key=rank):
            out.append((host, group, buckets[(host, group)]))
    return out


def _cells(check: Check) -> list[str]:
    actual = f"{check.actual} ({check.detail})" if check.detail else check.actual
    return [check.verdict, check.subject, check.object, check.check, check.declared, actual]


def format_text(checks: Sequence[Check], headers: dict[str, str] | None = None) -> str:
    """The matrix, one aligned table per host and group, then the summary line.

    Cells are separated by at least two spaces and never contain two in a row, so a row
    splits back into its cells with ``re.split(r"\\s{2,}", line.strip())``.
    """
    headers = headers or {}
    lines: list[str] = []
    current_host = None
    for host, group, group_checks in grouped(checks):
        if host != current_host:
            if lines:
                lines.append("")
            lines.append(headers.get(host, host))
            current_host = host
        lines.append(f"  {group}")
        # Aligned per group: one long index definition should not widen every table.
        rows = [_cells(c) for c in group_checks]
        widths = [max(len(r[i]) for r in rows) for i in range(len(COLUMNS) - 1)]
        for cells in rows:
            padded = [cell.ljust(width) for cell, width in zip(cells, widths, strict=False)]
            lines.append("    " + "  ".join([*padded, cells[-1]]).rstrip())
    if lines:
        lines.append("")
    lines.append(summary(checks))
    return "\n".join(lines) + "\n"


def format_json(checks: Sequence[Check], headers: dict[str, str] | None = None) -> str:
    """A JSON list of check objects (every field, plus ``difference``)."""
    return (
        json.dumps(
            [{**asdict(c), "difference": c.is_difference} for c in checks],
            indent=2,
        )
        + "\n"
    )


def _md(text: str) -> str:
    return text.replace("|", "\\|")


def format_markdown(checks: Sequence[Check], headers: dict[str, str] | None = None) -> str:
    """A Markdown table per host (group as the first column), then the summary."""
    headers = headers or {}
    lines: list[str] = []
    current_host = None
    for host, group, group_checks in grouped(checks):
        if host != current_host:
            if lines:
                lines.append("")
            lines += [
                f"### {_md(headers.get(host, host))}",
                "",
                "| group | " + " | ".join(COLUMNS) + " |",
                "|" + "---|" * (len(COLUMNS) + 1),
            ]
            current_host = host
        for check in group_checks:
            cells = [group, *_cells(check)]
            if check.is_difference:
                cells[1] = f"**{cells[1]}**"
            lines.append("| " + " | ".join(_md(cell) for cell in cells) + " |")
    lines += ["", f"**{summary(checks)}**"]
    return "\n".join(lines) + "\n"


def format_junit(checks: Sequence[Check], headers: dict[str, str] | None = None) -> str:
    """JUnit XML: one testsuite per host, one testcase per check, a failure per difference."""
    root = ET.Element(
        "testsuites",
        name="pgprov audit",
        tests=str(len(checks)),
        failures=str(sum(c.is_difference for c in checks)),
    )
    suites: dict[str, ET.Element] = {}
    for host, group, group_checks in grouped(checks):
        suite = suites.get(host)
        if suite is None:
            host_checks = [c for c in checks if c.host == host]
            suite = ET.SubElement(
                root,
                "testsuite",
                name=f"audit {host}",
                tests=str(len(host_checks)),
                failures=str(sum(c.is_difference for c in host_checks)),
                errors="0",
                skipped="0",
            )
            suites[host] = suite
        for check in group_checks:
            case = ET.SubElement(
                suite,
                "testcase",
                classname=f"audit.{host}.{group}".replace(" ", "_"),
                name=f"{check.subject} {check.object} {check.check}",
            )
            if check.is_difference:
                failure = ET.SubElement(
                    case,
                    "failure",
                    message=f"declared {check.declared}, actual {check.actual}",
                    type="drift",
                )
                failure.text = check.sentence()
            elif check.verdict == "NOTE":
                ET.SubElement(case, "system-out").text = check.sentence()
    ET.indent(root)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"


FORMATTERS: dict[str, Callable[[Sequence[Check], dict[str, str] | None], str]] = {
    "text": format_text,
    "json": format_json,
    "markdown": format_markdown,
    "junit": format_junit,
}


def render_report(
    checks: Sequence[Check], fmt: str = "text", headers: dict[str, str] | None = None
) -> str:
    """The report in one of FORMATS; ``headers`` maps a host to its title line."""
    return FORMATTERS[fmt](checks, headers)


def write_output(path: Path, text: str) -> bool:
    """Write a CI artifact (``--output``), creating its directory; False after one line on
    stderr naming the path when it cannot be written."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    except OSError as exc:
        print(f"--output {path}: {exc.strerror or exc}", file=sys.stderr)
        return False
    return True


def exit_code(command: str, run: Callable[[], int]) -> int:
    """A console script's exit code: ``run()``'s, or 2 with one line on an interruption or an
    unexpected failure (a bug is an error, never a traceback whose exit status 1 would read as
    drift in CI). Only the type and message are printed: secrets are Secret values, which
    never print themselves."""
    try:
        return run()
    except KeyboardInterrupt:
        print(f"{command}: interrupted", file=sys.stderr)
        return 2
    except Exception as exc:
        print(f"{command}: unexpected error: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 2
