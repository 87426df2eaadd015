"""Reading inventory files outside pyinfra: hosts, groups, --limit, and the repo's inventories."""

from __future__ import annotations

from pathlib import Path

import pytest
from pgprov.model.inventory import InventoryError, load_hosts, load_specs
from pgprov.model.spec import SpecError
from pgprov.steps.gin import expected_definition

REPO = Path(__file__).resolve().parents[2]
SPLIT_DATA = (
    '{"pg_environment": "staging", "pg_profile": "split", '
    '"pg_migrator_password": "env:M", "pg_runtime_password": "env:R"}'
)


def inventory(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "inv.py"
    path.write_text(text)
    return path


def test_hosts_plain_and_with_data_keep_file_order(tmp_path: Path) -> None:
    path = inventory(tmp_path, 'hosts = ["a", ("b", {"x": 1}), "c"]\n')
    assert load_hosts(path) == [("a", {}), ("b", {"x": 1}), ("c", {})]


def test_group_data_applies_to_every_host_and_host_data_wins(tmp_path: Path) -> None:
    path = inventory(
        tmp_path,
        'web = (["w1", ("w2", {"role": "special"})], {"role": "web", "port": 1})\n',
    )
    assert load_hosts(path) == [
        ("w1", {"role": "web", "port": 1}),
        ("w2", {"role": "special", "port": 1}),
    ]


def test_host_in_two_groups_is_listed_once_with_both_groups_data(tmp_path: Path) -> None:
    path = inventory(
        tmp_path,
        'a = (["h1", "h2"], {"from_a": 1})\nb = (["h1"], {"from_b": 2})\n',
    )
    assert load_hosts(path) == [("h1", {"from_a": 1, "from_b": 2}), ("h2", {"from_a": 1})]


def test_host_data_wins_over_another_groups_data(tmp_path: Path) -> None:
    path = inventory(
        tmp_path,
        'db = [("h1", {"pg_schema": "mine"})]\nall_dbs = (["h1"], {"pg_schema": "group"})\n',
    )
    assert load_hosts(path) == [("h1", {"pg_schema": "mine"})]


def test_private_names_and_non_host_values_are_ignored(tmp_path: Path) -> None:
    path = inventory(
        tmp_path,
        'import os\n_hidden = ["x"]\nTARGET = "t"\nsettings = {"a": 1}\nhosts = ["h"]\n',
    )
    assert [name for name, _ in load_hosts(path)] == ["h"]


def test_limit_keeps_one_group_or_one_host(tmp_path: Path) -> None:
    path = inventory(tmp_path, 'web = ["w1", "w2"]\ndb = ["d1"]\n')
    assert [n for n, _ in load_hosts(path, limit="web")] == ["w1", "w2"]
    assert [n for n, _ in load_hosts(path, limit="d1")] == ["d1"]


def test_limit_matching_nothing_is_an_error_naming_it(tmp_path: Path) -> None:
    path = inventory(tmp_path, 'hosts = ["h"]\n')
    with pytest.raises(InventoryError, match="--limit nope matches no host or group"):
        load_hosts(path, limit="nope")


def test_missing_file_and_empty_inventory_are_errors(tmp_path: Path) -> None:
    with pytest.raises(InventoryError, match="no such inventory file"):
        load_hosts(tmp_path / "absent.py")
    with pytest.raises(InventoryError, match="defines no hosts"):
        load_hosts(inventory(tmp_path, "x = 1\n"))


def test_specs_are_validated_and_name_the_inventory(tmp_path: Path) -> None:
    path = inventory(tmp_path, f"hosts = [('db1', {SPLIT_DATA})]\n")
    [(name, spec)] = load_specs(path)
    assert name == "db1"
    assert spec.inventory == str(path)
    assert spec.roles == ["app_migrator", "app_runtime"]


def test_invalid_host_data_is_a_spec_error_naming_file_and_host(tmp_path: Path) -> None:
    path = inventory(tmp_path, "hosts = [('db1', {'pg_environment': 'staging'})]\n")
    with pytest.raises(SpecError, match=rf"^{tmp_path}/inv.py: host db1: pg_profile: "):
        load_specs(path)


# --- the repository's inventories --------------------------------------------------------------


@pytest.fixture
def controller_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(REPO)
    for name in ("DB_TARGET", "PGHOST", "PGPORT", "PGUSER", "PGPASSWORD", "PGPROV_SCHEMA_MODE"):
        monkeypatch.delenv(name, raising=False)
    for name in ("APP_MIGRATOR_PASSWORD", "APP_RUNTIME_PASSWORD", "APP_DB_PASSWORD"):
        monkeypatch.setenv(name, "unused-by-the-loader")


@pytest.mark.usefixtures("controller_env")
@pytest.mark.parametrize(
    ("file", "host", "environment"),
    [
        ("staging.py", "db1.staging.example.com", "staging"),
        ("production.py", "db1.production.example.com", "production"),
    ],
)
def test_remote_split_inventories_load(file: str, host: str, environment: str) -> None:
    [(name, spec)] = load_specs(f"inventories/{file}")
    assert name == host
    assert spec.inventory == f"inventories/{file}"
    assert (spec.environment, spec.profile) == (environment, "split")
    assert spec.admin.sudo_user == "postgres"
    assert spec.tunnel
    assert (spec.app_host, spec.app_port) == ("127.0.0.1", 5432)
    assert {r.source for r in spec.passwords.values()} == {
        "APP_MIGRATOR_PASSWORD",
        "APP_RUNTIME_PASSWORD",
    }


@pytest.mark.usefixtures("controller_env")
def test_production_inventory_follows_libpq_variables_when_pointed_elsewhere(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("DB_TARGET", "@local")
    monkeypatch.setenv("PGHOST", "managed.example.com")
    monkeypatch.setenv("PGPORT", "6543")
    monkeypatch.setenv("PGUSER", "admin")
    monkeypatch.setenv("PGPASSWORD", "admin-pw")
    [(name, spec)] = load_specs("inventories/production.py")
    assert name == "@local"
    assert (spec.admin.host, spec.admin.port, spec.admin.user) == (
        "managed.example.com",
        6543,
        "admin",
    )
    assert spec.admin.sudo_user is None
    assert spec.admin.password is not None
    assert spec.admin.password.source == "PGPASSWORD"
    assert (spec.app_host, spec.app_port) == ("managed.example.com", 6543)
    assert not spec.tunnel


@pytest.mark.usefixtures("controller_env")
def test_dev_inventory_is_single_user_with_createdb_on_local() -> None:
    [(name, spec)] = load_specs("inventories/dev.py")
    assert name == "@local"
    assert (spec.environment, spec.profile, spec.createdb) == ("dev", "single_user", True)
    assert spec.roles == ["hinfelaar_fastapi_db_user"]
    assert spec.passwords["hinfelaar_fastapi_db_user"].source == "APP_DB_PASSWORD"
    assert (spec.admin.host, spec.admin.port) == ("localhost", 5432)


@pytest.mark.usefixtures("controller_env")
def test_local_inventory_pointed_at_a_server_starts_nothing(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import pgprov.local.embedded

    def no_server(*args: object, **kwargs: object) -> None:
        raise AssertionError("inventories/local.py started the embedded server")

    monkeypatch.setattr(pgprov.local.embedded, "ensure_local_server", no_server)
    monkeypatch.setenv("PGHOST", "127.0.0.1")
    monkeypatch.setenv("PGPORT", "15432")
    [(name, spec)] = load_specs("inventories/local.py")
    assert name == "@local"
    assert (spec.environment, spec.profile) == ("local", "split")
    assert (spec.admin.host, spec.admin.port) == ("127.0.0.1", 15432)
    assert (spec.app_host, spec.app_port) == ("127.0.0.1", 15432)
    assert spec.passwords["app_runtime"].source == "APP_RUNTIME_PASSWORD"


@pytest.mark.usefixtures("controller_env")
def test_staging_and_production_declare_the_same_index_serving_key_existence() -> None:
    """Staging tests production's query plans; the service's `?` queries need jsonb_ops."""
    [(_, staging)] = load_specs("inventories/staging.py")
    [(_, production)] = load_specs("inventories/production.py")
    assert expected_definition(staging) == expected_definition(production)
    assert staging.gin_opclass == production.gin_opclass == "jsonb_ops"


@pytest.mark.usefixtures("controller_env")
def test_staging_and_production_differ_only_in_where_they_point() -> None:
    [(_, staging)] = load_specs("inventories/staging.py")
    [(_, production)] = load_specs("inventories/production.py")
    differing = {
        name
        for name in type(staging).model_fields
        if getattr(staging, name) != getattr(production, name)
    }
    assert differing == {"inventory", "environment", "host"}


# --- the same reading as pyinfra's CLI -----------------------------------------------------------

# pyinfra's own loader, in a subprocess: importing pyinfra_cli monkey-patches this process.
PYINFRA_READS = """
import json, os, sys
from pyinfra_cli.inventory import make_inventory_from_files
from pyinfra.api import State
from pyinfra.context import ctx_state
with ctx_state.use(State()):
    inventory = make_inventory_from_files(sys.argv[1], cwd=os.getcwd())
hosts = [
    [h.name, {**inventory.get_data(), **inventory.get_groups_data(h.groups),
              **inventory.get_host_data(h.name)}]
    for h in inventory
]
groups = {g: [h.name for h in inventory.get_group(g)] for g in inventory.groups}
print(json.dumps({"hosts": hosts, "groups": groups}, default=repr))
"""

# Groups with and without data, a host in two groups, host data over group data over all's,
# an explicit `all` with its own data, the file's own name as a group, private names, group
# data files next to the working directory and next to the inventory (imports are not data,
# unless __all__ says so), and one for a group no host is in.
CASES = {
    "groups": (
        'import os\n_hidden = ["x"]\nsettings = {"a": 1}\n'
        'web = (["w1", ("w2", {"role": "special"})], {"role": "web", "port": 1})\n'
        'db = [("d1", {"pg_schema": "mine"}), "w1"]\n'
        'all_dbs = (["d1", "w2"], {"pg_schema": "group", "tier": 2})\n'
    ),
    "explicit_all": (
        'all = (["a", ("b", {"x": 1})], {"everyone": True, "x": 0})\n'
        'odd = (["b"], {"x": 5, "y": 6})\n'
    ),
    "own_name_group": 'own_name_group = (["n1"], {"mine": 1})\nother = ["n2"]\n',
}
GROUP_DATA = {
    "cwd": {"web.py": "import json\nport = 8\nextra = json.dumps([1])\n"},
    "inventory": {
        "db.py": '__all__ = ["pg_schema", "os"]\nimport os\npg_schema = "from_file"\n',
        "all.py": 'from pathlib import Path\nx = 9\nregion = "eu"\n',
        "lonely.py": 'nobody = "here"\n',
    },
}


def pyinfra_reads(inventory: Path, cwd: Path) -> dict:
    import json
    import subprocess
    import sys

    proc = subprocess.run(
        [sys.executable, "-c", PYINFRA_READS, str(inventory)],
        cwd=cwd,
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(proc.stdout)


@pytest.mark.parametrize("case", sorted(CASES))
def test_hosts_data_and_groups_are_read_as_pyinfra_reads_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, case: str
) -> None:
    import json

    from pgprov.model.inventory import read_inventory

    cwd, folder = tmp_path / "project", tmp_path / "project" / "inventories"
    folder.mkdir(parents=True)
    for where, root in (("cwd", cwd), ("inventory", folder)):
        (root / "group_data").mkdir()
        for name, text in GROUP_DATA[where].items():
            (root / "group_data" / name).write_text(text)
    path = folder / f"{case}.py"
    path.write_text(CASES[case])
    theirs = pyinfra_reads(path, cwd)
    monkeypatch.chdir(cwd)
    ours = read_inventory(path)
    assert json.loads(json.dumps(ours.hosts(), default=repr)) == theirs["hosts"]
    # A connector's own group (@local) is pyinfra's addition; a group only data names has no
    # host, so pyinfra lists none.
    groups = {g: members for g, members in theirs["groups"].items() if not g.startswith("@")}
    assert {g for g, (entries, _) in ours.groups.items() if entries} == set(groups)
    for group, members in groups.items():
        assert ours.select(group) == members


@pytest.mark.usefixtures("controller_env")
@pytest.mark.parametrize("file", ["staging.py", "production.py", "dev.py"])
def test_the_repositorys_inventories_are_read_as_pyinfra_reads_them(file: str) -> None:
    import json

    from pgprov.model.inventory import read_inventory

    theirs = pyinfra_reads(REPO / "inventories" / file, REPO)
    ours = read_inventory(f"inventories/{file}")
    assert json.loads(json.dumps(ours.hosts(), default=repr)) == theirs["hosts"]
    assert theirs["hosts"]
