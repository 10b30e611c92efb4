"""The emulator's enrichment: deterministic, plausible output values computed from the input rows.

Each struct field is described by a small expression tree (pick from a vocabulary, a number in
a range, an input column, concatenation, slug...). Every node evaluates two ways: vectorised over
Arrow arrays (:meth:`Expr.vec`, used to build output files) and per row in plain Python
(:meth:`Expr.py`, used by :func:`reference_output` so tests can predict outputs). Both read the
same hashes (:mod:`.hashing`), so they agree value for value.

Values depend only on the feeding input values (``columns``, or every uploaded column), the field
name and type, the endpoint and the seed. A deterministic share of rows (``failure_rate``) fails:
their struct and confidence values are empty.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from sixtyfour_sync.emulator.answers import (
    AnswerErrors,
    alter_py,
    choose_wrong_vec,
    confidence_num,
    wrong_mask_py,
    wrong_mask_vec,
    wrong_row_hash,
    wrong_row_hashes,
)
from sixtyfour_sync.emulator.expressions import Num, RowCtx, VecCtx
from sixtyfour_sync.emulator.fields import FieldSpec, build_spec, resolve_roles
from sixtyfour_sync.emulator.hashing import combine, combine_vec, hash_str, row_hash, row_hashes, salted, salted_vec

__all__ = [
    "DEFAULT_PEOPLE_STRUCT",
    "SUBFIELD_TYPES",
    "TYPE_ALIASES",
    "OutputPlan",
    "StructRequest",
    "canonical_text",
    "generate_output",
    "generate_table",
    "make_plan",
    "normalise_type",
    "parse_struct",
    "reference_output",
]

DEFAULT_PEOPLE_STRUCT: dict[str, Any] = {
    "email": "The individual's email address",
    "linkedin": "LinkedIn URL for the person",
    "title": "The individual's job title",
}

TYPE_ALIASES = {
    "str": "str",
    "string": "str",
    "int": "int",
    "integer": "int",
    "float": "float",
    "bool": "bool",
    "boolean": "bool",
    "list": "list[str]",
    "list[str]": "list[str]",
    "list[int]": "list[int]",
    "list[float]": "list[float]",
    "list[bool]": "list[bool]",
    "list[boolean]": "list[bool]",
    "dict": "dict",
    "enum": "enum",
    "list[enum]": "list[enum]",
    "object": "object",
    "object_list": "object_list",
}
#: A subfield's type, as the schema's ``StructField`` names them.
SUBFIELD_TYPES = {"string": "str", "int": "int", "float": "float", "bool": "bool", "dict": "dict"}
#: Generated as JSON text that a preview row (and the reference) holds parsed: the lists and objects (a
#: ``dict`` comes back as a JSON string to parse, as the API documents).
_PARSED_KINDS = ("object", "object_list")

_FAIL_SALT = 0xFA11


def normalise_type(name: str | None) -> str:
    """The canonical struct type (``str``, ``int``, ``float``, ``bool``, ``list[...]``, ``dict``, ``enum``,
    ``list[enum]``, ``object``, ``object_list``)."""
    if name is None:
        return "str"
    return TYPE_ALIASES[name.strip().lower()]


@dataclass(frozen=True)
class StructRequest:
    """One requested struct field, as the server reads it from a validated config."""

    name: str
    type: str
    description: str = ""
    #: (name, canonical type) of each subfield of an object or object_list.
    subfields: tuple[tuple[str, str], ...] = ()


def parse_struct(struct: Mapping[str, Any] | None, endpoint: str) -> list[StructRequest]:
    """The fields of a validated struct; people without a struct get defaults."""
    if not struct:
        struct = DEFAULT_PEOPLE_STRUCT if endpoint == "people" else {}
    fields: list[StructRequest] = []
    for name, value in struct.items():
        if not isinstance(value, Mapping):
            fields.append(StructRequest(name, "str", str(value)))
            continue
        subs = tuple(
            (str(s["name"]), SUBFIELD_TYPES[str(s.get("type") or "string").strip().lower()])
            for s in value.get("subfields") or ()
        )
        fields.append(StructRequest(name, normalise_type(value.get("type")), str(value.get("description", "")), subs))
    return fields


def canonical_text(value: Any) -> str | None:
    """The text form of an input value, as the server sees it (JSON scalars and nested values)."""
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


# --------------------------------------------------------------------------- table generation


@dataclass
class OutputPlan:
    """What an output holds: passthrough columns, struct specs, feeding columns and roles."""

    passthrough: list[str]
    specs: list[FieldSpec]
    feed: list[str]
    roles: dict[str, str]
    field_confidence: bool

    @property
    def enriched_columns(self) -> list[str]:
        """The struct columns, then their confidence columns when requested."""
        names = [s.name for s in self.specs]
        if self.field_confidence:
            names += [f"{s.name}_confidence" for s in self.specs]
        return names


def make_plan(
    input_columns: Sequence[str],
    struct: Mapping[str, Any] | None,
    *,
    endpoint: str,
    field_confidence: bool,
    columns: Sequence[str] | None,
    carried: Collection[str] | None = None,
) -> OutputPlan:
    """Decide the output layout for an upload with these columns and this config.

    ``carried`` None returns every uploaded column; otherwise only the feeding columns and, of the
    carried ones (uploaded but not in ``columns``), those named in it.
    """
    specs = [
        build_spec(f.name, f.type, endpoint, description=f.description, subfields=f.subfields)
        for f in parse_struct(struct, endpoint)
    ]
    feed = list(columns) if columns else list(input_columns)
    plan = OutputPlan([], specs, feed, resolve_roles(feed, endpoint), field_confidence)
    owned = set(plan.enriched_columns)
    kept = None if carried is None else {*feed, *carried}
    # An uploaded column named like an enriched one is replaced by it (see docs/emulator.md).
    plan.passthrough = [c for c in input_columns if c not in owned and (kept is None or c in kept)]
    return plan


def _failure_threshold(failure_rate: float) -> int:
    return int(max(0.0, min(1.0, failure_rate)) * (1 << 53))


def generate_output(
    table: pa.Table,
    struct: Mapping[str, Any] | None,
    *,
    endpoint: str,
    field_confidence: bool,
    columns: Sequence[str] | None,
    seed: int,
    failure_rate: float,
    carried: Collection[str] | None = None,
    errors: AnswerErrors | None = None,
) -> tuple[pa.Table, int]:
    """The enriched table for an input table of string columns, and how many rows failed."""
    plan = make_plan(
        table.column_names,
        struct,
        endpoint=endpoint,
        field_confidence=field_confidence,
        columns=columns,
        carried=carried,
    )
    return generate_table(plan, table, seed=seed, failure_rate=failure_rate, errors=errors)


def generate_table(
    plan: OutputPlan, table: pa.Table, *, seed: int, failure_rate: float, errors: AnswerErrors | None = None
) -> tuple[pa.Table, int]:
    """The enriched table for ``table`` (string columns) under ``plan``, and how many rows failed.

    Each row's values depend on that row alone, so a file may be generated a slice at a time.
    """
    n = table.num_rows
    field_confidence = plan.field_confidence
    feed_cols = [table.column(c) for c in plan.feed]
    rows = row_hashes(feed_cols, plan.feed, seed, n)
    failed_np = (salted_vec(rows, _FAIL_SALT) >> np.uint64(11)) < np.uint64(_failure_threshold(failure_rate))
    failed = pa.array(failed_np)
    inputs: dict[str, pa.Array] = {}
    for role, col in plan.roles.items():
        chunked = table.column(col)
        inputs[role] = chunked.combine_chunks() if isinstance(chunked, pa.ChunkedArray) else chunked

    out_names: list[str] = list(plan.passthrough)
    out_arrays: list[pa.Array | pa.ChunkedArray] = [table.column(c) for c in plan.passthrough]
    confidences: list[tuple[str, pa.Array]] = []
    memo: dict[str, pa.Array] = {}
    truth_rows = None if errors is None else row_hashes(feed_cols, plan.feed, errors.truth_seed, n)
    for spec in plan.specs:
        name_hash = np.uint64(hash_str(spec.name))
        ctx = VecCtx(n, combine_vec(rows, name_hash), inputs, memo)
        if errors is None or truth_rows is None:
            values, conf_ints = _typed_vec(spec, ctx), None
        else:
            values, conf_ints = _answer_vec(spec, ctx, truth_rows, name_hash, errors)
        out_names.append(spec.name)
        out_arrays.append(pc.if_else(failed, pa.scalar(None, values.type), values))
        if field_confidence:
            conf = pa.array(spec.confidence.ints(ctx) if conf_ints is None else conf_ints)
            confidences.append((f"{spec.name}_confidence", pc.if_else(failed, pa.scalar(None, pa.int64()), conf)))
    for name, arr in confidences:
        out_names.append(name)
        out_arrays.append(arr)
    return pa.table(out_arrays, names=out_names), int(failed_np.sum())


def _answer_vec(
    spec: FieldSpec, ctx: VecCtx, truth_rows: np.ndarray[Any, Any], name_hash: np.uint64, errors: AnswerErrors
) -> tuple[pa.Array, np.ndarray[Any, np.dtype[np.int64]]]:
    """One field's answers under ``errors``: the truth, a wrong value where the tier errs; their confidences."""

    def at(hashes: np.ndarray[Any, Any]) -> pa.Array:
        return _typed_vec(spec, VecCtx(ctx.n, combine_vec(hashes, name_hash), ctx.inputs, ctx.memo))

    truth = at(truth_rows)
    wrong = wrong_mask_vec(ctx.field_hash, errors)
    right_conf = confidence_num(spec.confidence, False).ints(ctx)
    wrong_conf = confidence_num(spec.confidence, True).ints(ctx)
    confidences: np.ndarray[Any, np.dtype[np.int64]] = np.where(wrong, wrong_conf, right_conf)
    if not wrong.any():
        return truth, confidences
    draws = [functools.partial(lambda k: at(wrong_row_hashes(truth_rows, errors, k)), k) for k in (0, 1)]
    return pc.if_else(pa.array(wrong), choose_wrong_vec(spec.kind, truth, draws), truth), confidences


def _typed_vec(spec: FieldSpec, ctx: VecCtx) -> pa.Array:
    if spec.kind in ("int", "float", "bool"):
        assert isinstance(spec.expr, Num)
        ints = spec.expr.ints(ctx)
        if spec.kind == "int":
            return pa.array(ints)
        if spec.kind == "float":
            return pa.array(ints / 100.0)
        return pa.array(ints == 1)
    return spec.expr.vec(ctx)


def _raw_py(spec: FieldSpec, ctx: RowCtx) -> Any:
    """One row's value as the vectorised form holds it: a number or a bool, else the text."""
    if spec.kind in ("int", "float", "bool"):
        assert isinstance(spec.expr, Num)
        value = spec.expr.int_py(ctx)
        if spec.kind == "int":
            return value
        if spec.kind == "float":
            return value / 100.0
        return value == 1
    return spec.expr.py(ctx)


def _parsed_py(spec: FieldSpec, raw: Any) -> Any:
    if (spec.kind.startswith("list") or spec.kind in _PARSED_KINDS) and raw is not None:
        return json.loads(raw)
    return raw


def _typed_py(spec: FieldSpec, ctx: RowCtx) -> Any:
    return _parsed_py(spec, _raw_py(spec, ctx))


def _answer_py(spec: FieldSpec, ctx: RowCtx, truth_row: int, name_hash: int, errors: AnswerErrors) -> tuple[Any, int]:
    """Scalar :func:`_answer_vec` for one row: the answer and its confidence."""
    truth = _raw_py(spec, RowCtx(combine(truth_row, name_hash), ctx.inputs))
    wrong = wrong_mask_py(ctx.field_hash, errors)
    confidence = confidence_num(spec.confidence, wrong).int_py(ctx)
    if not wrong:
        return _parsed_py(spec, truth), confidence
    for attempt in (0, 1):
        drawn = _raw_py(spec, RowCtx(combine(wrong_row_hash(truth_row, errors, attempt), name_hash), ctx.inputs))
        if drawn != truth:
            return _parsed_py(spec, drawn), confidence
    return _parsed_py(spec, alter_py(spec.kind, truth)), confidence


def preview_value(kind: str, value: Any) -> Any:
    """A generated cell as it appears in an inline preview row (list and object JSON text is parsed)."""
    if (kind.startswith("list") or kind in _PARSED_KINDS) and isinstance(value, str):
        return json.loads(value)
    return value


def reference_output(
    struct: Mapping[str, Any] | None,
    rows: Iterable[Mapping[str, Any]],
    *,
    endpoint: str,
    field_confidence: bool,
    columns: Sequence[str] | None,
    seed: int,
    failure_rate: float,
    carried: Collection[str] | None = None,
    errors: AnswerErrors | None = None,
) -> list[dict[str, Any]]:
    """Pure-Python reference of :func:`generate_output`, row by row (for tests, small inputs)."""
    rows = list(rows)
    input_columns: dict[str, None] = {}
    for row in rows:
        for key in row:
            input_columns.setdefault(key, None)
    plan = make_plan(
        list(input_columns),
        struct,
        endpoint=endpoint,
        field_confidence=field_confidence,
        columns=columns,
        carried=carried,
    )
    threshold = _failure_threshold(failure_rate)
    out: list[dict[str, Any]] = []
    for row in rows:
        texts = {c: canonical_text(row.get(c)) for c in input_columns}
        feed_values = [texts[c] for c in plan.feed]
        rh = row_hash(feed_values, plan.feed, seed)
        truth_row = None if errors is None else row_hash(feed_values, plan.feed, errors.truth_seed)
        failed = (salted(rh, _FAIL_SALT) >> 11) < threshold
        result: dict[str, Any] = {c: row.get(c) for c in plan.passthrough}
        role_values = {role: texts[col] for role, col in plan.roles.items()}
        confidences: dict[str, Any] = {}
        for spec in plan.specs:
            name_hash = hash_str(spec.name)
            ctx = RowCtx(combine(rh, name_hash), role_values)
            if errors is None or truth_row is None:
                value, confidence = _typed_py(spec, ctx), spec.confidence.int_py(ctx)
            else:
                value, confidence = _answer_py(spec, ctx, truth_row, name_hash, errors)
            result[spec.name] = None if failed else value
            if field_confidence:
                confidences[f"{spec.name}_confidence"] = None if failed else confidence
        result.update(confidences)
        out.append(result)
    return out
