"""profiles.yml: lookup order, profile/target choice, validation and secret handling."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from sixtyfour_sync.config.profiles import (
    DuckDBTarget,
    PostgresTarget,
    SnowflakeTarget,
    SqlAlchemyTarget,
    find_profiles_file,
    load_target,
    parse_target_config,
)
from sixtyfour_sync.errors import ConfigError

REPO = Path(__file__).resolve().parents[2]

PROFILES = """\
sixtyfour:
  target: dev
  outputs:
    dev:
      type: duckdb
      path: warehouse.duckdb
    pg:
      type: postgres
      host: 127.0.0.1
      port: 5432
      user: postgres
      password: "{{ env_var('SF_TEST_PGPASSWORD') }}"
      dbname: test
      schema: public
      threads: 4
      keepalives_idle: 0
      search_path: public
other:
  outputs:
    only:
      type: duckdb
      path: other.duckdb
"""


def write(directory: Path, text: str = PROFILES) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "profiles.yml"
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


# ---------------------------------------------------------------------------------------------- lookup


def test_lookup_order(tmp_path: Path) -> None:
    project, flag, ours, dbt, home = (tmp_path / n for n in ("project", "flag", "ours", "dbt", "home"))
    for d in (project, flag, ours, dbt, home / ".dbt"):
        write(d)
    env = {"SIXTYFOUR_SYNC_PROFILES_DIR": str(ours), "DBT_PROFILES_DIR": str(dbt)}
    assert find_profiles_file(project_dir=project, profiles_dir=flag, env=env, home=home) == flag / "profiles.yml"
    assert find_profiles_file(project_dir=project, env=env, home=home) == ours / "profiles.yml"
    assert (
        find_profiles_file(project_dir=project, env={"DBT_PROFILES_DIR": str(dbt)}, home=home) == dbt / "profiles.yml"
    )
    assert find_profiles_file(project_dir=project, env={}, home=home) == project / "profiles.yml"
    (project / "profiles.yml").unlink()
    assert find_profiles_file(project_dir=project, env={}, home=home) == home / ".dbt" / "profiles.yml"


def test_an_explicit_directory_without_profiles_is_an_error(tmp_path: Path) -> None:
    write(tmp_path / "project")
    with pytest.raises(ConfigError, match=r"no profiles.yml in .*empty \(from SIXTYFOUR_SYNC_PROFILES_DIR\)"):
        find_profiles_file(
            project_dir=tmp_path / "project", env={"SIXTYFOUR_SYNC_PROFILES_DIR": str(tmp_path / "empty")}
        )


def test_nothing_found_lists_where_it_looked(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        find_profiles_file(project_dir=tmp_path / "p", env={}, home=tmp_path / "h")
    assert str(tmp_path / "p" / "profiles.yml") in str(info.value)
    assert str(tmp_path / "h" / ".dbt" / "profiles.yml") in str(info.value)


# ---------------------------------------------------------------------------------------------- choice


def test_default_profile_and_target(tmp_path: Path) -> None:
    write(tmp_path)
    resolved = load_target(project_dir=tmp_path, env={})
    assert (resolved.profile, resolved.target, resolved.file) == ("sixtyfour", "dev", tmp_path / "profiles.yml")
    assert isinstance(resolved.config, DuckDBTarget)
    assert resolved.config.schema == "main"
    # Relative duckdb paths resolve against the project directory.
    assert resolved.config.resolved_path(tmp_path) == str(tmp_path / "warehouse.duckdb")


def test_flags_win_over_file_defaults(tmp_path: Path) -> None:
    write(tmp_path)
    resolved = load_target(project_dir=tmp_path, target="pg", env={"SF_TEST_PGPASSWORD": "hunter22"})
    assert isinstance(resolved.config, PostgresTarget)
    assert resolved.config.password is not None and resolved.config.password.get() == "hunter22"
    assert "hunter22" not in repr(resolved) and "hunter22" not in resolved.describe()
    # model/dbt_project default profile, then --profile over it; a single output needs no target:
    other = load_target(project_dir=tmp_path, default_profile="other", env={})
    assert (other.profile, other.target) == ("other", "only")
    assert (
        load_target(project_dir=tmp_path, profile="sixtyfour", default_profile="other", env={}).profile == "sixtyfour"
    )


def test_unknown_profile_lists_available(tmp_path: Path) -> None:
    path = write(tmp_path)
    with pytest.raises(ConfigError) as info:
        load_target(project_dir=tmp_path, profile="nope", env={})
    assert f"profile 'nope' not found in {path}; available: sixtyfour, other" in str(info.value)


def test_unknown_target_lists_available(tmp_path: Path) -> None:
    write(tmp_path)
    with pytest.raises(ConfigError, match="target 'prod' not found in profile 'sixtyfour'; available: dev, pg"):
        load_target(project_dir=tmp_path, target="prod", env={})


def test_env_vars_of_other_targets_need_not_be_set(tmp_path: Path) -> None:
    write(tmp_path)
    assert load_target(project_dir=tmp_path, env={}).target == "dev"  # pg's SF_TEST_PGPASSWORD is unset: fine
    with pytest.raises(ConfigError, match="'SF_TEST_PGPASSWORD' is not set"):
        load_target(project_dir=tmp_path, target="pg", env={})


def test_validation_errors_name_file_path_and_line(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """\
        sixtyfour:
          target: dev
          outputs:
            dev:
              type: postgres
              host: localhost
              usr: me
              port: not-a-port
        """,
    )
    with pytest.raises(ConfigError) as info:
        load_target(project_dir=tmp_path, env={})
    problems = {p.path: p for p in info.value.problems}
    assert problems["sixtyfour.outputs.dev.usr"].line == 7
    assert problems["sixtyfour.outputs.dev.usr"].message == "unknown key 'usr'"
    assert problems["sixtyfour.outputs.dev.port"].line == 8
    assert "missing required key 'user'" in str(info.value)
    assert all(p.file == str(path) for p in info.value.problems)


def test_unknown_and_unsupported_types(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="unknown type 'oracle'"):
        parse_target_config({"type": "oracle"})
    with pytest.raises(ConfigError) as info:
        parse_target_config({"type": "trino", "host": "h"})
    assert "no native adapter" in str(info.value) and "type: sqlalchemy" in (info.value.problems[0].hint or "")


# ---------------------------------------------------------------------------------------------- types


def test_postgres_keys_and_dbname_alias() -> None:
    a = parse_target_config({"type": "postgres", "host": "h", "user": "u", "database": "d", "threads": 8, "retries": 2})
    b = parse_target_config({"type": "postgres", "host": "h", "user": "u", "dbname": "d", "sslmode": "require"})
    assert isinstance(a, PostgresTarget) and isinstance(b, PostgresTarget)
    assert a.dbname == b.dbname == "d" and a.port == 5432 and a.schema == "public" and b.sslmode == "require"
    with pytest.raises(ConfigError, match="sslmode"):
        parse_target_config({"type": "postgres", "host": "h", "user": "u", "dbname": "d", "sslmode": "sometimes"})


def test_snowflake_needs_credentials_and_masks_them() -> None:
    cfg = parse_target_config(
        {
            "type": "snowflake",
            "account": "xy12345.eu-west-1",
            "user": "loader",
            "private_key_path": "/keys/rsa.p8",
            "private_key_passphrase": "pass-phrase-1",
            "role": "TRANSFORMER",
            "database": "ANALYTICS",
            "warehouse": "WH",
            "schema": "ENRICHED",
            "client_session_keep_alive": False,
            "query_tag": "sixtyfour",
        }
    )
    assert isinstance(cfg, SnowflakeTarget) and cfg.role == "TRANSFORMER"
    assert "pass-phrase-1" not in repr(cfg) and "pass-phrase-1" not in cfg.model_dump_json()
    with pytest.raises(ConfigError, match="no credentials"):
        parse_target_config({"type": "snowflake", "account": "a", "user": "u", "database": "d"})


def test_sqlalchemy_url_is_a_secret_and_printed_masked() -> None:
    cfg = parse_target_config({"type": "sqlalchemy", "url": "mysql+pymysql://root:t0psecret@db:3306/crm"})
    assert isinstance(cfg, SqlAlchemyTarget)
    assert cfg.display_url == "mysql+pymysql://root:***@db:3306/crm"
    assert "t0psecret" not in repr(cfg) and "t0psecret" not in cfg.describe()
    with pytest.raises(ConfigError, match="not a valid SQLAlchemy URL"):
        parse_target_config({"type": "sqlalchemy", "url": "not a url"})


def test_ledger_schema_and_ignored_dbt_keys() -> None:
    cfg = parse_target_config(
        {"type": "duckdb", "path": ":memory:", "ledger_schema": "ops", "threads": 4, "extensions": ["json"]}
    )
    assert isinstance(cfg, DuckDBTarget)
    assert cfg.ledger_schema == "ops" and cfg.extensions == ["json"]


def test_the_example_file_documents_every_type_and_every_output_loads(tmp_path: Path) -> None:
    import shutil

    import yaml

    shutil.copy(REPO / "profiles.example.yml", tmp_path / "profiles.yml")
    data = yaml.safe_load((tmp_path / "profiles.yml").read_text(encoding="utf-8"))
    types = set()
    for profile, body in data.items():
        for target in body["outputs"]:
            env = {"DATABRICKS_TOKEN": "dapi-example"}
            resolved = load_target(project_dir=tmp_path, profile=profile, target=target, env=env)
            types.add(resolved.config.type)
    assert types == {"duckdb", "postgres", "snowflake", "sqlalchemy", "bigquery", "databricks"}


def test_dbt_project_quoting_comes_with_the_target(tmp_path: Path) -> None:
    from sixtyfour_sync.config.profiles import load_target

    (tmp_path / "profiles.yml").write_text("sixtyfour:\n  outputs:\n    dev: {type: duckdb, path: w.duckdb}\n")
    (tmp_path / "dbt_project.yml").write_text("name: p\nquoting:\n  schema: true\n  identifier: false\n")
    resolved = load_target(project_dir=tmp_path, env={})
    assert resolved.quoting is not None
    assert (resolved.quoting.schema_, resolved.quoting.identifier, resolved.quoting.column) == (True, False, None)
    (tmp_path / "dbt_project.yml").write_text("name: p\nquoting:\n  schema: maybe\n")
    with pytest.raises(ConfigError) as info:
        load_target(project_dir=tmp_path, env={})
    assert "dbt_project.yml" in str(info.value) and "quoting.schema" in str(info.value)


def test_snowflake_oauth_and_quoting_keys_parse() -> None:
    cfg = parse_target_config(
        {
            "type": "snowflake",
            "account": "a",
            "user": "u",
            "database": "d",
            "authenticator": "oauth",
            "oauth_client_id": "id",
            "oauth_client_secret": "secret-value",
            "token": "refresh-value",
            "quoting": {"schema": True},
        }
    )
    assert cfg.type == "snowflake" and cfg.quoting is not None and cfg.quoting.schema_ is True
    assert "secret-value" not in repr(cfg) and "refresh-value" not in repr(cfg)
