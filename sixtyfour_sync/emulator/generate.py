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

import json
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from sixtyfour_sync.emulator.hashing import (
    U64,
    combine,
    combine_vec,
    hash_str,
    row_hash,
    row_hashes,
    salted,
    salted_vec,
)

__all__ = [
    "DEFAULT_PEOPLE_STRUCT",
    "TYPE_ALIASES",
    "FieldSpec",
    "canonical_text",
    "generate_output",
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
}

_FAIL_SALT = 0xFA11
_CONF_SALT = 0xC0DE
_ASCII_LOWER = {c: c + 32 for c in range(ord("A"), ord("Z") + 1)}
_HOST_PREFIX = r"^([a-z][a-z0-9+.-]*://)?(www\.)?"
_AFTER_HOST = r"[/?#:][\s\S]*"
_ASCII_WS = " \t\n\v\f\r"


def normalise_type(name: str | None) -> str:
    """The canonical struct type (``str``, ``int``, ``float``, ``bool``, ``list[...]``, ``dict``)."""
    if name is None:
        return "str"
    return TYPE_ALIASES[name.strip().lower()]


def parse_struct(struct: Mapping[str, Any] | None, endpoint: str) -> list[tuple[str, str]]:
    """(field name, canonical type) pairs of a validated struct; people without a struct get defaults."""
    if not struct:
        struct = DEFAULT_PEOPLE_STRUCT if endpoint == "people" else {}
    fields: list[tuple[str, str]] = []
    for name, value in struct.items():
        typename = value.get("type") if isinstance(value, Mapping) else None
        fields.append((name, normalise_type(typename)))
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
        return None if value is None else _slug_text(value, self.sep)


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


# --------------------------------------------------------------------------- vocabularies

_FIRST = ("Ada", "Grace", "Alan", "Linus", "Margaret", "Dennis", "Barbara", "Ken", "Frances", "Guido")
_LAST = ("Lovelace", "Hopper", "Turing", "Torvalds", "Hamilton", "Ritchie", "Liskov", "Thompson", "Allen")
_CO_A = ("Acme", "Globex", "Initech", "Umbrella", "Stark", "Wayne", "Hooli", "Pied Piper", "Vandelay")
_CO_B = ("Labs", "Systems", "Analytics", "Industries", "Software", "Holdings", "Networks", "Health")
_TITLES = (
    "Head of Data",
    "VP of Engineering",
    "Chief Executive Officer",
    "Senior Data Engineer",
    "Director of Marketing",
    "Account Executive",
    "Product Manager",
    "Head of Growth",
    "Analytics Engineer",
    "Chief Revenue Officer",
)
_INDUSTRIES = (
    "Software",
    "Financial Services",
    "Healthcare",
    "Retail",
    "Manufacturing",
    "Logistics",
    "Education",
    "Media & Entertainment",
    "Biotechnology",
    "Real Estate",
)
_STREETS = ("Main St", "Market St", "Elm Street", "Oak Avenue", "Mission Blvd", "King's Road", "Pine Ct")
_CITY_LINES = (
    "San Francisco, CA 94105",
    "New York, NY 10001",
    "Austin, TX 78701",
    "Seattle, WA 98101",
    "Boston, MA 02110",
    "London EC1A 1BB",
    "Berlin 10115",
)
_CITIES = ("San Francisco", "New York", "Austin", "Seattle", "Boston", "London", "Berlin", "Toronto")
_STATES = ("CA", "NY", "TX", "WA", "MA", "IL", "CO", "GA")
_COUNTRIES = ("United States", "United Kingdom", "Germany", "Canada", "France", "Australia", "India")
_SUMMARY_A = (
    "leads a team focused on data infrastructure.",
    'is known internally as the "go-to" person for analytics.',
    "recently expanded into new markets, including EMEA and APAC.",
    "builds tools for modern data teams.",
)
_SUMMARY_B = (
    "Previously worked in consulting.",
    "Active speaker at industry events, podcasts, and meetups.",
    "Focus areas: pipelines, governance; quality.",
    "Hiring across engineering and sales.",
)
_SKILLS = ("python", "sql", "dbt", "snowflake", "leadership", "sales", "marketing", "kubernetes", "spark")
_SOURCES = ("website", "linkedin", "news", "registry", "crm")
_EMAIL_BOXES = ("info", "sales", "hello", "contact", "team")
_GENERIC = (
    "Not publicly listed",
    "Yes, confirmed via company website",
    'Described as "fast-growing" in recent press',
    "See notes:\nverified by two independent sources",
    "Unknown",
    "Mixed signals; needs review",
    "Multiple matches found, best match used",
    "Confirmed",
)

_ROLES: dict[str, tuple[str, ...]] = {
    "first": ("first_name", "firstname", "first", "given_name", "fname"),
    "last": ("last_name", "lastname", "last", "surname", "family_name", "lname"),
    "full": ("full_name", "fullname", "name", "person_name", "contact_name"),
    "company": ("company", "company_name", "companyname", "organization", "organisation", "employer", "account"),
    "domain": ("domain", "company_domain", "website", "company_website", "url", "homepage", "email_domain"),
}


def _norm(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", name.lower()).strip("_")


def resolve_roles(feed_columns: Sequence[str], endpoint: str) -> dict[str, str]:
    """Map each input role (first, last, full, company, domain) to a feeding column, when present."""
    by_norm: dict[str, str] = {}
    for col in feed_columns:
        by_norm.setdefault(_norm(col), col)
    roles: dict[str, str] = {}
    for role, candidates in _ROLES.items():
        if endpoint == "company" and role == "full":
            continue
        extra = ("name",) if endpoint == "company" and role == "company" else ()
        for cand in (*candidates, *extra):
            if cand in by_norm:
                roles[role] = by_norm[cand]
                break
    return roles


# --------------------------------------------------------------------------- field specs


@dataclass
class FieldSpec:
    """How one struct field is generated: its kind and expression, plus its confidence."""

    name: str
    kind: str  # str | int | float | bool | list[...] | dict
    expr: Expr
    confidence: Num = field(default_factory=lambda: Num(35, 99, _CONF_SALT))


class _Salts:
    def __init__(self) -> None:
        self._next = 1

    def __call__(self) -> int:
        self._next += 1
        return self._next


def _json_list(item: Callable[[], Expr], quoted: bool, salt: _Salts) -> Expr:
    items = [item() for _ in range(3)]
    if quoted:
        items = [Concat([Lit('"'), i, Lit('"')]) for i in items]
    options: list[Expr] = []
    for k in range(1, 4):
        parts: list[Expr] = [Lit("[")]
        for j, it in enumerate(items[:k]):
            if j:
                parts.append(Lit(", "))
            parts.append(it)
        parts.append(Lit("]"))
        options.append(Concat(parts))
    return Choose(Num(1, 3, salt()), options)


def _float_text(salt: _Salts, hi_units: int) -> Expr:
    return Concat([Num(0, hi_units, salt()), Lit("."), Pad(Num(0, 99, salt()), 2)])


def _slug_text(text: str, sep: str) -> str:
    out = re.sub(r"[^a-z0-9]+", sep, _ascii_lower(text))
    return out.strip(sep) if sep else out


def _slugs(vocab: Sequence[str], sep: str) -> tuple[str, ...]:
    return tuple(_slug_text(v, sep) for v in vocab)


def _string_expr(norm: str, endpoint: str, salt: _Salts) -> tuple[Expr, bool]:
    """The string expression for a field name, and whether the name is numeric by nature."""
    # Each name part is picked with one salt, so its plain and slug forms agree within a field.
    s_first, s_last, s_co_a, s_co_b = salt(), salt(), salt(), salt()
    first = Coalesce([Input("first"), Pick(_FIRST, s_first)])
    last = Coalesce([Input("last"), Pick(_LAST, s_last)])
    full = Coalesce([Input("full"), Concat([first, Lit(" "), last])])
    company = Coalesce([Input("company"), Concat([Pick(_CO_A, s_co_a), Lit(" "), Pick(_CO_B, s_co_b)])])

    def first_slug(sep: str) -> Expr:
        return Coalesce([Slug(Input("first"), sep), Pick(_slugs(_FIRST, sep), s_first)])

    def last_slug(sep: str) -> Expr:
        return Coalesce([Slug(Input("last"), sep), Pick(_slugs(_LAST, sep), s_last)])

    def company_slug(sep: str) -> Expr:
        made = Concat([Pick(_slugs(_CO_A, sep), s_co_a), Lit(sep), Pick(_slugs(_CO_B, sep), s_co_b)])
        return Coalesce([Slug(Input("company"), sep), made])

    domain = Coalesce([Domain(Input("domain")), Concat([company_slug(""), Lit(".com")])])
    person = endpoint == "people"

    def has(*words: str) -> bool:
        return any(w in norm for w in words)

    if has("email"):
        if person:
            return Concat([first_slug(""), Lit("."), last_slug(""), Lit("@"), domain]), False
        return Concat([Pick(_EMAIL_BOXES, salt()), Lit("@"), domain]), False
    if has("linkedin"):
        if person:
            slug = Concat([first_slug("-"), Lit("-"), last_slug("-"), Lit("-"), Num(100, 999, salt())])
            return Concat([Lit("https://www.linkedin.com/in/"), slug]), False
        return Concat([Lit("https://www.linkedin.com/company/"), company_slug("-")]), False
    if has("twitter") or norm == "x":
        who = Concat([first_slug(""), last_slug("")]) if person else company_slug("")
        return Concat([Lit("https://x.com/"), who]), False
    if has("phone", "mobile"):
        return Concat([Lit("+1 "), Num(201, 989, salt()), Lit("-555-"), Pad(Num(0, 9999, salt()), 4)]), False
    if has("website", "homepage") or norm.endswith("url"):
        return Concat([Lit("https://www."), domain]), False
    if has("domain"):
        return domain, False
    if has("title", "role", "position", "job", "seniority"):
        return Pick(_TITLES, salt()), False
    if has("industry", "sector"):
        return Pick(_INDUSTRIES, salt()), False
    if has("employee", "headcount", "staff", "company_size"):
        return Num(1, 50_000, salt()), True
    if has("revenue", "arr"):
        return Num(100_000, 500_000_000, salt()), True
    if has("founded", "year"):
        return Num(1950, 2024, salt()), True
    if has("address", "headquarters") or norm == "hq":
        street = Concat([Num(1, 9999, salt()), Lit(" "), Pick(_STREETS, salt())])
        return Concat([street, Lit("\n"), Pick(_CITY_LINES, salt())]), False
    if has("city"):
        return Pick(_CITIES, salt()), False
    if has("state", "region"):
        return Pick(_STATES, salt()), False
    if has("country"):
        return Pick(_COUNTRIES, salt()), False
    if has("location"):
        return Concat([Pick(_CITIES, salt()), Lit(", "), Pick(_COUNTRIES, salt())]), False
    if has("summary", "description", "bio", "about", "overview", "notes"):
        who = full if person else company
        return Concat([who, Lit(" "), Pick(_SUMMARY_A, salt()), Lit("\n"), Pick(_SUMMARY_B, salt())]), False
    if has("first_name", "firstname"):
        return first, False
    if has("last_name", "lastname", "surname"):
        return last, False
    if has("company", "employer", "organization", "organisation"):
        return company, False
    if has("name"):
        return (full if person else company), False
    if has("skill", "tag", "technolog", "keyword"):
        return Concat([Pick(_SKILLS, salt()), Lit(", "), Pick(_SKILLS, salt())]), False
    return Pick(_GENERIC, salt()), False


def build_spec(name: str, typename: str, endpoint: str) -> FieldSpec:
    """The generation spec of one struct field, from its name, canonical type and the endpoint."""
    salt = _Salts()
    norm = _norm(name)
    expr, numeric = _string_expr(norm, endpoint, salt)
    if typename == "str":
        return FieldSpec(name, "str", expr)
    if typename == "int":
        return FieldSpec(name, "int", expr if numeric and isinstance(expr, Num) else Num(0, 9_999, salt()))
    if typename == "float":
        return FieldSpec(name, "float", Num(0, 10_000_000, salt()))
    if typename == "bool":
        return FieldSpec(name, "bool", Num(0, 1, salt()))
    if typename == "list[str]":
        vocab = _INDUSTRIES if "industr" in norm else _TITLES if "title" in norm else _SKILLS
        return FieldSpec(name, typename, _json_list(lambda: Pick(vocab, salt()), True, salt))
    if typename == "list[int]":
        return FieldSpec(name, typename, _json_list(lambda: Num(0, 999, salt()), False, salt))
    if typename == "list[float]":
        return FieldSpec(name, typename, _json_list(lambda: _float_text(salt, 999), False, salt))
    if typename == "list[bool]":
        return FieldSpec(name, typename, _json_list(lambda: Pick(("true", "false"), salt()), False, salt))
    if typename == "dict":
        parts: list[Expr] = [
            Lit('{"source": "'),
            Pick(_SOURCES, salt()),
            Lit('", "score": '),
            Num(0, 100, salt()),
            Lit(', "verified": '),
            Pick(("true", "false"), salt()),
            Lit("}"),
        ]
        return FieldSpec(name, "dict", Concat(parts))
    raise ValueError(f"unknown struct type {typename!r}")


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
) -> OutputPlan:
    """Decide the output layout for an upload with these columns and this config."""
    specs = [build_spec(name, typename, endpoint) for name, typename in parse_struct(struct, endpoint)]
    feed = list(columns) if columns else list(input_columns)
    plan = OutputPlan([], specs, feed, resolve_roles(feed, endpoint), field_confidence)
    owned = set(plan.enriched_columns)
    # An uploaded column named like an enriched one is replaced by it (see docs/emulator.md).
    plan.passthrough = [c for c in input_columns if c not in owned]
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
) -> tuple[pa.Table, int]:
    """The enriched table for an input table of string columns, and how many rows failed."""
    n = table.num_rows
    plan = make_plan(table.column_names, struct, endpoint=endpoint, field_confidence=field_confidence, columns=columns)
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
    for spec in plan.specs:
        ctx = VecCtx(n, combine_vec(rows, np.uint64(hash_str(spec.name))), inputs, memo)
        values = _typed_vec(spec, ctx)
        out_names.append(spec.name)
        out_arrays.append(pc.if_else(failed, pa.scalar(None, values.type), values))
        if field_confidence:
            conf = pa.array(spec.confidence.ints(ctx))
            confidences.append((f"{spec.name}_confidence", pc.if_else(failed, pa.scalar(None, pa.int64()), conf)))
    for name, arr in confidences:
        out_names.append(name)
        out_arrays.append(arr)
    return pa.table(out_arrays, names=out_names), int(failed_np.sum())


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


def _typed_py(spec: FieldSpec, ctx: RowCtx) -> Any:
    if spec.kind in ("int", "float", "bool"):
        assert isinstance(spec.expr, Num)
        value = spec.expr.int_py(ctx)
        if spec.kind == "int":
            return value
        if spec.kind == "float":
            return value / 100.0
        return value == 1
    text = spec.expr.py(ctx)
    if spec.kind.startswith("list") and text is not None:
        return json.loads(text)
    return text


def preview_value(kind: str, value: Any) -> Any:
    """A generated cell as it appears in an inline preview row (list JSON text becomes a list)."""
    if kind.startswith("list") and isinstance(value, str):
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
) -> list[dict[str, Any]]:
    """Pure-Python reference of :func:`generate_output`, row by row (for tests, small inputs)."""
    rows = list(rows)
    input_columns: dict[str, None] = {}
    for row in rows:
        for key in row:
            input_columns.setdefault(key, None)
    plan = make_plan(list(input_columns), struct, endpoint=endpoint, field_confidence=field_confidence, columns=columns)
    threshold = _failure_threshold(failure_rate)
    out: list[dict[str, Any]] = []
    for row in rows:
        texts = {c: canonical_text(row.get(c)) for c in input_columns}
        rh = row_hash([texts[c] for c in plan.feed], plan.feed, seed)
        failed = (salted(rh, _FAIL_SALT) >> 11) < threshold
        result: dict[str, Any] = {c: row.get(c) for c in plan.passthrough}
        role_values = {role: texts[col] for role, col in plan.roles.items()}
        confidences: dict[str, Any] = {}
        for spec in plan.specs:
            ctx = RowCtx(combine(rh, hash_str(spec.name)), role_values)
            result[spec.name] = None if failed else _typed_py(spec, ctx)
            if field_confidence:
                confidences[f"{spec.name}_confidence"] = None if failed else spec.confidence.int_py(ctx)
        result.update(confidences)
        out.append(result)
    return out
