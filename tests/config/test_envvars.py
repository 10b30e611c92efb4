"""``{{ env_var(...) }}`` rendering."""

from __future__ import annotations

import pytest

from sixtyfour_sync.config.envvars import render_env_vars
from sixtyfour_sync.errors import ConfigError

ENV = {"PGHOST": "db.internal", "PGPORT": "6543", "FLAG": "yes", "EMPTY": ""}


def test_renders_anywhere_with_defaults_and_spacing_variants() -> None:
    data = {
        "host": "{{ env_var('PGHOST') }}",
        "url": 'postgresql://u@{{env_var("PGHOST")}}:{{ env_var( "PGPORT" ) }}/db',
        "user": "{{ env_var('PGUSER', 'postgres') }}",
        "nested": [{"x": "{{ env_var('MISSING', \"dflt\") }}"}],
        "empty": "{{ env_var('EMPTY', 'not used') }}",
        "untouched": 5,
    }
    out = render_env_vars(data, file="profiles.yml", env=ENV)
    assert out == {
        "host": "db.internal",
        "url": "postgresql://u@db.internal:6543/db",
        "user": "postgres",
        "nested": [{"x": "dflt"}],
        "empty": "",
        "untouched": 5,
    }


def test_a_whole_value_stays_text_unless_a_filter_says_otherwise() -> None:
    data = {
        "port": "{{ env_var('PGPORT') }}",
        "port_int": "{{ env_var('PGPORT') | int }}",
        "port_num": "{{ env_var('PGPORT') | as_number }}",
        "flag": "{{ env_var('FLAG') | as_bool }}",
        "threads": "{{ env_var('THREADS', 4) | int }}",
    }
    assert render_env_vars(data, file="p.yml", env=ENV) == {
        "port": "6543",
        "port_int": 6543,
        "port_num": 6543,
        "flag": True,
        "threads": 4,
    }


def test_every_problem_is_reported_with_file_and_key() -> None:
    data = {
        "outputs": {
            "dev": {
                "password": "{{ env_var('PGPASSWORD') }}",
                "host": "{{ var('x') }}",
                "port": "{{ env_var('PGHOST') | int }}",
                "x": "{{ env_var('PGHOST') | upper }}",
            }
        }
    }
    with pytest.raises(ConfigError) as info:
        render_env_vars(data, file="/p/profiles.yml", env=ENV)
    problems = {p.path: p for p in info.value.problems}
    assert set(problems) == {"outputs.dev.password", "outputs.dev.host", "outputs.dev.port", "outputs.dev.x"}
    assert "'PGPASSWORD' is not set" in problems["outputs.dev.password"].message
    assert all(p.file == "/p/profiles.yml" for p in info.value.problems)
    assert "unsupported template expression" in problems["outputs.dev.host"].message
    assert "not a number" in problems["outputs.dev.port"].message
    assert "unsupported filter 'upper'" in problems["outputs.dev.x"].message
    assert "export PGPASSWORD" in (problems["outputs.dev.password"].hint or "")


def test_uses_the_process_environment_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SF_ENV_PROBE", "from-env")
    assert render_env_vars("{{ env_var('SF_ENV_PROBE') }}", file="m.yml") == "from-env"
