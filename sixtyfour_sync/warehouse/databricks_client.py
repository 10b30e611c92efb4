"""Running one statement through Databricks' SQL Statement Execution API and reading its result (I/O).

A statement is submitted with a 30 s wait and polled (backing off to 5 s) until it ends; a statement
that runs past ``statement_timeout_seconds`` is cancelled. Results use ``EXTERNAL_LINKS`` +
``ARROW_STREAM``: chunk after chunk is downloaded from its presigned link (without the workspace token;
the link is never logged) and cast to the manifest's column types, so every batch has one schema.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any

import httpx
import pyarrow as pa
import pyarrow.compute as pc

from sixtyfour_sync._redact import redact_url
from sixtyfour_sync.warehouse import databricks_sql as dsql

if TYPE_CHECKING:
    from sixtyfour_sync.config.profiles import DatabricksTarget

__all__ = ["StatementFailed", "StatementRunner"]

_TERMINAL = {"SUCCEEDED", "FAILED", "CANCELED", "CLOSED"}
#: What cloud storage answers for a presigned link past its expiry.
_EXPIRED = {400, 403, 404, 410}


class _LinkExpired(Exception):
    """A presigned result link was refused (it expires a few minutes after the statement ends)."""


class StatementFailed(Exception):
    """A statement ended FAILED, CANCELED or CLOSED (the message is the warehouse's, without secrets)."""


class StatementRunner:
    """Statements on one SQL warehouse, with the profile's catalog, schema and timeouts."""

    def __init__(self, client: Any, cfg: DatabricksTarget, *, http: httpx.Client | None = None) -> None:
        self.client = client
        self.cfg = cfg
        self._http = http

    def close(self) -> None:
        """Release the HTTP client used for result downloads."""
        if self._http is not None:
            self._http.close()
        self._http = None

    def execute(self, sql: str, *, links: bool) -> Any:
        """Submit one statement and wait until it ends; raise :class:`StatementFailed` unless it succeeded."""
        from databricks.sdk.service.sql import Disposition, ExecuteStatementRequestOnWaitTimeout, Format

        cfg = self.cfg
        api = self.client.statement_execution
        response = api.execute_statement(
            statement=sql,
            warehouse_id=cfg.warehouse_id,
            catalog=cfg.catalog,
            schema=cfg.schema,
            wait_timeout="30s",
            on_wait_timeout=ExecuteStatementRequestOnWaitTimeout.CONTINUE,
            disposition=Disposition.EXTERNAL_LINKS if links else Disposition.INLINE,
            format=Format.ARROW_STREAM if links else Format.JSON_ARRAY,
        )
        deadline = time.monotonic() + cfg.statement_timeout_seconds
        delay = 0.2
        while response.status is None or response.status.state is None or response.status.state.value not in _TERMINAL:
            if time.monotonic() > deadline:
                api.cancel_execution(response.statement_id)
                raise StatementFailed(
                    f"the statement ran longer than {cfg.statement_timeout_seconds}s and was cancelled"
                )
            time.sleep(delay)
            delay = min(delay * 2, 5.0)
            response = api.get_statement(response.statement_id)
        state = response.status.state.value
        if state != "SUCCEEDED":
            error = response.status.error
            raise StatementFailed(f"{state}: {getattr(error, 'message', None) or 'no message'}")
        return response

    def rows(self, sql: str) -> tuple[list[str], list[tuple[Any, ...]]]:
        """Run one statement; return its (small) result as column names and rows (typed from Arrow)."""
        names: list[str] = []
        rows: list[tuple[Any, ...]] = []
        response = self.execute(sql, links=True)
        names = self.names(response)
        for batch in self.batches(response):
            rows.extend(tuple(r.values()) for r in batch.to_pylist())
        return names, rows

    @staticmethod
    def names(response: Any) -> list[str]:
        """The result's column names, as the manifest lists them."""
        schema = getattr(getattr(response, "manifest", None), "schema", None)
        return [str(c.name) for c in (getattr(schema, "columns", None) or [])]

    def _target_schema(self, response: Any) -> list[pa.DataType | None]:
        schema = getattr(getattr(response, "manifest", None), "schema", None)
        out = []
        for c in getattr(schema, "columns", None) or []:
            type_name = getattr(c.type_name, "value", None) if c.type_name is not None else None
            out.append(dsql.arrow_type_for(type_name, c.type_text))
        return out

    def _download(self, url: str) -> bytes:
        """One chunk from its presigned link (no workspace token may go with it)."""
        if self._http is None:
            self._http = httpx.Client(timeout=self.cfg.connect_timeout, follow_redirects=True)
        try:
            response = self._http.get(url)
        except httpx.HTTPError as exc:
            raise StatementFailed(
                f"downloading a result chunk from {redact_url(url)} failed: {type(exc).__name__}"
            ) from None
        if response.status_code in _EXPIRED:
            raise _LinkExpired(response.status_code)
        if response.is_error:
            raise StatementFailed(f"downloading a result chunk from {redact_url(url)} failed: {response.status_code}")
        return response.content

    def _chunk(self, statement_id: str, link: Any) -> bytes:
        """A chunk's bytes; a link that expired (they last minutes) is fetched anew once."""
        try:
            return self._download(link.external_link)
        except _LinkExpired:
            fresh = self.client.statement_execution.get_statement_result_chunk_n(statement_id, link.chunk_index)
            links = [x for x in fresh.external_links or [] if x.chunk_index == link.chunk_index]
            if not links:
                raise StatementFailed(f"result chunk {link.chunk_index} has no download link any more") from None
            try:
                return self._download(links[0].external_link)
            except _LinkExpired as exc:
                raise StatementFailed(f"result chunk {link.chunk_index}: its new link was refused too") from exc

    def batches(self, response: Any) -> Iterator[pa.RecordBatch]:
        """Every result chunk of a finished statement as Arrow batches, one schema for all."""
        names = self.names(response)
        types = self._target_schema(response)
        result = response.result
        api = self.client.statement_execution
        while result is not None:
            next_index = None
            for link in result.external_links or []:
                with pa.ipc.open_stream(self._chunk(response.statement_id, link)) as reader:
                    for batch in reader:
                        yield _cast_batch(batch, names, types)
                next_index = link.next_chunk_index
            if next_index is None:
                return
            result = api.get_statement_result_chunk_n(response.statement_id, next_index)


def _cast_batch(batch: pa.RecordBatch, names: Sequence[str], types: Sequence[pa.DataType | None]) -> pa.RecordBatch:
    """Cast a result batch to the manifest's types (timestamps to UTC), named as the manifest names them."""
    arrays = []
    for i, col in enumerate(batch.columns):
        want = types[i] if i < len(types) else None
        if want is not None and col.type != want:
            if pa.types.is_timestamp(want) and (pa.types.is_string(col.type) or pa.types.is_large_string(col.type)):
                col = _parse_timestamps(col)
            if pa.types.is_timestamp(want) and want.tz and pa.types.is_timestamp(col.type) and col.type.tz is None:
                col = pc.assume_timezone(col, "UTC")
            col = col.cast(want)
        arrays.append(col)
    out_names = list(names) if len(names) == batch.num_columns else batch.schema.names
    return pa.RecordBatch.from_arrays(arrays, names=out_names)


def _parse_timestamps(col: pa.Array) -> pa.Array:
    """Timestamp text (with or without a UTC offset) as UTC timestamps."""
    try:
        return pc.cast(col, pa.timestamp("us", tz="UTC"))
    except pa.ArrowInvalid:
        return pc.assume_timezone(pc.cast(col, pa.timestamp("us")), "UTC")
