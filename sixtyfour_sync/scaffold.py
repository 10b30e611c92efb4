"""``sixtyfour-sync init``: a profiles.yml and a commented sync definition to start from.

Outside a dbt project it writes ``profiles.yml`` and ``models/<sync>.yml`` in the directory given; inside one
(a ``dbt_project.yml`` there or in a parent) :mod:`sixtyfour_sync.scaffold_dbt` writes a ``ref:`` sync in
``sixtyfour/`` on the dbt project's own profile. Either way a profiles.yml that holds another profile is never
overwritten, ``--force`` or not.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sixtyfour_sync.config.schema_url import SCHEMA_URL
from sixtyfour_sync.errors import ConfigError

__all__ = [
    "SCHEMA_COMMENT",
    "WAREHOUSES",
    "InitAnswers",
    "InitOutcome",
    "Prompt",
    "ask_answers",
    "ask_warehouse",
    "asker",
    "other_profiles",
    "profiles_note",
    "render_model",
    "render_profiles",
    "run_init",
    "write_project",
]

#: How ``init`` asks a question: ``click.prompt``'s signature (text, default=, type=, show_choices=).
Prompt = Callable[..., Any]
_MAX_SHOWN_CHOICES = 20

#: The warehouse types ``init`` can write a profile for.
WAREHOUSES = ("duckdb", "postgres", "snowflake", "bigquery", "databricks", "sqlalchemy")

_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
#: A dbt model name as ``ref:`` takes it (a file name: letters, digits, _, and . or - inside).
_REF = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]*$")

DEFAULT_STRUCT = {
    "people": {
        "email": "The individual's work email address",
        "title": "The individual's current job title",
        "linkedin": "LinkedIn profile URL for the person",
    },
    "company": {
        "industry": "The company's primary industry",
        "employee_count": "Number of employees",
        "headquarters": "The city and country of the headquarters",
    },
}


@dataclass
class InitAnswers:
    """Everything ``init`` asks; every field has a flag."""

    warehouse: str = "duckdb"
    profile: str = "sixtyfour"
    duckdb_path: str = "warehouse.duckdb"
    host: str = "localhost"
    port: int = 5432
    user: str = ""
    database: str = ""
    schema: str = ""
    account: str = ""
    url: str = ""
    http_path: str = ""
    sync_name: str = "enrich_leads"
    endpoint: str = "people"
    table: str = "leads"
    key: str = "lead_id"
    columns: list[str] = field(default_factory=list)
    target_table: str = ""
    tier: str = "low"
    #: A dbt model: the sync reads it with ``source.ref`` instead of ``source.table``.
    ref: str = ""
    #: The file goes to sixtyfour/ in a dbt project (its header says why).
    in_dbt_project: bool = False

    def check(self) -> None:
        """Reject names that could not be used as identifiers."""
        for what, value in (("table", self.table), ("key", self.key), ("target table", self.target_table)):
            if value and not _NAME.match(value):
                raise ConfigError(f"init: {what} {value!r} is not a plain identifier (letters, digits, _)")
        if self.ref and not _REF.match(self.ref):
            raise ConfigError(f"init: dbt model {self.ref!r} is not a model name (letters, digits, _, . and -)")
        if not _NAME.match(self.sync_name):
            raise ConfigError(f"init: sync name {self.sync_name!r} is not a plain name (letters, digits, _)")
        for c in self.columns:
            if not _NAME.match(c):
                raise ConfigError(f"init: column {c!r} is not a plain identifier (letters, digits, _)")
        if self.warehouse not in WAREHOUSES:
            raise ConfigError(f"init: unknown warehouse {self.warehouse!r}; use one of {', '.join(WAREHOUSES)}")
        if self.endpoint not in ("people", "company"):
            raise ConfigError(f"init: unknown endpoint {self.endpoint!r}; use people or company")


def render_profiles(a: InitAnswers) -> str:
    """profiles.yml for the chosen warehouse; secrets come from environment variables."""
    head = (
        "# Warehouse connection in dbt's profiles.yml format. Secrets come from environment variables.\n"
        f"{a.profile}:\n  target: dev\n  outputs:\n    dev:\n"
    )
    if a.warehouse == "duckdb":
        body = (
            f"      type: duckdb\n      path: {a.duckdb_path}        # relative to the project directory\n"
            f"      schema: {a.schema or 'main'}\n"
        )
    elif a.warehouse == "postgres":
        body = (
            f"      type: postgres\n      host: {a.host}\n      port: {a.port}\n      user: {a.user or 'postgres'}\n"
            "      password: \"{{ env_var('PGPASSWORD', '') }}\"\n"
            f"      dbname: {a.database or 'analytics'}\n      schema: {a.schema or 'public'}\n"
        )
    elif a.warehouse == "snowflake":
        body = (
            f"      type: snowflake\n      account: {a.account or 'myorg-myaccount'}\n"
            f"      user: {a.user or 'ENRICH'}\n"
            "      password: \"{{ env_var('SNOWFLAKE_PASSWORD') }}\"\n"
            "      # or key-pair auth: private_key_path + private_key_passphrase\n"
            f"      database: {a.database or 'ANALYTICS'}\n      warehouse: TRANSFORMING\n"
            f"      schema: {a.schema or 'MARTS'}\n      role: TRANSFORMER\n"
        )
    elif a.warehouse == "bigquery":
        body = (
            "      type: bigquery\n"
            "      method: oauth   # application default credentials (gcloud auth application-default login,\n"
            "                      # or the machine's service account); or service-account + keyfile\n"
            f"      project: {a.database or 'my-gcp-project'}\n      dataset: {a.schema or 'analytics'}\n"
            "      location: US\n"
            "      maximum_bytes_billed: 10000000000   # no query job may bill more than 10 GB\n"
        )
    elif a.warehouse == "databricks":
        body = (
            "      type: databricks\n"
            f"      host: {a.host if a.host != 'localhost' else 'dbc-1234.cloud.databricks.com'}\n"
            f"      http_path: {a.http_path or '/sql/1.0/warehouses/0123456789abcdef'}\n"
            "      token: \"{{ env_var('DATABRICKS_TOKEN') }}\"   # or client_id + client_secret (OAuth M2M)\n"
            f"      catalog: {a.database or 'main'}\n      schema: {a.schema or 'analytics'}\n"
        )
    else:
        body = (
            "      type: sqlalchemy\n"
            "      url: \"{{ env_var('DATABASE_URL') }}\"   # e.g. mysql+pymysql://user:pass@host/db\n"
            f"      schema: {a.schema or 'analytics'}\n"
        )
    return head + body


#: The first line of a scaffolded models file: editors with the YAML language server validate and complete it.
SCHEMA_COMMENT = f"# yaml-language-server: $schema={SCHEMA_URL}\n"


def _source_lines(a: InitAnswers) -> str:
    if a.ref:
        return (
            f"      ref: {a.ref}                  # a dbt model: its relation comes from target/manifest.json\n"
            '                                     # (or  table: a_table  or  sql: "select ...")\n'
        )
    return f'      table: {a.table}                  # or  sql: "select ..."  or  ref: a_dbt_model\n'


def render_model(a: InitAnswers) -> str:
    """A commented sync definition: ``models/<sync>.yml``, or ``sixtyfour/<sync>.yml`` in a dbt project."""
    target = a.target_table or f"{a.ref or a.table}_enriched"
    if a.columns:
        cols_line = f"      columns: [{', '.join(a.columns)}]   # the inputs sent for research\n"
    else:
        cols_line = "      # columns: [first_name, last_name, company, domain]   # default: every column but the key\n"
    struct = "".join(f"      {k}: {v}\n" for k, v in DEFAULT_STRUCT[a.endpoint].items())
    tiers = "micro | low | medium | high" + (" | xhigh | scout" if a.endpoint == "people" else "")
    where = (
        "# It lives in sixtyfour/, beside dbt_project.yml and outside the folders dbt parses (docs/dbt.md).\n"
        if a.in_dbt_project
        else ""
    )
    return (
        SCHEMA_COMMENT + "# A sync: rows from the source, enriched by Sixtyfour, written to the target.\n"
        f"{where}"
        "# `sixtyfour-sync schema` prints the JSON Schema of this file: every key, with what it does.\n"
        "# `sixtyfour-sync validate` checks this file, `plan` shows what a run would send and cost.\n"
        "syncs:\n"
        f"  - name: {a.sync_name}\n"
        "    tags: [daily]\n"
        f"    endpoint: {a.endpoint}                 # people | company\n"
        "    source:\n"
        f"{_source_lines(a)}"
        f"      key: {a.key}                      # a column (or a list) that identifies a row\n"
        f"{cols_line}"
        "      # where: \"country = 'US'\"\n"
        "    struct:                          # what to get back: one target column per field\n"
        f"{struct}"
        "      # score: {description: A 0-100 fit score, type: int}   # str int float bool list[str] dict ...\n"
        f"    tier: {a.tier}                        # {tiers}\n"
        "    field_confidence: true           # adds <field>_confidence (0-100)\n"
        "    target:\n"
        f"      table: {target}\n"
        "    refresh:\n"
        "      when: changed                  # missing | changed | stale | always\n"
        "      max_age: 90d\n"
        "      retry_failed_after: 30d\n"
        "    budget:\n"
        "      max_cost_cents: 10000          # never submit more than $100 of estimated work per run\n"
    )


def other_profiles(path: Path, own: str) -> list[str] | None:
    """The profiles a profiles.yml holds besides ``own`` (``[]``: none, or no such file); None when it cannot
    be read, so nothing about it is known and it must be kept."""
    if not path.is_file():
        return []
    from sixtyfour_sync.config.yamlfile import load_yaml

    try:
        data = load_yaml(path).data
    except ConfigError:
        return None
    if data is None:
        return []
    if not isinstance(data, Mapping):
        return None
    return sorted(str(k) for k in data if str(k) not in (own, "config"))


def write_project(directory: Path, answers: InitAnswers, *, force: bool = False) -> list[Path]:
    """Write profiles.yml and models/<sync>.yml; existing files are kept unless ``force``.

    Even with ``force`` a profiles.yml that holds another profile than ``answers.profile`` (or cannot be read)
    is kept: it is left out of the paths returned (see :func:`other_profiles` for what to tell the user).
    """
    answers.check()
    profiles = directory / "profiles.yml"
    model = directory / "models" / f"{answers.sync_name}.yml"
    for path in (profiles, model):
        if path.exists() and not force:
            raise ConfigError(f"{path} exists", hint="pass --force to overwrite it, or choose another directory")
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "models").mkdir(exist_ok=True)
    written = []
    if other_profiles(profiles, answers.profile) == []:
        profiles.write_text(render_profiles(answers), encoding="utf-8")
        written.append(profiles)
    model.write_text(render_model(answers), encoding="utf-8")
    written.append(model)
    return written


def _kept_profiles_note(path: Path, own: str) -> str | None:
    others = other_profiles(path, own)
    if others == []:
        return None
    what = f"it holds: {', '.join(others)}" if others else "it cannot be read"
    return (
        f"warning: kept {path}: {what}, and init never overwrites another profile (not even with --force); "
        f"add a `{own}:` profile to it by hand (profiles.example.yml has one for each warehouse), "
        "or init another directory"
    )


def asker(flags: Mapping[str, Any], interactive: bool, prompt: Prompt | None) -> Callable[..., str]:
    """``ask(name, question, default, choices=None)``: the flag ``name`` when given, else the answer to a prompt
    on a terminal, else the default."""

    def ask(name: str, question: str, default: str, choices: list[str] | None = None) -> str:
        given = flags.get(name)
        if given is not None:
            return str(given)
        if not interactive:
            return default
        import click

        if not choices:
            return str((prompt or click.prompt)(question, default=default, type=str))
        # a long list (a big dbt project's models) is not printed with every question
        shown = len(choices) <= _MAX_SHOWN_CHOICES
        return str((prompt or click.prompt)(question, default=default, type=click.Choice(choices), show_choices=shown))

    return ask


def ask_warehouse(a: InitAnswers, flags: Mapping[str, Any], interactive: bool, prompt: Prompt | None = None) -> None:
    """The connection answers (warehouse and its keys, schema) into ``a``."""
    ask = asker(flags, interactive, prompt)
    a.warehouse = ask("warehouse", "Warehouse", "duckdb", list(WAREHOUSES))
    if a.warehouse == "duckdb":
        a.duckdb_path = ask("duckdb_path", "DuckDB file", "warehouse.duckdb")
    elif a.warehouse == "postgres":
        a.host = ask("host", "Host", "localhost")
        a.user = ask("user", "User", "postgres")
        a.database = ask("database", "Database", "analytics")
    elif a.warehouse == "snowflake":
        a.account = ask("account", "Account (orgname-accountname)", "myorg-myaccount")
        a.user = ask("user", "User", "ENRICH")
        a.database = ask("database", "Database", "ANALYTICS")
    elif a.warehouse == "bigquery":
        a.database = ask("database", "GCP project id", "my-gcp-project")
    elif a.warehouse == "databricks":
        a.host = ask("host", "Workspace host", "dbc-1234.cloud.databricks.com")
        a.http_path = ask("http_path", "SQL warehouse HTTP path", "/sql/1.0/warehouses/0123456789abcdef")
        a.database = ask("database", "Catalog", "main")
    a.schema = ask("schema", "Schema", {"duckdb": "main", "postgres": "public"}.get(a.warehouse, "analytics"))


def ask_answers(flags: Mapping[str, Any], interactive: bool, prompt: Prompt | None = None) -> InitAnswers:
    """The answers to ``init``: each from its flag, else a prompt on a terminal, else the default."""
    a = InitAnswers()
    ask = asker(flags, interactive, prompt)
    ask_warehouse(a, flags, interactive, prompt)
    a.endpoint = ask("endpoint", "Endpoint", "people", ["people", "company"])
    a.table = ask("table", "Source table", "leads" if a.endpoint == "people" else "companies")
    a.key = ask("key", "Key column", "lead_id" if a.endpoint == "people" else "company_id")
    cols = ask("columns", "Input columns, comma-separated (empty: all but the key)", "")
    a.columns = [c.strip() for c in cols.split(",") if c.strip()]
    a.sync_name = ask("sync_name", "Sync name", f"enrich_{a.table}")
    return a


def profiles_note(directory: Path, profiles_dir: Path | None, env: Mapping[str, str]) -> str | None:
    """A warning when the profiles.yml just written is not the one commands in ``directory`` will read."""
    from sixtyfour_sync.config.profiles import locate_profiles_file

    written = (directory / "profiles.yml").resolve()
    try:
        choice = locate_profiles_file(project_dir=directory, profiles_dir=profiles_dir, env=env)
    except ConfigError as exc:
        return (
            f"warning: {exc.problems[0].message if exc.problems else exc}; commands will fail until it is fixed "
            f"(unset it, or pass --profiles-dir {directory})"
        )
    if choice.file.resolve() == written:
        return f"profiles: {written} will be used ({choice.reason})"
    return (
        f"warning: {choice.file} wins over the profiles.yml just written ({choice.reason}); "
        f"unset it or pass --profiles-dir {directory} to use {written}"
    )


@dataclass
class InitOutcome:
    """What ``init`` did: lines to show (event, text, fields), where to run next, and what to run first."""

    messages: list[tuple[str, str, dict[str, Any]]] = field(default_factory=list)
    run_dir: Path = field(default_factory=lambda: Path("."))
    before: list[str] = field(default_factory=list)
    #: Shows each line as it is said (before the questions that follow it), when set.
    echo: Callable[[str, str, dict[str, Any]], None] | None = field(default=None, repr=False)

    def say(self, event: str, text: str, **fields: Any) -> None:
        """Add one line (and show it now, with :attr:`echo`)."""
        self.messages.append((event, text, fields))
        if self.echo is not None:
            self.echo(event, text, fields)


def run_init(
    directory: Path,
    flags: Mapping[str, Any],
    *,
    interactive: bool,
    force: bool = False,
    profiles_dir: Path | None = None,
    profile: str | None = None,
    target: str | None = None,
    target_path: Path | None = None,
    env: Mapping[str, str] | None = None,
    prompt: Prompt | None = None,
    echo: Callable[[str, str, dict[str, Any]], None] | None = None,
) -> InitOutcome:
    """``sixtyfour-sync init``: in a dbt project (``dbt_project.yml`` in ``directory`` or a parent) a ``ref:``
    sync on its profile (:func:`sixtyfour_sync.scaffold_dbt.init_dbt_project`); elsewhere profiles.yml and
    models/<sync>.yml in ``directory``. ``echo`` shows each line as it is said."""
    from sixtyfour_sync.scaffold_dbt import find_dbt_project, init_dbt_project

    env = os.environ if env is None else env
    dbt_root = find_dbt_project(directory)
    if dbt_root is not None:
        return init_dbt_project(
            dbt_root,
            flags,
            interactive=interactive,
            force=force,
            profiles_dir=profiles_dir,
            profile=profile,
            target=target,
            target_path=target_path,
            env=env,
            prompt=prompt,
            echo=echo,
        )
    if flags.get("model") is not None:
        raise ConfigError(
            f"init: --model names a dbt model, but there is no dbt_project.yml in {directory} or above it",
            hint="run init inside the dbt project, or use --table for a table",
        )
    out = InitOutcome(run_dir=directory, echo=echo)
    answers = ask_answers(flags, interactive, prompt)
    kept = _kept_profiles_note(directory / "profiles.yml", answers.profile) if force else None
    for path in write_project(directory, answers, force=force):
        out.say("init.wrote", f"wrote {path}", path=str(path))
    if kept:
        out.say("init.profiles", kept)
    note = profiles_note(directory, profiles_dir, env)
    if note:
        out.say("init.profiles", note)
    return out
