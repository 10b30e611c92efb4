"""What makes two rows of two syncs the same question, and when a sync stores and takes answers."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence

from sixtyfour_sync.config.models import SyncSpec

__all__ = ["question_id", "stores_answers", "takes_answers"]


def question_id(spec: SyncSpec, inputs: Sequence[str]) -> str:
    """The question a sync asks of each row, apart from the row's input values: the endpoint, the tier, the struct
    (each field's definition), ``field_confidence`` and ``research_plan`` (all in :meth:`SyncSpec.spec_hash`), and
    the names of the input columns in the order their values are hashed. Two rows of any syncs with the same
    question id and the same input hash send the API the same thing."""
    blob = json.dumps({"spec": spec.spec_hash(), "inputs": list(inputs)}, separators=(",", ":"), ensure_ascii=False)
    return "q" + hashlib.sha256(blob.encode()).hexdigest()[:31]


def stores_answers(spec: SyncSpec, *, own_pass: bool) -> bool:
    """Whether a step's answers go to the store: the sync's own pass asking its whole question (a "new fields"
    step answers part of it, an escalation tier another question), unless ``reuse: false``."""
    return spec.reuse.enabled and own_pass and not spec.field_subset


def takes_answers(spec: SyncSpec, *, own_pass: bool, full_refresh: bool) -> bool:
    """Whether a step takes stored answers: as :func:`stores_answers`, and not when the user asked every row again
    (``--full-refresh``, ``when: always``)."""
    return stores_answers(spec, own_pass=own_pass) and not full_refresh and spec.refresh.when != "always"
