"""``{{ env_var(...) }}`` rendering."""

from __future__ import annotations

from pathlib import Path

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
                "host": "{{ target.schema }}",
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


def test_vars_keep_their_yaml_type_and_defaults_apply() -> None:
    from sixtyfour_sync.config.envvars import parse_vars

    given = parse_vars('{"limit": 500, region: us, flags: [a, b]}')
    data = {
        "limit": "{{ var('limit') }}",
        "where": "region = '{{ var(\"region\") }}'",
        "flags": "{{ var('flags') }}",
        "tier": "{{ var('tier', 'low') }}",
        "n": "{{ var('n', 3) }}",
        "off": "{{ var('off', false) }}",
        "none": "{{ var('gone', none) }}",
        "text": "{{ var('limit') | string }}",
    }
    assert render_env_vars(data, file="m.yml", env={}, vars=given) == {
        "limit": 500,
        "where": "region = 'us'",
        "flags": ["a", "b"],
        "tier": "low",
        "n": 3,
        "off": False,
        "none": None,
        "text": "500",
    }


def test_a_missing_var_is_located_with_file_line_and_key(tmp_path: Path) -> None:
    from sixtyfour_sync.config.yamlfile import load_yaml

    f = tmp_path / "m.yml"
    f.write_text("syncs:\n  - name: a\n    source:\n      table: \"{{ var('src_table') }}\"\n")
    doc = load_yaml(f)
    with pytest.raises(ConfigError) as info:
        render_env_vars(doc.data, file=f, env={}, vars={"other": 1}, lines=doc.lines)
    [p] = info.value.problems
    assert (p.file, p.line, p.path) == (str(f), 4, "syncs.0.source.table")
    assert "var 'src_table' is not defined" in p.message
    assert "vars given: other" in p.message
    assert "--vars" in (p.hint or "")


@pytest.mark.parametrize("text", ["[1, 2]", "just words", "{unclosed: [1"])
def test_vars_must_be_a_mapping(text: str) -> None:
    from sixtyfour_sync.config.envvars import parse_vars

    with pytest.raises(ConfigError, match="--vars"):
        parse_vars(text)
