"""What each struct field is made of: vocabularies, input roles and the expression built from a field's name."""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from sixtyfour_sync.emulator.expressions import (
    Choose,
    Coalesce,
    Concat,
    Domain,
    Expr,
    Input,
    JsonStr,
    Lit,
    Num,
    Pad,
    Pick,
    Slug,
    slug_text,
)

__all__ = ["FieldSpec", "build_spec", "enum_values", "resolve_roles"]

_CONF_SALT = 0xC0DE

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
    kind: str  # str | int | float | bool | list[...] | dict | enum | list[enum] | object | object_list
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


def _slugs(vocab: Sequence[str], sep: str) -> tuple[str, ...]:
    return tuple(slug_text(v, sep) for v in vocab)


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


#: Answers of an enum field whose description lists none, by a word of the field's name (else the last entry).
_ENUM_VOCABS: tuple[tuple[tuple[str, ...], tuple[str, ...]], ...] = (
    (("seniority", "level"), ("junior", "mid", "senior", "lead", "executive")),
    (("size",), ("small", "medium", "large", "enterprise")),
    (("stage", "status"), ("seed", "series_a", "series_b", "growth", "public")),
    (("sentiment",), ("positive", "neutral", "negative")),
    (("department", "function", "team"), ("engineering", "sales", "marketing", "finance", "operations")),
    (("language",), ("en", "de", "fr", "es", "ja")),
    ((), ("low", "medium", "high")),
)
_ONE_OF = "One of:"


def enum_values(description: str) -> tuple[str, ...]:
    """The allowed answers an enum field's description ends with (``One of: "a", "b".``), or none."""
    at = description.rfind(_ONE_OF)
    if at < 0:
        return ()
    listed = description[at + len(_ONE_OF) :].strip().removesuffix(".").strip()
    try:
        values = json.loads(f"[{listed}]")
    except ValueError:
        values = [v.strip().strip("\"'") for v in listed.split(",")]
    return tuple(dict.fromkeys(str(v) for v in values if str(v).strip()))


def _enum_vocab(norm: str, description: str) -> tuple[str, ...]:
    listed = enum_values(description)
    if listed:
        return listed
    return next(vocab for words, vocab in _ENUM_VOCABS if not words or any(w in norm for w in words))


def _dict_expr(salt: _Salts) -> Expr:
    parts: list[Expr] = [
        Lit('{"source": "'),
        Pick(_SOURCES, salt()),
        Lit('", "score": '),
        Num(0, 100, salt()),
        Lit(', "verified": '),
        Pick(("true", "false"), salt()),
        Lit("}"),
    ]
    return Concat(parts)


def _json_value(name: str, typename: str, endpoint: str, salt: _Salts) -> Expr:
    """One subfield's value as JSON text (``typename``: str, int, float, bool or dict)."""
    if typename == "int":
        expr, numeric = _string_expr(_norm(name), endpoint, salt)
        return expr if numeric and isinstance(expr, Num) else Num(0, 9_999, salt())
    if typename == "float":
        return _float_text(salt, 9_999)
    if typename == "bool":
        return Pick(("true", "false"), salt())
    if typename == "dict":
        return _dict_expr(salt)
    return JsonStr(_string_expr(_norm(name), endpoint, salt)[0])


def _object_expr(subfields: Sequence[tuple[str, str]], endpoint: str, salt: _Salts) -> Expr:
    """A JSON object with one value per subfield; a small default object without subfields."""
    if not subfields:
        return _dict_expr(salt)
    parts: list[Expr] = [Lit("{")]
    for i, (sub, typename) in enumerate(subfields):
        parts.append(Lit((", " if i else "") + json.dumps(sub, ensure_ascii=False) + ": "))
        parts.append(_json_value(sub, typename, endpoint, salt))
    parts.append(Lit("}"))
    return Concat(parts)


def build_spec(
    name: str,
    typename: str,
    endpoint: str,
    *,
    description: str = "",
    subfields: Sequence[tuple[str, str]] = (),
) -> FieldSpec:
    """The generation spec of one struct field, from its name, canonical type and the endpoint.

    An ``enum`` answers one of the values its description lists (``One of: ...``, as the client sends them),
    else a small vocabulary chosen by the field's name; ``object`` one value per subfield ((name, type)
    pairs; a small default object without them); the list types 1-3 items.
    """
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
        return FieldSpec(name, "dict", _dict_expr(salt))
    if typename == "enum":
        return FieldSpec(name, "enum", Pick(_enum_vocab(norm, description), salt()))
    if typename == "list[enum]":
        quoted = tuple(json.dumps(v, ensure_ascii=False) for v in _enum_vocab(norm, description))
        return FieldSpec(name, typename, _json_list(lambda: Pick(quoted, salt()), False, salt))
    if typename == "object":
        return FieldSpec(name, "object", _object_expr(subfields, endpoint, salt))
    if typename == "object_list":
        return FieldSpec(name, typename, _json_list(lambda: _object_expr(subfields, endpoint, salt), False, salt))
    raise ValueError(f"unknown struct type {typename!r}")
