"""The ledger's smaller records: the columns each sync created, quarantined answers, learned prices, what each
spec stamp stands for, and webhook deliveries."""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

import pyarrow as pa

from sixtyfour_sync.engine.ledger.job import Job
from sixtyfour_sync.engine.ledger.tables import LedgerBase, utcnow
from sixtyfour_sync.warehouse.session import Session
from sixtyfour_sync.warehouse.types import UpsertPart


class ColumnRecords(LedgerBase):
    """``_sixtyfour_sync_columns``: which sync created which target column."""

    def created_columns(self, target: str) -> dict[str, str]:
        """The columns of ``target`` a sync created: lower-cased name -> the sync's name."""
        if not self.adapter.table_exists(self.created):
            return {}
        with self.adapter.session() as s:
            rows = s.select(self.created, {"target": target}, columns=["column_name", "sync_name"])
        return {str(r["column_name"]): str(r["sync_name"]) for r in rows}

    def record_columns(self, target: str, sync_name: str, names: Sequence[str]) -> None:
        """Record that ``sync_name`` created (or, for a table an older version made, has always written) columns."""
        if not names:
            return
        self.ensure()
        self.guard()
        now = utcnow()
        with self.adapter.session() as s:
            for name in dict.fromkeys(n.lower() for n in names):
                row = {"target": target, "column_name": name, "sync_name": sync_name, "created_at": now}
                s.insert_if_absent(self.created, row, ["target", "column_name"])

    # -- quarantined answers -------------------------------------------------------------------------


class QuarantineRecords(LedgerBase):
    """``_sixtyfour_sync_quarantine``: paid answers the target refused, held until they merge."""

    def quarantine_rows(self, rows: Sequence[Mapping[str, Any]], session: Session) -> None:
        """Record answers the target refused (in the merge's transaction)."""
        self.guard()
        now = utcnow()
        with self._session(session) as s:
            s.insert(self.quarantine, [{**r, "quarantine_id": uuid.uuid4().hex, "quarantined_at": now} for r in rows])

    def quarantined(self, sync_name: str | None = None, target: str | None = None) -> list[dict[str, Any]]:
        """Answers still held because the target refused them (of one sync and target, or all), oldest first."""
        if not self.adapter.table_exists(self.quarantine):
            return []
        with self.adapter.session() as s:
            where = {"sync_name": sync_name} if sync_name else None
            rows = s.select(self.quarantine, where, order_by=["quarantined_at"])
        return [
            r for r in rows if r.get("released_at") is None and (target is None or r.get("target") in (None, target))
        ]

    def release_quarantined(self, ids: Sequence[str], session: Session) -> None:
        """Mark quarantined answers merged (in the transaction that merged them)."""
        self.guard()
        now = utcnow()
        with self._session(session) as s:
            for qid in ids:
                s.update(self.quarantine, {"released_at": now}, {"quarantine_id": qid})

    # -- prices --------------------------------------------------------------------------------------


class PriceRecords(LedgerBase):
    """``_sixtyfour_sync_prices``: per-row prices learned from the API's estimates."""

    def learned_price(self, endpoint: str, tier: str) -> tuple[float, datetime | None] | None:
        """The per-row price learned for an endpoint and tier, and when, or None."""
        with self.adapter.session() as s:
            rows = s.select(
                self.prices,
                {"endpoint": endpoint, "tier": tier},
                columns=["price_cents_per_row", "learned_at"],
            )
        if not rows or rows[0]["price_cents_per_row"] is None:
            return None
        return float(rows[0]["price_cents_per_row"]), rows[0]["learned_at"]

    def learn_price(self, endpoint: str, tier: str, price: float, *, job_id: str, sync_name: str) -> None:
        """Remember the per-row price an estimate showed (the newest estimate wins)."""
        data = pa.table(
            {
                "endpoint": [endpoint],
                "tier": [tier],
                "price_cents_per_row": pa.array([float(price)], pa.float64()),
                "learned_at": pa.array([utcnow()], pa.timestamp("us", tz="UTC")),
                "job_id": [job_id],
                "sync_name": [sync_name],
            }
        )
        self.adapter.upsert(
            self.prices,
            ["endpoint", "tier"],
            [UpsertPart(data, ["price_cents_per_row", "learned_at", "job_id", "sync_name"])],
        )

    # -- spec definitions ----------------------------------------------------------------------------


class SpecRecords(LedgerBase):
    """``_sixtyfour_sync_specs``: what each spec hash stamped into a target stands for."""

    def record_specs(self, sync_name: str, definitions: Mapping[str, Mapping[str, Any]], session: Session) -> None:
        """Remember what each stamp stands for (once per hash), in the caller's transaction (a merge's)."""
        for spec_hash, definition in definitions.items():
            row = {
                "spec_hash": spec_hash,
                "sync_name": sync_name,
                "definition": json.dumps(definition, sort_keys=True),
                "recorded_at": utcnow(),
            }
            session.insert_if_absent(self.specs, row, ["spec_hash"])

    def spec_definitions(self, hashes: Sequence[str]) -> dict[str, dict[str, Any]]:
        """The recorded definitions of these stamps (those never recorded are left out)."""
        if not hashes or not self.adapter.table_exists(self.specs):
            return {}
        with self.adapter.session() as s:
            rows = s.select(self.specs, None, columns=["spec_hash", "definition"])
        wanted = set(hashes)
        out: dict[str, dict[str, Any]] = {}
        for r in rows:
            if r["spec_hash"] in wanted and r["definition"]:
                try:
                    out[str(r["spec_hash"])] = json.loads(str(r["definition"]))
                except ValueError:
                    continue
        return out

    # -- webhook events ------------------------------------------------------------------------------


class EventRecords(LedgerBase):
    """``_sixtyfour_sync_webhook_events``: webhook deliveries, one row per event id."""

    def event_seen(self, event_id: str) -> bool:
        """Whether a webhook delivery with this event id was received before."""
        if not self.adapter.table_exists(self.events):
            return False
        with self.adapter.session() as s:
            return bool(s.select(self.events, {"event_id": event_id}, columns=["event_id"]))

    def record_event(
        self,
        event_id: str,
        *,
        event_type: str | None,
        task_id: str | None,
        attempt: int | None,
        outcome: str,
        job: Job | None = None,
    ) -> bool:
        """Record a delivery once; False (and nothing written) when its event id is already there."""
        self.ensure()
        row = {
            "event_id": event_id,
            "event_type": event_type,
            "task_id": task_id,
            "job_id": None if job is None else job.job_id,
            "sync_name": None if job is None else job.sync_name,
            "attempt": attempt,
            "outcome": outcome,
            "received_at": utcnow(),
        }
        with self.adapter.session() as s:  # one statement: two receivers racing on one event insert it once
            return s.insert_if_absent(self.events, row, ["event_id"])

    def forget_event(self, event_id: str) -> None:
        """Remove a delivery's record: it was answered with a non-2xx after all, so its retry must be new."""
        with self.adapter.session() as s:
            s.delete(self.events, {"event_id": event_id})

    def set_event_outcome(self, event_id: str, outcome: str) -> None:
        """Say what became of a delivery (finished, ignored, left to a run)."""
        with self.adapter.session() as s:
            s.update(self.events, {"outcome": outcome}, {"event_id": event_id})

    # -- helpers -------------------------------------------------------------------------------------
