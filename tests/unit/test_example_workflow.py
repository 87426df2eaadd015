"""The example CI workflow (examples/github-actions.yml) parses, and everything it calls exists:
console scripts declared in pyproject.toml (and importable), make targets, test files,
inventories; its grant tests are CI's container list; the JUnit report it uploads is the one
the audit writes. It is no door: no job a pull request can start holds a secret, every action
is pinned to the commit of the tag its comment names, and zizmor finds nothing of medium
severity or above in any workflow under examples/."""

from __future__ import annotations

import importlib
import itertools
import json
import re
import shlex
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
WORKFLOW = REPO / "examples" / "github-actions.yml"
ZIZMOR = Path(sys.executable).parent / "zizmor"
# Each action's tag and that tag's commit, verified on 2026-12-06 with
# `git rev-parse <tag>^{commit}` in a mirror of the action's public repository (fetched from
# github.com/actions/<name>); zizmor offline cannot check that a SHA matches its tag.
PINS = {
    "actions/checkout": ("3d3c42e5aac5ba805825da76410c181273ba90b1", "v7.0.1"),
    "actions/setup-python": ("5fda3b95a4ea91299a34e894583c3862153e4b97", "v7.0.0"),
    "actions/upload-artifact": ("bbbca2ddaa5d8feaa63e36b76fdaad77386f024f", "v7.0.0"),
}
JOBS = {"grant-tests", "throwaway-plan", "plan-and-audit", "deploy"}
# A job's `if` and whether a pull_request event can start it.
REACHED_FROM_PULL_REQUESTS = {
    None: True,
    "github.event_name == 'pull_request'": True,
    "github.event_name != 'pull_request'": False,
    "github.event_name == 'push'": False,
}


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
    assert {"pull_request", "push", "schedule"} <= set(triggers)
    assert set(workflow["jobs"]) == JOBS
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
    assert {"pgprov-plan", "pgprov-verify", "pyinfra"} <= called
    for command in called - {"python", "pyinfra"}:
        assert command in scripts, f"{command} is not a console script in pyproject.toml"
        module, _, function = scripts[command].partition(":")
        assert callable(getattr(importlib.import_module(module), function)), command


def test_make_targets_test_files_and_inventories_exist(workflow: dict[str, Any]):
    makefile = (REPO / "Makefile").read_text()
    all_words = words(workflow)
    for before, target in itertools.pairwise(all_words):
        if before == "make":
            assert re.search(rf"^{re.escape(target)}:", makefile, re.M), f"make {target}"
    paths = [w for w in all_words if w.startswith("tests/")]
    assert paths
    for path in paths:
        assert (REPO / path).exists(), path
    for name, job in workflow["jobs"].items():
        if "INVENTORY" not in job.get("env", {}):
            continue
        assert job["env"]["INVENTORY"] == "inventories/${{ matrix.environment }}.py", name
        for environment in job["strategy"]["matrix"]["environment"]:
            assert (REPO / "inventories" / f"{environment}.py").is_file(), (name, environment)


def test_grant_tests_are_ci_container_list(workflow: dict[str, Any]):
    ci = (REPO / ".ci" / "run").read_text()
    container_run = ci[ci.index("PGPROV_TEST_BACKEND=container make test") :]
    expected = set(re.findall(r"tests/\S+\.py", container_run))
    grant_step = workflow["jobs"]["grant-tests"]["steps"][-1]
    assert grant_step["env"]["PGPROV_TEST_BACKEND"] == "container"
    assert set(re.findall(r"tests/\S+\.py", grant_step["run"])) == expected


def reached_from_pull_requests(workflow: dict[str, Any], name: str) -> bool:
    job = workflow["jobs"][name]
    condition = job.get("if")
    assert condition in REACHED_FROM_PULL_REQUESTS, f"{name}: read its if: {condition}"
    needs = job.get("needs", [])
    return REACHED_FROM_PULL_REQUESTS[condition] and all(
        reached_from_pull_requests(workflow, need) for need in needs
    )


def test_no_job_a_pull_request_starts_holds_a_secret(workflow: dict[str, Any]):
    reached = {name for name in workflow["jobs"] if reached_from_pull_requests(workflow, name)}
    assert reached == {"grant-tests", "throwaway-plan"}
    for name in reached:
        assert "secrets." not in json.dumps(workflow["jobs"][name]), name
    # The real environments' secrets come from their GitHub environments, not the repository.
    for name in JOBS - reached:
        job = workflow["jobs"][name]
        assert job["environment"].startswith("${{ matrix.environment }}"), name
    assert workflow["jobs"]["deploy"]["environment"].endswith("-deploy")
    assert workflow["jobs"]["deploy"]["if"] == "github.event_name == 'push'"


def test_every_job_has_least_permissions_and_no_checkout_keeps_the_token(
    workflow: dict[str, Any],
):
    assert workflow["permissions"] == {}
    for name, job in workflow["jobs"].items():
        assert job["permissions"] == {"contents": "read"}, name
        for step in job["steps"]:
            if step.get("uses", "").startswith("actions/checkout@"):
                assert step["with"]["persist-credentials"] is False, name


def test_plans_are_markdown_in_the_summary_and_the_uploaded_report_is_the_audits(
    workflow: dict[str, Any],
):
    for name in ("throwaway-plan", "plan-and-audit"):
        job_steps = workflow["jobs"][name]["steps"]
        script = next(s["run"] for s in job_steps if "pgprov-plan" in s.get("run", ""))
        lines = {
            line.split()[0].rsplit("/", 1)[-1]: shlex.split(line.split("||")[0])
            for line in script.splitlines()
            if line.startswith(".venv/bin/pgprov-")
        }
        plan, audit = lines["pgprov-plan"], lines["pgprov-verify"]
        assert plan[plan.index("--format") + 1] == "markdown"
        assert audit[audit.index("--format") + 1] == "junit"
        assert "$GITHUB_STEP_SUMMARY" in script
        upload = next(
            s for s in job_steps if s.get("uses", "").startswith("actions/upload-artifact@")
        )
        uploaded = upload["with"]["path"].split()
        assert audit[audit.index("--output") + 1] in uploaded, name
        assert plan[plan.index("--output") + 1].startswith(uploaded[0]), name
        assert upload["if"] == "always()"  # the report matters most when the audit fails


def test_actions_are_pinned_to_the_commit_of_the_tag_in_their_comment():
    uses = re.findall(r"uses: ([\w.-]+/[\w.-]+)@(\S+)(?:\s+#\s*(\S+))?", WORKFLOW.read_text())
    assert uses
    for action, ref, tag in uses:
        assert action in PINS, f"{action}: verify its tag's commit and add it to PINS"
        assert (ref, tag) == PINS[action], action


@pytest.mark.parametrize("path", sorted((REPO / "examples").glob("*.yml")), ids=lambda p: p.name)
def test_zizmor_finds_nothing_of_medium_severity_or_above(path: Path):
    assert ZIZMOR.is_file(), f"{ZIZMOR} is missing: make venv (zizmor is a test extra)"
    # By path: given a directory, zizmor only collects .github/workflows/.
    proc = subprocess.run(
        [str(ZIZMOR), "--offline", "--min-severity", "medium", "--format", "json", str(path)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    findings = json.loads(proc.stdout or "null")
    assert findings == [], [(f["ident"], f["desc"]) for f in findings or []]
    assert proc.returncode == 0, proc.stderr
