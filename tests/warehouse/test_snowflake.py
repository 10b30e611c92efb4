"""The Snowflake adapter: connection arguments, exact SQL, the chunked Arrow fetch, and fakesnow for real.

fakesnow runs Snowflake SQL on DuckDB in process. Its cursor has no ``fetch_arrow_batches``, so the chunked
path is tested with a cursor of our own that serves the same rows (from the SQL fakesnow really ran) in
chunks, as the connector would.
"""

from __future__ import annotations

import base64
import datetime as dt
import decimal
import http.server
import json
import re
import sys
import threading
import uuid
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, ClassVar

import httpx
import pyarrow as pa
import pytest

from sixtyfour_sync.config.profiles import parse_target_config
from sixtyfour_sync.errors import ConfigError, DataError, MissingDriverError, WarehouseError
from sixtyfour_sync.warehouse import connect
from sixtyfour_sync.warehouse.snowflake import SnowflakeAdapter, arrow_batches, connect_kwargs
from sixtyfour_sync.warehouse.snowflake_arrow import parquet_ready, stage_type
from sixtyfour_sync.warehouse.snowflake_auth import SESSION_PARAMETERS, OAuthTokens
from sixtyfour_sync.warehouse.sqlalchemy import arrow_from_rows
from sixtyfour_sync.warehouse.types import Column, LogicalType, TableRef, UpsertPart

fakesnow = pytest.importorskip("fakesnow")

T = TableRef("leads_enriched")
KEY = [Column("lead_id", LogicalType.BIGINT)]
COLS = [
    Column("email", LogicalType.TEXT),
    Column("employees", LogicalType.BIGINT),
    Column("tags", LogicalType.JSON),
    Column("_sixtyfour_enriched_at", LogicalType.TIMESTAMP),
]
UTC = dt.timezone.utc


def _cfg(**extra: Any) -> Any:
    data: dict[str, Any] = {
        "type": "snowflake",
        "account": "acme-xy12345",
        "user": "loader",
        "database": "analytics",
        "schema": "enriched",
        "warehouse": "transforming",
        "role": "loader_role",
    }
    data.update(extra)
    if not any(k in data for k in ("password", "private_key_path", "private_key", "authenticator")):
        data["password"] = "pw-do-not-print"
    return parse_target_config(data)


# --------------------------------------------------------------------------------------------------
# Without a database


def _rsa_pem(passphrase: bytes | None) -> bytes:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    enc: serialization.KeySerializationEncryption = (
        serialization.BestAvailableEncryption(passphrase) if passphrase else serialization.NoEncryption()
    )
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, enc)


def test_connect_kwargs_password() -> None:
    kw = connect_kwargs(_cfg(query_tag="nightly"))
    assert kw["account"] == "acme-xy12345" and kw["user"] == "loader" and kw["password"] == "pw-do-not-print"
    assert kw["database"] == "analytics" and kw["schema"] == "enriched"
    assert kw["warehouse"] == "transforming" and kw["role"] == "loader_role"
    assert kw["paramstyle"] == "qmark" and kw["autocommit"] is False
    assert kw["session_parameters"] == {**SESSION_PARAMETERS, "QUERY_TAG": "nightly"}
    # The row hash casts values to text: every output format is pinned, whatever the account says.
    params = kw["session_parameters"]
    assert params["TIMEZONE"] == "UTC"
    assert (
        params["TIMESTAMP_TZ_OUTPUT_FORMAT"]
        == params["TIMESTAMP_LTZ_OUTPUT_FORMAT"]
        == ("YYYY-MM-DD HH24:MI:SS.FF9 TZH:TZM")
    )
    assert params["TIMESTAMP_NTZ_OUTPUT_FORMAT"] == "YYYY-MM-DD HH24:MI:SS.FF9"
    assert params["DATE_OUTPUT_FORMAT"] == "YYYY-MM-DD" and params["TIMESTAMP_INPUT_FORMAT"] == "AUTO"


def test_connect_kwargs_key_pair_relative_to_project(tmp_path: Path) -> None:
    (tmp_path / "keys").mkdir()
    (tmp_path / "keys" / "rsa.p8").write_bytes(_rsa_pem(b"open sesame"))
    cfg = _cfg(private_key_path="keys/rsa.p8", private_key_passphrase="open sesame")
    kw = connect_kwargs(cfg, project_dir=tmp_path)
    assert isinstance(kw["private_key"], bytes) and kw["private_key"][:1] == b"\x30"  # DER SEQUENCE
    assert "password" not in kw

    wrong = _cfg(private_key_path="keys/rsa.p8", private_key_passphrase="not-the-passphrase")
    with pytest.raises(ConfigError) as info:
        connect_kwargs(wrong, project_dir=tmp_path)
    assert "not-the-passphrase" not in str(info.value) and "rsa.p8" in str(info.value)

    with pytest.raises(ConfigError, match="cannot be read"):
        connect_kwargs(_cfg(private_key_path="keys/missing.p8"), project_dir=tmp_path)


def test_connect_kwargs_inline_key_and_oauth() -> None:
    kw = connect_kwargs(_cfg(private_key=_rsa_pem(None).decode()))
    assert kw["private_key"][:1] == b"\x30"
    kw = connect_kwargs(_cfg(authenticator="oauth", token="tok-secret"))
    assert kw["authenticator"] == "oauth" and kw["token"] == "tok-secret"


def test_repr_and_describe_hold_no_secret() -> None:
    a = SnowflakeAdapter(_cfg())
    assert "pw-do-not-print" not in repr(a) and "pw-do-not-print" not in a.describe()
    assert a.describe() == "snowflake loader@acme-xy12345/analytics (schema enriched)"


def test_identifiers_fold_to_upper_case_as_dbt_snowflake_does() -> None:
    a = SnowflakeAdapter(_cfg(schema="dbt_John"))
    assert a.quote("lead_id") == '"LEAD_ID"'
    assert a.quote("firstName") == '"FIRSTNAME"'  # dbt-snowflake does not quote: the name folds
    assert a.quote("price$usd") == '"PRICE$USD"'
    assert a.table_sql(T) == '"DBT_JOHN"."LEADS_ENRICHED"'
    assert a.create_schema_sql("dbt_John") == 'CREATE SCHEMA IF NOT EXISTS "DBT_JOHN"'
    assert a.denormalize_identifier("LEAD_ID") == "lead_id"
    assert a.sql_type(LogicalType.JSON) == "VARIANT" and a.sql_type(LogicalType.TIMESTAMP) == "TIMESTAMP_TZ"


def test_type_mapping_from_information_schema() -> None:
    a = SnowflakeAdapter(_cfg())
    assert a.logical_type_of("NUMBER(38,0)") is LogicalType.BIGINT
    assert a.logical_type_of("NUMBER(10,2)") == "NUMBER(10,2)"
    assert a.logical_type_of("FLOAT") is LogicalType.DOUBLE
    assert a.logical_type_of("TEXT") is LogicalType.TEXT
    assert a.logical_type_of("VARIANT") is LogicalType.JSON
    assert a.is_compatible(a.logical_type_of("TIMESTAMP_NTZ"), LogicalType.TIMESTAMP)
    assert not a.is_compatible(a.logical_type_of("NUMBER(10,2)"), LogicalType.BOOLEAN)


def test_exact_merge_sql() -> None:
    a = SnowflakeAdapter(_cfg())
    sql = a.merge_sql(
        T, '"ENRICHED"."_SIXTYFOUR_STAGE_1"', ["org_id", "lead_id"], ["email", "tags"], frozenset({"tags"})
    )
    assert sql == (
        'MERGE INTO "ENRICHED"."LEADS_ENRICHED" AS t USING (SELECT "ORG_ID", "LEAD_ID", "EMAIL", '
        'PARSE_JSON("TAGS") AS "TAGS" FROM "ENRICHED"."_SIXTYFOUR_STAGE_1" QUALIFY ROW_NUMBER() OVER '
        '(PARTITION BY "ORG_ID", "LEAD_ID" ORDER BY "_SIXTYFOUR_SEQ" DESC) = 1) AS s '
        'ON t."ORG_ID" = s."ORG_ID" AND t."LEAD_ID" = s."LEAD_ID" '
        'WHEN MATCHED THEN UPDATE SET "EMAIL" = s."EMAIL", "TAGS" = s."TAGS" '
        'WHEN NOT MATCHED THEN INSERT ("ORG_ID", "LEAD_ID", "EMAIL", "TAGS") '
        'VALUES (s."ORG_ID", s."LEAD_ID", s."EMAIL", s."TAGS")'
    )
    keys_only = a.merge_sql(T, '"S"', ["lead_id"], [])
    assert "WHEN MATCHED" not in keys_only and keys_only.endswith('INSERT ("LEAD_ID") VALUES (s."LEAD_ID")')


def test_merge_counts_read_by_column_name() -> None:
    names = ["number of rows inserted", "number of rows updated"]
    assert SnowflakeAdapter._merge_counts(names, (3, 7)) == (3, 7)
    assert SnowflakeAdapter._merge_counts(list(reversed(names)), (7, 3)) == (3, 7)
    assert SnowflakeAdapter._merge_counts(names, None) == (0, 0)


class _ChunkedCursor:
    """A cursor that serves Arrow chunks the way the connector's fetch_arrow_batches does."""

    def __init__(self, table: pa.Table, chunk_rows: Sequence[int]) -> None:
        self._chunks: list[pa.Table] = []
        start = 0
        for n in chunk_rows:
            self._chunks.append(table.slice(start, n))
            start += n
        self.fetched = 0
        self.closed = False
        self.forced_us = False

    def execute(self, sql: str, params: Any = None) -> _ChunkedCursor:
        return self

    def fetch_arrow_batches(self, force_microsecond_precision: bool = False) -> Iterator[pa.Table]:
        # The connector's own signature (4.x): one timestamp unit across all chunks when asked.
        self.forced_us = force_microsecond_precision
        for chunk in self._chunks:
            self.fetched += 1
            yield chunk

    def close(self) -> None:
        self.closed = True


def test_arrow_batches_reslices_result_chunks_lazily() -> None:
    table = pa.table({"id": list(range(12))})
    cur = _ChunkedCursor(table, [7, 5])
    it = arrow_batches(cur, 3)
    first = next(it)
    assert first.num_rows == 3 and cur.fetched == 1  # the second chunk is not downloaded yet
    rest = list(it)
    assert [b.num_rows for b in [first, *rest]] == [3, 3, 1, 3, 2]
    assert cur.forced_us is True
    assert pa.Table.from_batches([first, *rest]).column("id").to_pylist() == list(range(12))


def test_arrow_batches_falls_back_to_fetchmany() -> None:
    class Plain:
        def __init__(self) -> None:
            self.description = [("ID",), ("NAME",)]
            self.rows = [(i, f"n{i}") for i in range(5)]

        def fetchmany(self, n: int) -> list[tuple[Any, ...]]:
            out, self.rows = self.rows[:n], self.rows[n:]
            return out

    batches = list(arrow_batches(Plain(), 2))
    assert [b.num_rows for b in batches] == [2, 2, 1]
    assert batches[0].schema.names == ["ID", "NAME"]


def test_missing_driver_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "snowflake.connector", None)
    a = SnowflakeAdapter(_cfg())
    with pytest.raises(MissingDriverError) as info:
        a.open()
    assert info.value.hint == "pip install 'sixtyfour-sync[snowflake]'"


# --------------------------------------------------------------------------------------------------
# fakesnow for real


@pytest.fixture
def sf() -> Iterator[SnowflakeAdapter]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with fakesnow.patch():
            schema = f"sf_{uuid.uuid4().hex[:10]}"
            adapter = connect(
                parse_target_config(
                    {
                        "type": "snowflake",
                        "account": "fakesnow",
                        "user": "tester",
                        "password": "not-a-real-password",
                        "database": f"db_{uuid.uuid4().hex[:8]}",
                        "schema": schema,
                    }
                )
            )
            assert isinstance(adapter, SnowflakeAdapter)
            try:
                adapter.ensure_schema(schema)
                yield adapter
            finally:
                adapter.close()


def _tables(sf: SnowflakeAdapter) -> list[str]:
    with sf.session() as s:
        rows = s.fetchall(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = ? ORDER BY 1",
            [sf.normalize_identifier(sf.default_schema or "")],
        )
    return [r[0] for r in rows]


def test_lower_case_names_are_usable_unquoted(sf: SnowflakeAdapter) -> None:
    sf.ensure_table(T, KEY, COLS)
    sf.upsert(T, ["lead_id"], [UpsertPart(pa.table({"lead_id": [1], "email": ["a@x"]}), ["email"])])
    with sf.session() as s:
        # What a user writes in a dbt model or a `where:`: unquoted, lower case.
        rows = s.fetchall(f"select lead_id, email from {sf.default_schema}.leads_enriched")
    assert rows == [(1, "a@x")]


def test_upsert_stages_parquet_merges_and_drops_the_stage(sf: SnowflakeAdapter) -> None:
    sf.ensure_table(T, KEY, COLS)
    plus2 = dt.timezone(dt.timedelta(hours=2))
    at = dt.datetime(2024, 3, 1, 14, 0, tzinfo=plus2)
    data = pa.table(
        {
            "lead_id": [1, 2],
            "email": ["a@x", "b@x"],
            "tags": ['{"seniority": "vp"}', '["x", "y"]'],
            "_sixtyfour_enriched_at": pa.array([at, at], pa.timestamp("us", tz="+02:00")),
        }
    )
    result = sf.upsert(T, ["lead_id"], [UpsertPart(data, ["email", "tags", "_sixtyfour_enriched_at"])])
    assert (result.inserted, result.updated) == (2, 0)
    with sf.session() as s:
        rows = s.fetchall(
            f'SELECT "LEAD_ID", "TAGS":seniority::VARCHAR, "_SIXTYFOUR_ENRICHED_AT" FROM {sf.table_sql(T)} ORDER BY 1'
        )
    assert rows[0][1] == "vp"  # PARSE_JSON made it a VARIANT object, not a JSON string
    assert rows[0][2] == dt.datetime(2024, 3, 1, 12, 0, tzinfo=UTC)
    assert _tables(sf) == ["LEADS_ENRICHED"]


def test_qualify_keeps_the_last_row_per_key(sf: SnowflakeAdapter) -> None:
    sf.ensure_table(T, KEY, COLS)
    stage = f'{sf.quote(sf.default_schema or "")}."DUPS"'
    with sf.session() as s:
        s.execute(f'CREATE TABLE {stage} ("LEAD_ID" NUMBER(38,0), "EMAIL" VARCHAR, "_SIXTYFOUR_SEQ" NUMBER(38,0))')
    with sf.session() as s:
        s.execute(f"INSERT INTO {stage} VALUES (1, 'first', 0), (1, 'last', 2), (1, 'middle', 1)")
    with sf.session() as s:
        s.execute(sf.merge_sql(T, stage, ["lead_id"], ["email"]))
        assert s.fetchall(f'SELECT "LEAD_ID", "EMAIL" FROM {sf.table_sql(T)}') == [(1, "last")]


def test_failure_rolls_back_merge_and_ledger_and_drops_stage(sf: SnowflakeAdapter) -> None:
    sf.ensure_table(T, KEY, COLS)
    ledger = TableRef("_sixtyfour_sync_jobs")
    with sf.session() as s:
        s.execute(f'CREATE TABLE {sf.table_sql(ledger)} ("JOB" VARCHAR)')
    sf.upsert(T, ["lead_id"], [UpsertPart(pa.table({"lead_id": [1], "email": ["kept"]}), ["email"])])

    def ledger_then_fail(s: Any) -> None:
        s.insert(ledger, [{"job": "j1"}])
        raise RuntimeError("crash after the ledger write")

    change = pa.table({"lead_id": [1, 2], "email": ["changed", "new"]})
    with pytest.raises(RuntimeError):
        sf.upsert(T, ["lead_id"], [UpsertPart(change, ["email"])], before_commit=ledger_then_fail)
    with sf.session() as s:
        assert s.fetchall(f'SELECT "LEAD_ID", "EMAIL" FROM {sf.table_sql(T)}') == [(1, "kept")]
        assert s.fetchall(f"SELECT COUNT(*) FROM {sf.table_sql(ledger)}") == [(0,)]
    assert _tables(sf) == ["LEADS_ENRICHED", "_SIXTYFOUR_SYNC_JOBS"]


def test_upsert_inside_a_session_is_refused(sf: SnowflakeAdapter) -> None:
    sf.ensure_table(T, KEY, COLS)
    part = UpsertPart(pa.table({"lead_id": [1], "email": ["a"]}), ["email"])
    with pytest.raises(WarehouseError, match="commit"), sf.session() as s:
        s.upsert(T, ["lead_id"], [part])
    with pytest.raises(WarehouseError, match="inside an open session"), sf.session():
        sf.upsert(T, ["lead_id"], [part])


def test_null_keys_are_rejected_before_staging(sf: SnowflakeAdapter) -> None:
    sf.ensure_table(T, KEY, COLS)
    with pytest.raises(DataError, match="NULL key"):
        sf.upsert(T, ["lead_id"], [UpsertPart(pa.table({"lead_id": [1, None], "email": ["a", "b"]}), ["email"])])
    assert _tables(sf) == ["LEADS_ENRICHED"]


class _ChunkingConnection:
    """Wraps fakesnow's connection: its cursors gain fetch_arrow_batches over what fakesnow really ran."""

    def __init__(self, inner: Any, chunk_rows: int) -> None:
        self.inner = inner
        self.chunk_rows = chunk_rows
        self.cursors: list[Any] = []

    def cursor(self) -> Any:
        inner_cur = self.inner.cursor()
        chunk_rows = self.chunk_rows
        outer = self

        class Cur:
            def __getattr__(self, name: str) -> Any:
                return getattr(inner_cur, name)

            def fetch_arrow_batches(self) -> Iterator[pa.Table]:
                outer.cursors.append(self)
                names = [d[0] for d in inner_cur.description]
                table = pa.Table.from_batches([arrow_from_rows(names, inner_cur.fetchall())])
                for start in range(0, table.num_rows, chunk_rows):
                    yield table.slice(start, chunk_rows)

        return Cur()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


def test_stream_uses_fetch_arrow_batches_on_real_sql(sf: SnowflakeAdapter) -> None:
    sf.ensure_table(T, KEY, COLS)
    n = 1_000
    sf.upsert(
        T, ["lead_id"], [UpsertPart(pa.table({"lead_id": list(range(n)), "employees": list(range(n))}), ["employees"])]
    )
    wrapped = _ChunkingConnection(sf.connection(), chunk_rows=300)
    chunked = SnowflakeAdapter(sf.config, connection=wrapped)
    sql = chunked.source_sql(table=T, columns=["lead_id", "employees"], where="employees >= 100")
    batches = list(chunked.stream(sql, batch_rows=200))
    assert wrapped.cursors, "the chunked path was not used"
    assert [b.num_rows for b in batches] == [200, 100, 200, 100, 200, 100]
    assert sorted(pa.Table.from_batches(batches).column(0).to_pylist()) == list(range(100, n))


def test_stage_load_count_mismatch_is_a_data_error(sf: SnowflakeAdapter, monkeypatch: pytest.MonkeyPatch) -> None:
    sf.ensure_table(T, KEY, COLS)
    monkeypatch.setattr(SnowflakeAdapter, "_rows_loaded", staticmethod(lambda cur: 0))
    with pytest.raises(DataError, match="loaded 0 of 1 rows"):
        sf.upsert(T, ["lead_id"], [UpsertPart(pa.table({"lead_id": [1], "email": ["a"]}), ["email"])])
    assert _tables(sf) == ["LEADS_ENRICHED"]


# --------------------------------------------------------------------------------------------------
# dbt-snowflake's quoting


def test_connector_gets_database_and_schema_as_dbt_would() -> None:
    folded = connect_kwargs(_cfg(schema="dbt_John"))
    assert folded["schema"] == "dbt_John" and folded["database"] == "analytics"  # unquoted: Snowflake folds them
    quoted = connect_kwargs(_cfg(schema="dbt_John"), quote_schema=True, quote_database=True)
    assert quoted["schema"] == '"dbt_John"' and quoted["database"] == '"analytics"'


def test_quoting_from_the_profile_and_from_dbt_project() -> None:
    from sixtyfour_sync.warehouse import Quoting

    a = SnowflakeAdapter(_cfg(schema="dbt_John", quoting={"schema": True}), quoting=Quoting(column=True))
    assert a.table_sql(T) == '"dbt_John"."LEADS_ENRICHED"'  # the profile's schema: true
    assert a.quote("firstName") == '"firstName"'  # dbt_project.yml's column: true
    assert SnowflakeAdapter(_cfg()).quote("firstName") == '"FIRSTNAME"'


# --------------------------------------------------------------------------------------------------
# OAuth


def _token_server(status: int, body: dict[str, Any], seen: list[httpx.Request]) -> httpx.Client:
    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(status, json=body)

    return httpx.Client(transport=httpx.MockTransport(handler))


def _oauth_cfg(**extra: Any) -> Any:
    return _cfg(
        authenticator="oauth",
        oauth_client_id="client-id",
        oauth_client_secret="client-secret-value",
        token="refresh-token-value",
        **extra,
    )


def test_refresh_token_is_exchanged_once_for_an_access_token() -> None:
    seen: list[httpx.Request] = []
    cfg = _oauth_cfg()
    tokens = OAuthTokens(cfg, client=_token_server(200, {"access_token": "access-1", "expires_in": 600}, seen))
    first = connect_kwargs(cfg, tokens=tokens)
    second = connect_kwargs(cfg, tokens=tokens)  # a sibling connection reuses the cached token
    assert first["authenticator"] == "oauth" and first["token"] == second["token"] == "access-1"
    assert len(seen) == 1
    request = seen[0]
    assert str(request.url) == "https://acme-xy12345.snowflakecomputing.com/oauth/token-request"
    assert request.headers["authorization"] == "Basic " + base64.b64encode(b"client-id:client-secret-value").decode()
    form = dict(x.split("=", 1) for x in request.content.decode().split("&"))
    assert form["grant_type"] == "refresh_token" and form["refresh_token"] == "refresh-token-value"


def test_a_refused_refresh_token_is_a_clear_error_without_secrets() -> None:
    seen: list[httpx.Request] = []
    body = {"error": "invalid_grant", "message": "The refresh token has expired."}
    tokens = OAuthTokens(_oauth_cfg(), client=_token_server(400, body, seen))
    with pytest.raises(WarehouseError) as info:
        connect_kwargs(_oauth_cfg(), tokens=tokens)
    text = str(info.value) + str(info.value.hint)
    assert "HTTP 400" in text and "invalid_grant" in text and "expired" in text
    assert "refresh-token-value" not in text and "client-secret-value" not in text


def test_the_token_request_url_must_be_https_except_on_loopback() -> None:
    cfg = _oauth_cfg(oauth_token_request_url="http://idp.example.com/token")
    with pytest.raises(ConfigError, match="must use https"):
        connect_kwargs(cfg, tokens=OAuthTokens(cfg, client=_token_server(200, {}, [])))


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ({"authenticator": "oauth", "token": "t", "oauth_client_id": "id"}, "go together"),
        ({"password": "pw", "oauth_client_id": "id", "oauth_client_secret": "s"}, "authenticator is not oauth"),
        ({"authenticator": "oauth_client_credentials"}, "needs oauth_client_id"),
        ({"authenticator": "oauth", "oauth_client_id": "id", "oauth_client_secret": "s"}, "needs token"),
    ],
)
def test_incomplete_oauth_profiles_are_refused(extra: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        _cfg(**extra)


def test_client_credentials_use_the_connectors_own_flow() -> None:
    kw = connect_kwargs(
        _cfg(
            authenticator="oauth_client_credentials",
            oauth_client_id="id",
            oauth_client_secret="secret",
            oauth_token_request_url="https://idp.example.com/oauth2/token",
        )
    )
    assert kw["authenticator"] == "OAUTH_CLIENT_CREDENTIALS" and kw["oauth_client_id"] == "id"
    assert kw["oauth_client_secret"] == "secret"
    assert kw["oauth_token_request_url"] == "https://idp.example.com/oauth2/token"


class _TokenHandler(http.server.BaseHTTPRequestHandler):
    requests: ClassVar[list[str]] = []

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length", "0"))
        type(self).requests.append(self.rfile.read(length).decode())
        body = json.dumps({"access_token": "local-access", "expires_in": 600}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


def test_oauth_connect_over_a_real_socket() -> None:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _TokenHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/oauth/token-request"
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with fakesnow.patch():
                adapter = connect(_oauth_cfg(oauth_token_request_url=url, database=f"db_{uuid.uuid4().hex[:8]}"))
                try:
                    sibling = adapter.sibling()
                    with sibling.session() as s:
                        assert s.fetchall("SELECT 1") == [(1,)]
                    sibling.close()
                finally:
                    adapter.close()
    finally:
        server.shutdown()
        server.server_close()
    assert len(_TokenHandler.requests) == 1  # the sibling used the cached access token
    assert "grant_type=refresh_token" in _TokenHandler.requests[0]


# --------------------------------------------------------------------------------------------------
# Types: one schema per stream, decimals within 38 digits, timestamps bound as UTC text


class _Meta:
    def __init__(self, name: str, type_code: int, scale: int | None = None) -> None:
        self.name, self.type_code, self.scale = name, type_code, scale

    def __getitem__(self, i: int) -> Any:
        return (self.name,)[i]


def test_result_chunks_are_cast_to_the_result_metadata_types() -> None:
    from snowflake.connector.constants import FIELD_NAME_TO_ID

    utc = dt.timezone.utc
    at = dt.datetime(2024, 1, 2, 3, 4, 5, 123456, tzinfo=utc)
    chunks = [
        pa.table({"N": pa.array([1], pa.int8()), "AT": pa.array([at], pa.timestamp("us", tz="+02:00")), "V": [None]}),
        pa.table({"N": pa.array([70000], pa.int32()), "AT": pa.array([at], pa.timestamp("ns", tz="UTC")), "V": ["x"]}),
    ]

    class Cursor:
        description: ClassVar[list[_Meta]] = [
            _Meta("N", FIELD_NAME_TO_ID["FIXED"], 0),
            _Meta("AT", FIELD_NAME_TO_ID["TIMESTAMP_TZ"]),
            _Meta("V", FIELD_NAME_TO_ID["TEXT"]),
        ]

        def fetch_arrow_batches(self, force_microsecond_precision: bool = False) -> Iterator[pa.Table]:
            yield from chunks

    batches = list(arrow_batches(Cursor(), 10))
    want = pa.schema([("N", pa.int64()), ("AT", pa.timestamp("us", tz="UTC")), ("V", pa.string())])
    assert [b.schema for b in batches] == [want, want]
    assert [b.column(1)[0].as_py() for b in batches] == [at, at]


def test_decimals_are_capped_at_38_digits() -> None:
    assert stage_type(pa.decimal256(50, 10)) == "NUMBER(38,10)"
    fits = pa.table({"d": pa.array([decimal.Decimal("12.5")], pa.decimal256(50, 10))})
    ready = parquet_ready(fits, ["D"])
    assert ready.schema.field("D").type == pa.decimal128(38, 10)
    too_big = pa.table({"d": pa.array([decimal.Decimal(10) ** 45], pa.decimal256(50, 0))})
    with pytest.raises(DataError, match="beyond 38 digits"):
        parquet_ready(too_big, ["D"])


def test_timestamps_are_bound_as_utc_iso_text() -> None:
    plus2 = dt.timezone(dt.timedelta(hours=2))
    a = SnowflakeAdapter(_cfg())
    assert a.adapt_value(dt.datetime(2024, 5, 17, 14, 30, tzinfo=plus2)) == "2024-05-17T12:30:00.000000+00:00"
    assert a.adapt_value(dt.datetime(2024, 5, 17, 12, 30)) == "2024-05-17T12:30:00.000000+00:00"


# --------------------------------------------------------------------------------------------------
# Extraction on its own connection


def test_stream_runs_on_its_own_connection_while_ddl_runs_on_the_main_one(sf: SnowflakeAdapter) -> None:
    sf.ensure_table(T, KEY, COLS)
    sf.upsert(T, ["lead_id"], [UpsertPart(pa.table({"lead_id": list(range(50)), "email": ["e"] * 50}), ["email"])])
    stream = sf.stream(sf.source_sql(table=T, columns=["lead_id"]), batch_rows=10)
    first = next(stream)
    assert sf._stream_conn is not None and sf._stream_conn is not sf._conn
    sf.ensure_table(TableRef("other"), KEY, COLS)  # DDL on the main connection mid-stream
    rest = list(stream)
    assert first.num_rows + sum(b.num_rows for b in rest) == 50


def test_names_an_earlier_version_created_as_written_are_not_silently_abandoned() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with fakesnow.patch():
            database = f"DB_{uuid.uuid4().hex[:8].upper()}"
            base = {"type": "snowflake", "account": "fakesnow", "user": "u", "password": "p", "database": database}
            old = connect(parse_target_config({**base, "schema": "ENRICHED"}))
            with old.session() as s:
                s.execute('CREATE SCHEMA IF NOT EXISTS "dbt_John"')
                s.execute('CREATE TABLE "dbt_John"."LEADS_ENRICHED" ("LEAD_ID" NUMBER(38,0))')
                s.execute('CREATE TABLE "ENRICHED"."LeadsEnriched" ("LEAD_ID" NUMBER(38,0))')
            old.close()
            folded = connect(parse_target_config({**base, "schema": "dbt_John"}))
            try:
                with pytest.raises(ConfigError, match="case-sensitive name") as info:
                    folded.table_exists(T)
                assert "quoting" in str(info.value.hint)
                with pytest.raises(ConfigError, match="case-sensitive name") as info:
                    folded.schema_exists("dbt_John")
                assert "quoting: {schema: true}" in str(info.value.hint)
            finally:
                folded.close()
            mixed = connect(parse_target_config({**base, "schema": "ENRICHED"}))
            try:
                with pytest.raises(ConfigError, match=re.escape('"ENRICHED"."LeadsEnriched"')):
                    mixed.table_exists(TableRef("LeadsEnriched"))
                assert not mixed.table_exists(TableRef("brand_new"))
            finally:
                mixed.close()
            # fakesnow cannot open a session on a quoted schema name; our SQL names the schema in full anyway.
            import snowflake.connector

            conn = snowflake.connector.connect(**connect_kwargs(parse_target_config({**base, "schema": "ENRICHED"})))
            kept = SnowflakeAdapter(
                parse_target_config({**base, "schema": "dbt_John", "quoting": {"schema": True}}), connection=conn
            )
            try:
                assert kept.table_exists(T) and kept.schema_exists("dbt_John")
            finally:
                kept.close()
                conn.close()
