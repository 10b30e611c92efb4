"""The outputs of a profile, one pydantic model per warehouse ``type:``, with unknown keys rejected except the dbt
keys this tool accepts and ignores (:data:`IGNORED_DBT_KEYS`). Passwords, private-key passphrases, tokens and
SQLAlchemy URLs are held as :class:`~sixtyfour_sync._redact.Secret`: they never print."""

from __future__ import annotations

import json
import re
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal, Union

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    TypeAdapter,
    field_validator,
    model_validator,
)

from sixtyfour_sync._redact import Secret, register_secret

#: dbt keys that are valid in a dbt profile but mean nothing here: accepted and ignored.
IGNORED_DBT_KEYS: frozenset[str] = frozenset(
    {
        "threads",
        "keepalives_idle",
        "search_path",
        "retries",
        "connect_retries",
        "connect_timeout",
        "retry_on_database_errors",
        "retry_all",
        "client_session_keep_alive",
        "query_tag",
        "reuse_connections",
        "insecure_mode",
        "use_colors",
        "send_anonymous_usage_stats",
        "extensions",
        "settings",
        "module_paths",
        "plugins",
        "attach",
        "external_root",
        "filesystems",
        "secrets",
        "disable_transactions",
        "keep_open",
        "remote",
        "use_credential_provider",
        "role",
        "sslcert",
        "sslkey",
        "sslrootcert",
        "sslcrl",
        "application_name",
    }
)

# Keys some targets use for real even though they are in the ignore list above.
_USED_KEYS: dict[str, set[str]] = {
    "duckdb": {"extensions", "settings"},
    "postgres": {"role", "sslcert", "sslkey", "sslrootcert", "connect_timeout", "application_name"},
    "snowflake": {"role", "connect_timeout", "query_tag"},
    "sqlalchemy": set(),
    "bigquery": set(),
    "databricks": {"connect_timeout"},
}

# dbt's defaults where the warehouse has a conventional schema; elsewhere the connection's default.
_DEFAULT_SCHEMA = {"duckdb": "main", "postgres": "public"}

_UNSUPPORTED_TYPES = {
    "redshift": "postgresql+psycopg2://... (Redshift speaks the PostgreSQL protocol) or a redshift+ URL",
    "mysql": "mysql+pymysql://user:pass@host:3306/db (pip install 'sixtyfour-sync[mysql]')",
    "sqlite": "sqlite:///path/to/file.db",
    "trino": "trino://user@host:8080/catalog (pip install trino)",
    "sqlserver": "mssql+pyodbc://...",
}


def _to_secret(value: Any) -> Any:
    if value is None or isinstance(value, Secret):
        return value
    if isinstance(value, (str, int, float)):
        return Secret(str(value))
    return value


SecretStr = Annotated[
    Secret,
    BeforeValidator(_to_secret),
    PlainSerializer(lambda s: str(s), return_type=str),
]


# ``schema`` shadows a deprecated BaseModel classmethod; the key is dbt's, so the field keeps the name.
with warnings.catch_warnings():
    warnings.filterwarnings("ignore", message='Field name "schema"', category=UserWarning)

    class _Target(BaseModel):
        """Keys every output has."""

        model_config = ConfigDict(
            extra="forbid", frozen=True, arbitrary_types_allowed=True, populate_by_name=True, str_strip_whitespace=True
        )

        schema: str | None = None  # type: ignore[assignment]
        """The schema of the target tables (and of the ledger unless ``ledger_schema`` is set)."""
        ledger_schema: str | None = None
        """Where ``_sixtyfour_sync_runs``/``_sixtyfour_sync_jobs`` live; default: ``schema``."""

        @model_validator(mode="before")
        @classmethod
        def _drop_ignored(cls, data: Any) -> Any:
            if isinstance(data, Mapping):
                kind = str(data.get("type", ""))
                used = _USED_KEYS.get(kind, set())
                out = {k: v for k, v in data.items() if k not in IGNORED_DBT_KEYS or k in used}
                if out.get("schema") is None and kind in _DEFAULT_SCHEMA:
                    out["schema"] = _DEFAULT_SCHEMA[kind]
                return out
            return data

        def describe(self) -> str:
            """Where this target points, safe to print."""
            return f"{getattr(self, 'type', '?')} (schema {self.schema})"


class DuckDBTarget(_Target):
    """``type: duckdb``: a DuckDB file (or ``:memory:``), the embedded default."""

    type: Literal["duckdb"]
    path: str = ":memory:"
    """Database file; relative paths resolve against the project directory."""
    database: str | None = None
    """Accepted for dbt compatibility; must match the file's catalog name when given."""
    extensions: list[str] = Field(default_factory=list)
    """Extensions to LOAD (they must be installed already: no network at run time)."""
    settings: dict[str, Any] = Field(default_factory=dict)
    """``SET key = value`` applied on connect (memory_limit, threads...)."""
    read_only: bool = False
    """Open the file read-only (selection/plan only; upserts will fail)."""
    lock_wait_seconds: float = Field(default=600.0, ge=0)
    """How long to wait for the file while another process holds it (DuckDB allows one writing process) before
    failing with who holds it. A run lets go of the file while it waits for the API, so a ``dbt build`` can use it
    meanwhile; this is how long the run then waits for that build to finish when it needs the file again."""

    def resolved_path(self, project_dir: Path | None) -> str:
        """The file path to open: relative paths are taken from ``project_dir`` (or the cwd)."""
        if self.path == ":memory:" or self.path.startswith(("md:", "motherduck:")):
            return self.path
        p = Path(self.path).expanduser()
        if not p.is_absolute():
            p = (project_dir or Path.cwd()) / p
        return str(p)

    def describe(self) -> str:
        """Where this target points, safe to print."""
        return f"duckdb {self.path} (schema {self.schema})"


class PostgresTarget(_Target):
    """``type: postgres``: dbt-postgres's keys."""

    type: Literal["postgres"]
    host: str
    port: int = Field(5432, ge=1, le=65535)
    user: str
    password: SecretStr | None = Field(None, alias="pass")
    dbname: str = Field(alias="database")
    sslmode: Literal["disable", "allow", "prefer", "require", "verify-ca", "verify-full"] | None = None
    sslcert: str | None = None
    sslkey: str | None = None
    sslrootcert: str | None = None
    connect_timeout: int = Field(10, ge=1)
    """Seconds to wait for the server before giving up."""
    role: str | None = None
    """``SET ROLE`` after connecting."""
    application_name: str = "sixtyfour-sync"

    @model_validator(mode="before")
    @classmethod
    def _dbname_alias(cls, data: Any) -> Any:
        # dbt accepts both dbname and database; pydantic's alias takes one, so fold them here.
        if isinstance(data, Mapping) and "dbname" in data:
            data = dict(data)
            if "database" in data and data["database"] != data["dbname"]:
                raise ValueError("both dbname and database are set and differ; keep one")
            data["database"] = data.pop("dbname")
        return data

    def describe(self) -> str:
        """Where this target points, safe to print (no password)."""
        return f"postgres {self.user}@{self.host}:{self.port}/{self.dbname} (schema {self.schema})"


class QuotingConfig(BaseModel):
    """dbt's ``quoting:`` (dbt_project.yml, or a Snowflake output here): which names are quoted as written.

    A part set to false folds as an unquoted name would (Snowflake: upper case); true keeps it exactly.
    ``column`` has no dbt project key; it stands for dbt's per-column ``quote:`` (default false on
    Snowflake). Unset parts keep the warehouse's dbt default.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    database: bool | None = None
    schema_: bool | None = Field(None, alias="schema")
    identifier: bool | None = None
    column: bool | None = None
    snowflake_ignore_case: bool | None = None
    """dbt Fusion's key; accepted and ignored (QUOTED_IDENTIFIERS_IGNORE_CASE is the account's business)."""


def quoting_from_dbt_project(data: Mapping[str, Any] | None) -> QuotingConfig | None:
    """The ``quoting:`` block of a parsed dbt_project.yml (None when it has none)."""
    block = (data or {}).get("quoting")
    if not isinstance(block, Mapping):
        return None
    return QuotingConfig.model_validate({k: v for k, v in block.items() if k in _QUOTING_KEYS})


_QUOTING_KEYS = frozenset({"database", "schema", "identifier", "column", "snowflake_ignore_case"})


class SnowflakeTarget(_Target):
    """``type: snowflake``: dbt-snowflake's keys."""

    type: Literal["snowflake"]
    account: str
    user: str
    password: SecretStr | None = None
    private_key_path: str | None = None
    private_key: SecretStr | None = None
    """An inline PEM private key (dbt-snowflake's ``private_key``)."""
    private_key_passphrase: SecretStr | None = None
    authenticator: str | None = None
    """``snowflake`` (default), ``externalbrowser``, ``oauth``, ``oauth_client_credentials``,
    ``username_password_mfa``, or an Okta URL."""
    token: SecretStr | None = None
    """With ``authenticator: oauth``: the access token, or the refresh token when the client id/secret are set."""
    oauth_client_id: str | None = None
    """The OAuth integration's client id (dbt-snowflake's key)."""
    oauth_client_secret: SecretStr | None = None
    """The OAuth integration's client secret."""
    oauth_token_request_url: str | None = None
    """Where tokens are requested; default ``https://<account>.snowflakecomputing.com/oauth/token-request``."""
    host: str | None = None
    """The account's host when it is not ``<account>.snowflakecomputing.com`` (private link)."""
    role: str | None = None
    database: str
    warehouse: str | None = None
    connect_timeout: int | None = None
    query_tag: str | None = None
    quoting: QuotingConfig | None = None
    """dbt's ``quoting:`` for this target (dbt_project.yml's applies when this is unset)."""

    @model_validator(mode="after")
    def _auth(self) -> SnowflakeTarget:
        if not (self.password or self.private_key_path or self.private_key or self.authenticator):
            raise ValueError(
                "no credentials: set password, private_key_path (+ private_key_passphrase) or authenticator"
            )
        auth = (self.authenticator or "").lower()
        has_id, has_secret = bool(self.oauth_client_id), self.oauth_client_secret is not None
        if (has_id or has_secret) and auth not in ("oauth", "oauth_client_credentials"):
            raise ValueError(
                "oauth_client_id/oauth_client_secret are set but authenticator is not oauth "
                "(or oauth_client_credentials)"
            )
        if has_id != has_secret:
            raise ValueError("oauth_client_id and oauth_client_secret go together: set both or neither")
        if auth == "oauth" and not self.token:
            raise ValueError(
                "authenticator: oauth needs token (an access token, or a refresh token with oauth_client_id/secret)"
            )
        if auth == "oauth_client_credentials" and not has_id:
            raise ValueError("authenticator: oauth_client_credentials needs oauth_client_id and oauth_client_secret")
        return self

    def describe(self) -> str:
        """Where this target points, safe to print."""
        return f"snowflake {self.user}@{self.account}/{self.database} (schema {self.schema})"


class SqlAlchemyTarget(_Target):
    """``type: sqlalchemy``: any SQLAlchemy URL (MySQL/MariaDB, SQLite, Redshift, BigQuery...)."""

    type: Literal["sqlalchemy"]
    url: SecretStr
    """The SQLAlchemy URL; it may hold a password, so it is never printed unmasked."""
    connect_args: dict[str, Any] = Field(default_factory=dict)
    """Passed to the DBAPI ``connect()``."""

    @field_validator("url")
    @classmethod
    def _parse_url(cls, v: Secret) -> Secret:
        from sqlalchemy.engine import make_url
        from sqlalchemy.exc import ArgumentError

        try:
            make_url(v.get())
        except ArgumentError:
            raise ValueError("not a valid SQLAlchemy URL (expected dialect+driver://user:pass@host/db)") from None
        return v

    @property
    def display_url(self) -> str:
        """The URL with its password masked."""
        from sqlalchemy.engine import make_url

        return make_url(self.url.get()).render_as_string(hide_password=True)

    def describe(self) -> str:
        """Where this target points, safe to print (password masked)."""
        return f"sqlalchemy {self.display_url} (schema {self.schema})"


def _fold_alias(data: Any, alias: str, name: str) -> Any:
    """dbt accepts two spellings of one key (``dataset``/``schema``): keep one, refuse two that differ."""
    if isinstance(data, Mapping) and alias in data:
        data = dict(data)
        value = data.pop(alias)
        if data.get(name) is not None and data[name] != value:
            raise ValueError(f"both {alias} and {name} are set and differ; keep one")
        data[name] = value
    return data


def _json_secret(value: Any) -> Any:
    # keyfile_json is a mapping in dbt profiles; it holds a private key, so it is kept as secret JSON text.
    if isinstance(value, Mapping):
        for part in ("private_key", "private_key_id", "client_secret"):
            register_secret(str(value.get(part) or ""))
        return Secret(json.dumps(dict(value)))
    return _to_secret(value)


class BigQueryTarget(_Target):
    """``type: bigquery``: dbt-bigquery's keys (``dataset`` and ``schema`` are the same key)."""

    type: Literal["bigquery"]
    method: Literal["oauth", "oauth-secrets", "service-account", "service-account-json", "anonymous"] = "oauth"
    """oauth: application default credentials (gcloud auth application-default login, or the VM's account);
    service-account: ``keyfile``; service-account-json: ``keyfile_json``; oauth-secrets: ``token`` or
    ``refresh_token`` + ``client_id`` + ``client_secret``; anonymous: no credentials, only with ``api_endpoint``
    (a local emulator)."""
    project: str = Field(alias="database")
    """The project holding the dataset (dbt's ``project``, or ``database``)."""
    execution_project: str | None = None
    """The project that runs (and pays for) the query jobs; default: ``project``."""
    location: str | None = None
    """Where datasets are created and jobs run (``US``, ``EU``, ``europe-west1``...)."""
    keyfile: str | None = None
    """Service-account key file (relative paths start at the project directory)."""
    keyfile_json: Annotated[Secret | None, BeforeValidator(_json_secret)] = None
    """The service-account key itself, as a mapping."""
    token: SecretStr | None = None
    refresh_token: SecretStr | None = None
    client_id: str | None = None
    client_secret: SecretStr | None = None
    token_uri: str = "https://oauth2.googleapis.com/token"  # noqa: S105 - a public endpoint, not a secret
    scopes: list[str] | None = None
    impersonate_service_account: str | None = None
    """Run as this service account (the credentials above need the Token Creator role on it)."""
    priority: Literal["interactive", "batch"] = "interactive"
    job_execution_timeout_seconds: int | None = Field(None, ge=1)
    """Give up on (and cancel) a query job that runs longer than this."""
    job_creation_timeout_seconds: int | None = Field(None, ge=1)
    """Seconds to wait for the API to accept a job."""
    job_retries: int = Field(1, ge=0)
    """Extra attempts of a job that failed with a retriable error."""
    job_retry_deadline_seconds: int | None = Field(None, ge=1)
    maximum_bytes_billed: int | None = Field(None, ge=1)
    """Every query job fails (at no cost) rather than bill more than this many bytes."""
    api_endpoint: str | None = None
    """Another API root (a private endpoint, or a local emulator such as bqemulator)."""
    storage_api: bool = False
    """Read large results through the BigQuery Storage Read API (needs google-cloud-bigquery-storage and the
    ``bigquery.readsessions.create`` permission); otherwise results are read page by page over REST."""
    gcs_bucket: str | None = None
    """dbt-bigquery's Python-model keys: accepted, not used."""
    dataproc_region: str | None = None
    dataproc_cluster_name: str | None = None
    submission_method: str | None = None
    compute_region: str | None = None

    @model_validator(mode="before")
    @classmethod
    def _aliases(cls, data: Any) -> Any:
        data = _fold_alias(data, "dataset", "schema")
        data = _fold_alias(data, "project", "database")
        if isinstance(data, Mapping) and "timeout_seconds" in data:  # dbt-bigquery's older name
            data = _fold_alias(data, "timeout_seconds", "job_execution_timeout_seconds")
        return data

    @model_validator(mode="after")
    def _auth(self) -> BigQueryTarget:
        if self.method == "service-account" and not self.keyfile:
            raise ValueError("method: service-account needs keyfile")
        if self.method == "service-account-json" and self.keyfile_json is None:
            raise ValueError("method: service-account-json needs keyfile_json")
        if self.method == "oauth-secrets" and not (
            self.token or (self.refresh_token and self.client_id and self.client_secret)
        ):
            raise ValueError("method: oauth-secrets needs token, or refresh_token + client_id + client_secret")
        if self.method == "anonymous" and not self.api_endpoint:
            raise ValueError("method: anonymous is for a local emulator and needs api_endpoint")
        if not self.schema:
            raise ValueError("missing required key 'dataset' (or 'schema')")
        return self

    def describe(self) -> str:
        """Where this target points, safe to print."""
        where = f" at {self.api_endpoint}" if self.api_endpoint else ""
        return f"bigquery {self.project}.{self.schema}{where} ({self.method})"


class DatabricksTarget(_Target):
    """``type: databricks``: dbt-databricks's keys, run through a SQL warehouse's Statement Execution API."""

    type: Literal["databricks"]
    host: str
    """The workspace host (``dbc-123.cloud.databricks.com``); ``https://`` is assumed when no scheme is given."""
    http_path: str
    """The SQL warehouse's HTTP path, ``/sql/1.0/warehouses/<id>``."""
    token: SecretStr | None = None
    """A personal access token."""
    client_id: str | None = None
    """OAuth machine-to-machine: the service principal's application id (with ``client_secret``)."""
    client_secret: SecretStr | None = None
    auth_type: Literal["oauth"] | None = None
    """dbt-databricks's ``auth_type: oauth``: with client_id/client_secret, OAuth M2M."""
    catalog: str | None = Field(None, alias="database")
    """The Unity Catalog catalog (dbt's ``catalog``, or ``database``); default: the workspace default."""
    connect_timeout: int = Field(30, ge=1)
    """Seconds to wait for one HTTP call to the workspace."""
    statement_timeout_seconds: int = Field(3600, ge=1)
    """Give up on (and cancel) a statement that runs longer than this."""
    staging_volume: str | None = None
    """A Unity Catalog volume (``/Volumes/<catalog>/<schema>/<volume>``) the sync may write files to: upserts
    then stage rows as Parquet files read with ``read_files`` (fast). Without it rows are staged with
    ``INSERT ... VALUES`` statements (slow beyond about 100,000 rows per file)."""
    session_properties: dict[str, Any] = Field(default_factory=dict)
    """dbt-databricks's session properties: accepted, not used (each statement runs on its own)."""
    connection_parameters: dict[str, Any] = Field(default_factory=dict)
    """dbt-databricks's connector parameters: accepted, not used."""

    @model_validator(mode="before")
    @classmethod
    def _aliases(cls, data: Any) -> Any:
        return _fold_alias(data, "catalog", "database")

    @model_validator(mode="after")
    def _auth(self) -> DatabricksTarget:
        if self.token is not None and not self.token.get().strip():
            raise ValueError("token is empty (is the environment variable it comes from set?)")
        if self.token is None and not (self.client_id and self.client_secret):
            raise ValueError("no credentials: set token, or client_id + client_secret (OAuth machine-to-machine)")
        if not self.schema:
            raise ValueError("missing required key 'schema'")
        if self.staging_volume is not None and not re.fullmatch(
            r"/Volumes(/[A-Za-z0-9_][A-Za-z0-9_-]*){3}/?", self.staging_volume
        ):
            raise ValueError(
                f"staging_volume {self.staging_volume!r} is not a volume path /Volumes/<catalog>/<schema>/<volume>"
            )
        if self.warehouse_id is None:
            raise ValueError(
                f"http_path {self.http_path!r} is not a SQL warehouse path (/sql/1.0/warehouses/<id>); "
                "the Statement Execution API runs on SQL warehouses, not clusters"
            )
        return self

    @property
    def warehouse_id(self) -> str | None:
        """The warehouse id at the end of ``http_path``."""
        m = re.fullmatch(r"/?sql/1\.0/(?:warehouses|endpoints)/([A-Za-z0-9]+)/?", self.http_path.strip())
        return m.group(1) if m else None

    @property
    def url(self) -> str:
        """The workspace URL."""
        host = self.host.strip().rstrip("/")
        return host if "://" in host else f"https://{host}"

    def describe(self) -> str:
        """Where this target points, safe to print."""
        return f"databricks {self.url} warehouse {self.warehouse_id} ({self.catalog or 'default'}.{self.schema})"


TargetConfig = Annotated[
    Union[  # noqa: UP007 - runtime union
        DuckDBTarget, PostgresTarget, SnowflakeTarget, SqlAlchemyTarget, BigQueryTarget, DatabricksTarget
    ],
    Field(discriminator="type"),
]
_TARGET_ADAPTER: TypeAdapter[Any] = TypeAdapter(TargetConfig)
_TYPES = ("duckdb", "postgres", "snowflake", "sqlalchemy", "bigquery", "databricks")
