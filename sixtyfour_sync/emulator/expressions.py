"""Value expressions of the emulator's generator, each evaluated two ways with identical results.

:meth:`Expr.vec` works vectorised over Arrow arrays (it builds output files); :meth:`Expr.py` works on one
row in plain Python (the reference tests use to predict outputs). Both read the same hashes
(:mod:`.hashing`), so they agree value for value.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from sixtyfour_sync.emulator.hashing import U64, salted, salted_vec

__all__ = [
    "Choose",
    "Coalesce",
    "Concat",
    "Domain",
    "Expr",
    "Input",
    "JsonStr",
    "Lit",
    "Num",
    "Pad",
    "Pick",
    "RowCtx",
    "Slug",
    "VecCtx",
    "slug_text",
    "slug_vec",
]

_ASCII_LOWER = {c: c + 32 for c in range(ord("A"), ord("Z") + 1)}
_HOST_PREFIX = r"^([a-z][a-z0-9+.-]*://)?(www\.)?"
_AFTER_HOST = r"[/?#:][\s\S]*"
_ASCII_WS = " \t\n\v\f\r"


def slug_text(text: str, sep: str) -> str:
    out = re.sub(r"[^a-z0-9]+", sep, _ascii_lower(text))
    return out.strip(sep) if sep else out


# --------------------------------------------------------------------------- evaluation contexts


class VecCtx:
    """Vectorised evaluation context: one field's hash per row plus the input columns."""

    def __init__(self, n: int, field_hash: U64, inputs: Mapping[str, pa.Array], memo: dict[str, pa.Array]) -> None:
        self.n = n
        self.field_hash = field_hash
        self.inputs = inputs
        # Results of hash-independent expressions (cleaned input columns), shared by all fields.
        self.memo = memo
        self._hashes: dict[int, U64] = {}

    def hash(self, salt: int) -> U64:
        """The per-row hash for one salt (cached: several nodes may share a salt)."""
        if salt not in self._hashes:
            self._hashes[salt] = salted_vec(self.field_hash, salt)
        return self._hashes[salt]


@dataclass
class RowCtx:
    """Per-row evaluation context (the pure-Python reference)."""

    field_hash: int
    inputs: Mapping[str, str | None]


def _present_vec(arr: pa.Array) -> pa.Array:
    mask = pc.and_kleene(pc.is_valid(arr), pc.greater(pc.utf8_length(arr), 0))
    return pc.fill_null(mask, False)


def _ascii_lower(text: str) -> str:
    return text.translate(_ASCII_LOWER)


def slug_vec(arr: pa.Array, sep: str) -> pa.Array:
    """Vectorised ``re.sub("[^a-z0-9]+", sep, ascii_lower(s)).strip(sep)`` over UTF-8 bytes.

    Works on the Arrow buffers with numpy: a non-ASCII character is a run of bytes outside
    [a-z0-9], so byte runs and character runs are replaced alike.
    """
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks()
    arr = arr.cast(pa.string())
    n = len(arr)
    if n == 0:
        return arr
    buffers = arr.buffers()
    offsets = np.frombuffer(buffers[1], dtype=np.int32)[arr.offset : arr.offset + n + 1].astype(np.int64)
    first, last = int(offsets[0]), int(offsets[-1])
    lengths = np.diff(offsets)
    if last == first or buffers[2] is None:
        data = np.zeros(0, dtype=np.uint8)
    else:
        data = np.frombuffer(buffers[2], dtype=np.uint8)[first:last].copy()
    upper = (data >= 65) & (data <= 90)
    data[upper] += 32
    ok = ((data >= 97) & (data <= 122)) | ((data >= 48) & (data <= 57))
    if sep:
        starts = np.repeat(offsets[:-1] - first, lengths)
        ends = np.repeat(offsets[1:] - first, lengths)
        pos = np.arange(len(data))
        prev_ok = np.zeros(len(data), dtype=bool)
        prev_ok[1:] = ok[:-1]
        prev_ok &= pos > starts
        ok_cum = np.cumsum(ok)
        ok_after: np.ndarray[Any, Any] = ok_cum[np.maximum(ends - 1, 0)] - ok_cum
        # A separator stands for a run of other bytes between two kept parts of the same string.
        keep_sep = ~ok & prev_ok & (ok_after > 0)
        keep = ok | keep_sep
        data = np.where(keep_sep, np.uint8(ord(sep)), data)
    else:
        keep = ok
    kept = data[keep]
    owner_kept = np.repeat(np.arange(n), lengths)[keep]
    new_lengths = np.bincount(owner_kept, minlength=n)
    new_offsets = np.zeros(n + 1, dtype=np.int32)
    np.cumsum(new_lengths, out=new_offsets[1:])
    out = pa.StringArray.from_buffers(n, pa.py_buffer(new_offsets), pa.py_buffer(kept.tobytes()))
    if arr.null_count:
        out = pc.if_else(arr.is_valid(), out, pa.scalar(None, pa.string()))
    return out


# --------------------------------------------------------------------------- expressions


class Expr:
    """A value expression evaluated both vectorised and per row, with identical results."""

    def vec(self, ctx: VecCtx) -> pa.Array:
        """The values of every row, as an Arrow string array (NULL where absent)."""
        raise NotImplementedError

    def is_pure(self) -> bool:
        """True when the value depends on the input columns only, not on any hash."""
        return False

    def cached(self, ctx: VecCtx, compute: Callable[[], pa.Array]) -> pa.Array:
        """``compute()``, computed once per output when the expression is pure."""
        if not self.is_pure():
            return compute()
        key = repr(self)
        if key not in ctx.memo:
            ctx.memo[key] = compute()
        return ctx.memo[key]

    def py(self, ctx: RowCtx) -> str | None:
        """The value of one row (None where absent)."""
        raise NotImplementedError


@dataclass
class Lit(Expr):
    """A constant text."""

    text: str

    def vec(self, ctx: VecCtx) -> pa.Array:
        return pa.repeat(pa.scalar(self.text, pa.string()), ctx.n)

    def py(self, ctx: RowCtx) -> str | None:
        return self.text


@dataclass
class Input(Expr):
    """An uploaded column by role (first name, domain...); absent when the file has none."""

    role: str

    def vec(self, ctx: VecCtx) -> pa.Array:
        arr = ctx.inputs.get(self.role)
        return arr if arr is not None else pa.nulls(ctx.n, pa.string())

    def py(self, ctx: RowCtx) -> str | None:
        return ctx.inputs.get(self.role)

    def is_pure(self) -> bool:
        return True


@dataclass
class Pick(Expr):
    """One entry of a vocabulary, chosen by the hash."""

    vocab: Sequence[str]
    salt: int

    def vec(self, ctx: VecCtx) -> pa.Array:
        idx = (ctx.hash(self.salt) % np.uint64(len(self.vocab))).astype(np.int64)
        return pa.array(list(self.vocab), pa.string()).take(pa.array(idx))

    def py(self, ctx: RowCtx) -> str | None:
        return self.vocab[salted(ctx.field_hash, self.salt) % len(self.vocab)]


@dataclass
class Num(Expr):
    """An integer in ``[lo, hi]`` chosen by the hash (text where used as a string)."""

    lo: int
    hi: int
    salt: int

    def ints(self, ctx: VecCtx) -> np.ndarray[Any, np.dtype[np.int64]]:
        """The numbers of every row."""
        span = np.uint64(self.hi - self.lo + 1)
        out: np.ndarray[Any, np.dtype[np.int64]] = (ctx.hash(self.salt) % span).astype(np.int64)
        out += np.int64(self.lo)
        return out

    def int_py(self, ctx: RowCtx) -> int:
        """The number of one row."""
        return self.lo + salted(ctx.field_hash, self.salt) % (self.hi - self.lo + 1)

    def vec(self, ctx: VecCtx) -> pa.Array:
        return pc.cast(pa.array(self.ints(ctx)), pa.string())

    def py(self, ctx: RowCtx) -> str | None:
        return str(self.int_py(ctx))


@dataclass
class Pad(Expr):
    """Left-padded with zeros to ``width`` characters."""

    inner: Expr
    width: int

    def vec(self, ctx: VecCtx) -> pa.Array:
        return pc.utf8_lpad(self.inner.vec(ctx), width=self.width, padding="0")

    def py(self, ctx: RowCtx) -> str | None:
        value = self.inner.py(ctx)
        return None if value is None else value.rjust(self.width, "0")


@dataclass
class Slug(Expr):
    """ASCII-lower-cased, runs of anything but [a-z0-9] replaced by ``sep``, trimmed of ``sep``."""

    inner: Expr
    sep: str = "-"

    def is_pure(self) -> bool:
        return self.inner.is_pure()

    def vec(self, ctx: VecCtx) -> pa.Array:
        return self.cached(ctx, lambda: self._vec(ctx))

    def _vec(self, ctx: VecCtx) -> pa.Array:
        return slug_vec(self.inner.vec(ctx), self.sep)

    def py(self, ctx: RowCtx) -> str | None:
        value = self.inner.py(ctx)
        return None if value is None else slug_text(value, self.sep)


@dataclass
class Domain(Expr):
    """The bare host of a domain/website value: no scheme, ``www.``, path, port or blanks."""

    inner: Expr

    _STEPS = (_HOST_PREFIX, _AFTER_HOST)

    def is_pure(self) -> bool:
        return self.inner.is_pure()

    def vec(self, ctx: VecCtx) -> pa.Array:
        return self.cached(ctx, lambda: self._vec(ctx))

    def _vec(self, ctx: VecCtx) -> pa.Array:
        out = pc.ascii_trim_whitespace(pc.ascii_lower(self.inner.vec(ctx)))
        for pattern in self._STEPS:
            out = pc.replace_substring_regex(out, pattern, "")
        return out

    def py(self, ctx: RowCtx) -> str | None:
        value = self.inner.py(ctx)
        if value is None:
            return None
        out = _ascii_lower(value).strip(_ASCII_WS)
        for pattern in self._STEPS:
            out = re.sub(pattern, "", out)
        return out


@dataclass
class Concat(Expr):
    """Concatenation; NULL when any part is NULL."""

    parts: Sequence[Expr]

    def vec(self, ctx: VecCtx) -> pa.Array:
        arrays = [p.text if isinstance(p, Lit) else p.vec(ctx) for p in self.parts]
        if all(isinstance(a, str) for a in arrays):
            return Lit("".join(str(a) for a in arrays)).vec(ctx)
        return pc.binary_join_element_wise(*arrays, "")

    def py(self, ctx: RowCtx) -> str | None:
        values = [p.py(ctx) for p in self.parts]
        if any(v is None for v in values):
            return None
        return "".join(v for v in values if v is not None)


@dataclass
class Coalesce(Expr):
    """The first part that is neither NULL nor empty (the last part is the fallback)."""

    parts: Sequence[Expr]

    def vec(self, ctx: VecCtx) -> pa.Array:
        out = self.parts[-1].vec(ctx)
        for part in reversed(self.parts[:-1]):
            arr = part.vec(ctx)
            out = pc.if_else(_present_vec(arr), arr, out)
        return out

    def py(self, ctx: RowCtx) -> str | None:
        value: str | None = None
        for part in self.parts:
            value = part.py(ctx)
            if value:
                return value
        return value


@dataclass
class Choose(Expr):
    """One of several options, picked by a number in ``[index.lo, index.hi]``."""

    index: Num
    options: Sequence[Expr]

    def vec(self, ctx: VecCtx) -> pa.Array:
        idx = pa.array(self.index.ints(ctx) - np.int64(self.index.lo))
        return pc.choose(idx, *[o.vec(ctx) for o in self.options])

    def py(self, ctx: RowCtx) -> str | None:
        return self.options[self.index.int_py(ctx) - self.index.lo].py(ctx)


#: JSON string escapes, applied in this order by both evaluations; other control characters are dropped.
_JSON_ESCAPES = (("\\", "\\\\"), ('"', '\\"'), ("\n", "\\n"), ("\r", "\\r"), ("\t", "\\t"))
_CONTROL = r"[\x00-\x1f]"


@dataclass
class JsonStr(Expr):
    """The inner text as a JSON string literal (quoted and escaped); ``null`` where the inner value is absent."""

    inner: Expr

    def vec(self, ctx: VecCtx) -> pa.Array:
        raw = self.inner.vec(ctx)
        out = raw
        for old, new in _JSON_ESCAPES:
            out = pc.replace_substring(out, old, new)
        out = pc.replace_substring_regex(out, _CONTROL, "")
        quoted = pc.binary_join_element_wise('"', out, '"', "")
        return pc.if_else(pc.is_null(raw), pa.scalar("null", pa.string()), quoted)

    def py(self, ctx: RowCtx) -> str | None:
        value = self.inner.py(ctx)
        if value is None:
            return "null"
        for old, new in _JSON_ESCAPES:
            value = value.replace(old, new)
        return '"' + re.sub(_CONTROL, "", value) + '"'
