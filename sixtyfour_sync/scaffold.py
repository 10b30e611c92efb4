"""``sixtyfour-sync init``: a profiles.yml and a commented sync definition to start from."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sixtyfour_sync.config.reference import SCHEMA_URL
from sixtyfour_sync.errors import ConfigError

__all__ = [
    "SCHEMA_COMMENT",
    "WAREHOUSES",
    "InitAnswers",
    "ask_answers",
    "profiles_note",
    "render_model",
    "render_profiles",
    "write_project",
]

#: The warehouse types ``init`` can write a profile for.
WAREHOUSES = ("duckdb", "postgres", "snowflake", "bigquery", "databricks", "sqlalchemy")

_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")

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

    def check(self) -> None:
        """Reject names that could not be used as identifiers."""
        for what, value in (("table", self.table), ("key", self.key), ("target table", self.target_table)):
            if value and not _NAME.match(value):
                raise ConfigError(f"init: {what} {value!r} is not a plain identifier (letters, digits, _)")
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


def render_model(a: InitAnswers) -> str:
    """A commented models/<sync>.yml."""
    target = a.target_table or f"{a.table}_enriched"
    if a.columns:
        cols_line = f"      columns: [{', '.join(a.columns)}]   # the inputs sent for research\n"
    else:
        cols_line = "      # columns: [first_name, last_name, company, domain]   # default: every column but the key\n"
    struct = "".join(f"      {k}: {v}\n" for k, v in DEFAULT_STRUCT[a.endpoint].items())
    tiers = "micro | low | medium | high" + (" | xhigh | scout" if a.endpoint == "people" else "")
    return (
        SCHEMA_COMMENT + "# A sync: rows from the source, enriched by Sixtyfour, written to the target.\n"
        "# `sixtyfour-sync schema` prints the JSON Schema of this file: every key, with what it does.\n"
        "# `sixtyfour-sync validate` checks this file, `plan` shows what a run would send and cost.\n"
        "syncs:\n"
        f"  - name: {a.sync_name}\n"
        "    tags: [daily]\n"
        f"    endpoint: {a.endpoint}                 # people | company\n"
        "    source:\n"
        f'      table: {a.table}                  # or  sql: "select ..."  or  ref: a_dbt_model\n'
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


def write_project(directory: Path, answers: InitAnswers, *, force: bool = False) -> list[Path]:
    """Write profiles.yml and models/<sync>.yml; existing files are kept unless ``force``."""
    answers.check()
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "models").mkdir(exist_ok=True)
    written = []
    for path, text in (
        (directory / "profiles.yml", render_profiles(answers)),
        (directory / "models" / f"{answers.sync_name}.yml", render_model(answers)),
    ):
        if path.exists() and not force:
            raise ConfigError(f"{path} exists", hint="pass --force to overwrite it, or choose another directory")
        path.write_text(text, encoding="utf-8")
        written.append(path)
    return written


def ask_answers(flags: Mapping[str, Any], interactive: bool) -> InitAnswers:
    """The answers to ``init``: each from its flag, else a prompt on a terminal, else the default."""
    import click

    a = InitAnswers()

    def ask(name: str, prompt: str, default: str, choices: list[str] | None = None) -> str:
        given = flags.get(name)
        if given is not None:
            return str(given)
        if not interactive:
            return default
        kind = click.Choice(choices) if choices else str
        return str(click.prompt(prompt, default=default, type=kind))

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
