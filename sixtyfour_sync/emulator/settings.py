"""Settings of the local API emulator: prices, limits, timings and fault injection."""

from __future__ import annotations

import hashlib
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Literal, get_args

if TYPE_CHECKING:
    from sixtyfour_sync.emulator.answers import AnswerErrors

__all__ = [
    "COMPANY_ONLY_KEYS",
    "CONFIG_KEYS",
    "CREDITS_PER_CENT",
    "DEFAULT_PRICES_CENTS",
    "MAX_RESULT_PARTS",
    "RESULT_PARTS_ORDERS",
    "TIERS",
    "EmulatorSettings",
    "FaultSettings",
    "ResultPartsOrder",
    "check_result_parts",
]

#: Tiers each endpoint accepts.
TIERS: Mapping[str, tuple[str, ...]] = MappingProxyType(
    {
        "people": ("micro", "low", "medium", "high", "xhigh", "scout"),
        "company": ("micro", "low", "medium", "high"),
    }
)
#: Keys the config schema allows on every endpoint, and the ones only ``company`` allows.
CONFIG_KEYS = (
    "struct",
    "tier",
    "field_confidence",
    "webhook_url",
    "columns",
    "research_plan",
    "result_formats",
    "save_json",
)
COMPANY_ONLY_KEYS = ("find_people", "people_focus_prompt", "lead_struct", "full_org_chart")
DEFAULT_PRICES_CENTS: Mapping[str, int] = MappingProxyType(
    {"micro": 1, "low": 2, "medium": 5, "high": 20, "xhigh": 40, "scout": 3}
)
#: The emulator's exchange rate: 1 credit = 1 US dollar = 100 cents.
CREDITS_PER_CENT = 0.01
#: How /job-status lists the files of a final output split in parts.
ResultPartsOrder = Literal["in_order", "reversed", "shuffled"]
RESULT_PARTS_ORDERS: tuple[str, ...] = get_args(ResultPartsOrder)
#: The most files a final output may be split into.
MAX_RESULT_PARTS = 1000

_WEBHOOK_SECRET = re.compile(r"^sk_whsec_[0-9a-f]{64}$")


def _check_rate(name: str, value: float) -> None:
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"{name} must be between 0 and 1, got {value}")


def check_result_parts(parts: object, order: object) -> None:
    """ValueError unless ``parts`` is a number of result files (1-MAX_RESULT_PARTS) and ``order`` a listing order."""
    if isinstance(parts, bool) or not isinstance(parts, int) or not 1 <= parts <= MAX_RESULT_PARTS:
        raise ValueError(f"result_parts must be a whole number from 1 to {MAX_RESULT_PARTS}, got {parts!r}")
    if order not in RESULT_PARTS_ORDERS:
        raise ValueError(f"result_parts_order must be one of {', '.join(RESULT_PARTS_ORDERS)}, got {order!r}")


@dataclass(frozen=True)
class FaultSettings:
    """Random, seeded faults applied to API requests (the admin endpoints are never affected).

    Rates are probabilities per request (0 disables). Drops on a submission happen after the job
    was accepted, so the client sees a lost response for work that did start: only an
    Idempotency-Key replay avoids paying twice.
    """

    error_5xx_rate: float = 0.0
    burst_429_rate: float = 0.0
    drop_connection_rate: float = 0.0
    slow_response_seconds: float = 0.0
    slow_response_rate: float = 0.0
    truncate_download_rate: float = 0.0
    job_failure_rate: float = 0.0
    job_cancel_rate: float = 0.0
    seed: int = 0

    def __post_init__(self) -> None:
        for name in (
            "error_5xx_rate",
            "burst_429_rate",
            "drop_connection_rate",
            "slow_response_rate",
            "truncate_download_rate",
            "job_failure_rate",
            "job_cancel_rate",
        ):
            _check_rate(name, getattr(self, name))
        if self.slow_response_seconds < 0:
            raise ValueError("slow_response_seconds must not be negative")

    @property
    def any_request_faults(self) -> bool:
        """True when some per-request fault can fire."""
        return any(
            (
                self.error_5xx_rate,
                self.burst_429_rate,
                self.drop_connection_rate,
                self.slow_response_rate and self.slow_response_seconds,
                self.truncate_download_rate,
            )
        )


@dataclass(frozen=True)
class EmulatorSettings:
    """Everything the emulator can be told. Defaults follow the documented API limits."""

    #: Accepted API keys; empty accepts any non-empty key (each key is then its own organisation).
    api_keys: frozenset[str] = frozenset()
    #: Keys whose organisation may use tier ``high`` (403 otherwise).
    high_tier_keys: frozenset[str] = frozenset()
    #: Starting balance of every organisation (key), in cents.
    balance_cents: int = 10_000_000
    #: Per-row price of each tier, in cents.
    prices_cents: Mapping[str, int] = field(default_factory=lambda: dict(DEFAULT_PRICES_CENTS))
    #: Seconds from submission to completion (0: complete at the first poll).
    job_seconds: float = 2.0
    #: Lifetime of signed download links.
    download_ttl_seconds: int = 900
    #: Share of rows whose enrichment fails (deterministic per row and seed).
    failure_rate: float = 0.05
    #: Final outputs with at most this many rows carry an inline ``results`` preview.
    preview_max_rows: int = 25
    #: Accepted submissions per rolling 60 s per organisation (replays and rejected requests excluded);
    #: 0 disables the limit (benchmarks).
    rate_limit_per_minute: int = 10
    #: All API requests per rolling 60 s per key (the documented general limit); 0 disables.
    request_limit_per_minute: int = 500
    #: Signing secret for webhook deliveries (``sk_whsec_`` + 64 hex); None sends them unsigned.
    webhook_secret: str | None = None
    #: Allow ``http://`` webhook URLs to loopback addresses (never to anything else).
    allow_insecure_webhooks: bool = False
    #: Deliveries per event before giving up, and the first retry delay (doubling each time).
    webhook_max_attempts: int = 5
    webhook_retry_seconds: float = 1.0
    webhook_timeout_seconds: float = 10.0
    #: Post every delivery to this base URL (keeping the webhook URL's path and query) instead of the
    #: webhook URL's host, as a public HTTPS endpoint in front of a receiver would (a load balancer, a tunnel).
    #: The webhook URL itself is still checked as the API checks it.
    webhook_forward_to: str | None = None
    #: Seed of the generated values (not of the faults: see FaultSettings.seed).
    seed: int = 0
    #: ``failure_rate`` is that of tier ``low``; other tiers fail this many times as often (deeper research
    #: finds more), and draw their values and confidences with a seed of their own.
    tier_failure_factors: Mapping[str, float] = field(
        default_factory=lambda: {"micro": 1.5, "low": 1.0, "medium": 0.5, "high": 0.25, "xhigh": 0.15, "scout": 0.5}
    )
    #: Wrong answers against a ground truth (docs/emulator.md, "Ground truth and wrong answers"): off, each tier
    #: answers its own seed's values; on, every tier answers the truth (the values of ``seed``) except a share
    #: ``tier_error_rates`` of wrong ones, with confidences calibrated to them.
    answer_errors: bool = False
    #: With ``answer_errors``: the share of answered fields that are wrong at each tier (RECON's newest figures
    #: give the low tier 70% precision, medium and high about 83%).
    tier_error_rates: Mapping[str, float] = field(
        default_factory=lambda: {"micro": 0.4, "low": 0.3, "medium": 0.17, "high": 0.15, "xhigh": 0.12, "scout": 0.25}
    )
    faults: FaultSettings = field(default_factory=FaultSettings)
    #: The clock everything time-based reads (jobs, links, rate limits, idempotency).
    clock: Callable[[], float] = time.time
    #: Where uploads and outputs live; None: a temporary directory removed when serving stops.
    data_dir: Path | None = None
    #: Documented limits, settable so tests need not upload 100 MB.
    max_rows: int = 100_000
    max_file_bytes: int = 100_000_000
    max_config_chars: int = 300_000
    #: How long an Idempotency-Key is remembered; 0: never (every submission starts a new job).
    idempotency_ttl_seconds: float = 86_400
    #: Outputs leave out the carried columns (uploaded, not in ``columns``) except ``keep_carried_columns``.
    strip_carried_columns: bool = False
    keep_carried_columns: frozenset[str] = frozenset()
    #: Split every final output (block 3) into this many files of about equal rows, each a whole CSV with
    #: its own header: ``block_3_enriched.csv``, ``block_3_enriched.part1.csv``... (as the real API may).
    result_parts: int = 1
    #: How /job-status lists those files: in part order, reversed, or shuffled (seeded by the task id).
    result_parts_order: ResultPartsOrder = "in_order"

    def tier_seed(self, tier: str) -> int:
        """The seed of a tier's values: ``seed`` at ``low``, another one per other tier."""
        if tier == "low":
            return self.seed
        return self.seed + int.from_bytes(hashlib.sha256(tier.encode()).digest()[:4], "big")

    def tier_failure_rate(self, tier: str) -> float:
        """The share of rows that fail at ``tier``."""
        return min(1.0, self.failure_rate * float(self.tier_failure_factors.get(tier, 1.0)))

    def tier_errors(self, tier: str) -> AnswerErrors | None:
        """How ``tier`` errs against the truth; None when ``answer_errors`` is off."""
        if not self.answer_errors:
            return None
        from sixtyfour_sync.emulator.answers import AnswerErrors

        rate = float(self.tier_error_rates.get(tier, self.tier_error_rates.get("low", 0.3)))
        return AnswerErrors(truth_seed=self.seed, tier_seed=self.tier_seed(tier), error_rate=rate)

    def __post_init__(self) -> None:
        _check_rate("failure_rate", self.failure_rate)
        for tier, rate in self.tier_error_rates.items():
            _check_rate(f"tier_error_rates[{tier}]", rate)
        missing = [t for t in DEFAULT_PRICES_CENTS if t not in self.prices_cents]
        if missing:
            raise ValueError(f"prices_cents lacks a price for tier(s): {', '.join(missing)}")
        if any(p < 0 for p in self.prices_cents.values()):
            raise ValueError("prices_cents must not be negative")
        if self.webhook_secret is not None and not _WEBHOOK_SECRET.match(self.webhook_secret):
            raise ValueError("webhook_secret must be 'sk_whsec_' followed by 64 lower-case hex digits")
        if "" in self.api_keys:
            raise ValueError("api_keys must not contain an empty key")
        for name in ("job_seconds", "webhook_retry_seconds", "webhook_timeout_seconds"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must not be negative")
        for name in ("download_ttl_seconds", "max_rows", "max_file_bytes", "max_config_chars"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive")
        for name in ("rate_limit_per_minute", "request_limit_per_minute", "idempotency_ttl_seconds"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must not be negative")
        if self.webhook_max_attempts < 1:
            raise ValueError("webhook_max_attempts must be at least 1")
        check_result_parts(self.result_parts, self.result_parts_order)

    def __repr__(self) -> str:
        # Keys and the webhook secret are credentials: never show them.
        return (
            f"EmulatorSettings(api_keys=<{len(self.api_keys)} keys>, job_seconds={self.job_seconds}, "
            f"failure_rate={self.failure_rate}, rate_limit_per_minute={self.rate_limit_per_minute}, "
            f"seed={self.seed}, answer_errors={self.answer_errors}, result_parts={self.result_parts}, "
            f"faults={self.faults})"
        )
