"""The example CI workflow (examples/github-actions.yml) parses, and everything it calls exists:
console scripts declared in pyproject.toml (and importable), make targets, test files,
inventories; its grant tests are CI's container list; the JUnit report it uploads is the one
the audit writes."""

from __future__ import annotations

import importlib
import itertools
import re
import shlex
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
WORKFLOW = REPO / "examples" / "github-actions.yml"


@pytest.fixture(scope="module")
def workflow() -> dict[str, Any]:
    return yaml.safe_load(WORKFLOW.read_text())


@pytest.fixture(scope="module")
def scripts() -> dict[str, str]:
    return tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["scripts"]


def steps(workflow: dict[str, Any]) -> list[dict[str, Any]]:
    return [step for job in workflow["jobs"].values() for step in job["steps"]]


def run_scripts(workflow: dict[str, Any]) -> list[str]:
    return [step["run"] for step in steps(workflow) if "run" in step]


def words(workflow: dict[str, Any]) -> list[str]:
    found: list[str] = []
    for script in run_scripts(workflow):
        for line in script.splitlines():
            found += shlex.split(line, comments=True)
    return found


def test_workflow_is_github_actions_yaml(workflow: dict[str, Any]):
    # YAML 1.1 reads the bare key `on` as the boolean True.
    triggers = workflow.get("on", workflow.get(True))
    assert "pull_request" in triggers
    assert set(workflow["jobs"]) == {"grant-tests", "plan", "verify"}
    for name, job in workflow["jobs"].items():
        assert job["runs-on"], name
        assert all(("run" in step) != ("uses" in step) for step in job["steps"]), name


def test_every_console_script_it_calls_is_declared_and_importable(
    workflow: dict[str, Any], scripts: dict[str, str]
):
    called = {
        re.sub(r"^\.venv/bin/", "", word)
        for word in words(workflow)
        if word.startswith(".venv/bin/") or word.startswith("pgprov-")
    }
    assert {"pgprov-plan", "pgprov-verify"} <= called
    for command in called - {"python"}:
        assert command in scripts, f"{command} is not a console script in pyproject.toml"
        module, _, function = scripts[command].partition(":")
        assert callable(getattr(importlib.import_module(module), function)), command


def test_make_targets_test_files_and_inventories_exist(workflow: dict[str, Any]):
    makefile = (REPO / "Makefile").read_text()
    all_words = words(workflow)
    for before, target in itertools.pairwise(all_words):
        if before == "make":
            assert re.search(rf"^{re.escape(target)}:", makefile, re.M), f"make {target}"
    paths = [w for w in all_words if w.startswith(("tests/", "inventories/"))]
    assert paths
    for path in paths:
        assert (REPO / path).is_file(), path


def test_grant_tests_are_ci_container_list(workflow: dict[str, Any]):
    ci = (REPO / ".ci" / "run").read_text()
    container_run = ci[ci.index("PGPROV_TEST_BACKEND=container make test") :]
    expected = set(re.findall(r"tests/\S+\.py", container_run))
    grant_step = workflow["jobs"]["grant-tests"]["steps"][-1]
    assert grant_step["env"]["PGPROV_TEST_BACKEND"] == "container"
    assert set(re.findall(r"tests/\S+\.py", grant_step["run"])) == expected


def test_plans_are_markdown_for_staging_and_production_and_become_the_comment(
    workflow: dict[str, Any],
):
    plan_steps = workflow["jobs"]["plan"]["steps"]
    outputs = []
    for step in plan_steps:
        argv = shlex.split(step.get("run", "").split("||")[0])
        if argv and argv[0].endswith("pgprov-plan"):
            assert argv[argv.index("--format") + 1] == "markdown"
            outputs.append((argv[1], argv[argv.index("--output") + 1]))
    assert [inventory for inventory, _ in outputs] == [
        "inventories/staging.py",
        "inventories/production.py",
    ]
    comment = plan_steps[-1]["run"]
    assert "gh pr comment" in comment
    for _, output in outputs:
        assert output in comment
    assert workflow["jobs"]["plan"]["permissions"]["pull-requests"] == "write"


def test_the_uploaded_junit_report_is_the_one_the_audit_writes(workflow: dict[str, Any]):
    verify_steps = workflow["jobs"]["verify"]["steps"]
    audit = next(s for s in verify_steps if "pgprov-verify" in s.get("run", ""))
    argv = shlex.split(audit["run"])
    assert argv[argv.index("--format") + 1] == "junit"
    upload = next(
        s for s in verify_steps if s.get("uses", "").startswith("actions/upload-artifact")
    )
    assert upload["with"]["path"] == argv[argv.index("--output") + 1]
    assert upload["if"] == "always()"  # the report matters most when the audit fails


def test_actions_are_pinned_to_a_version(workflow: dict[str, Any]):
    for step in steps(workflow):
        if "uses" in step:
            assert re.fullmatch(r"[\w.-]+/[\w.-]+@v\d+", step["uses"]), step["uses"]
