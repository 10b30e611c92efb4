"""Who may call the emulator: API keys, the organisations they belong to, rate windows and Idempotency-Keys.

Raw keys are never stored: keys and organisations are indexed by a digest of the key. A key belongs
to one organisation (its own, unless it was added to another key's); jobs, balances, the submission
limit and Idempotency-Keys are per organisation, the general request limit per key.
"""

from __future__ import annotations

import hashlib
import math
import threading
from collections import deque
from dataclasses import dataclass, field

from sixtyfour_sync._redact import register_secret

__all__ = ["Accounts", "IdempotencyHit", "Org", "key_id"]

_WINDOW = 60.0


def key_id(api_key: str) -> str:
    """A short digest that stands for a key in records, logs and indexes."""
    return hashlib.sha256(api_key.encode("utf-8")).hexdigest()[:16]


@dataclass
class Org:
    """One organisation: balance, holds of running jobs, its submission window."""

    org_id: str
    balance_cents: int
    high_tier: bool = False
    holds_cents: int = 0
    submits: deque[float] = field(default_factory=deque)
    submit_lock: threading.Lock = field(default_factory=threading.Lock)


@dataclass(frozen=True)
class IdempotencyHit:
    """A remembered Idempotency-Key: the job it created and the SHA-256 of that job's file."""

    task_id: str
    file_sha256: str
    at: float


class Accounts:
    """Keys, organisations, rate windows and remembered Idempotency-Keys (thread-safe)."""

    def __init__(
        self,
        api_keys: frozenset[str],
        high_tier_keys: frozenset[str],
        balance_cents: int,
        idempotency_ttl_seconds: float,
    ) -> None:
        self._lock = threading.RLock()
        self._balance_cents = balance_cents
        self.idempotency_ttl_seconds = idempotency_ttl_seconds
        #: With no keys configured, any non-empty key is accepted (each its own organisation).
        self.accept_any = not api_keys
        self._org_of: dict[str, str] = {}
        self._revoked: set[str] = set()
        self._orgs: dict[str, Org] = {}
        self._requests: dict[str, deque[float]] = {}
        self._high_tier = {key_id(k) for k in high_tier_keys}
        self._idempotency: dict[tuple[str, str, str], IdempotencyHit] = {}
        for key in (*api_keys, *high_tier_keys):
            register_secret(key)
        for key in api_keys:
            self._org_of[key_id(key)] = key_id(key)

    # ------------------------------------------------------------------ keys

    def authenticate(self, api_key: str) -> str | None:
        """The key's id when the key is accepted, else None."""
        if not api_key:
            return None
        kid = key_id(api_key)
        with self._lock:
            if kid in self._revoked:
                return None
            if kid in self._org_of or self.accept_any:
                return kid
        return None

    def org_for(self, kid: str) -> Org:
        """The organisation of an accepted key (created on first use)."""
        with self._lock:
            org_id = self._org_of.get(kid, kid)
            org = self._orgs.get(org_id)
            if org is None:
                org = self._orgs[org_id] = Org(org_id, self._balance_cents, high_tier=org_id in self._high_tier)
            return org

    def add_key(self, api_key: str, *, same_org_as: str | None = None) -> None:
        """Accept ``api_key`` from now on; with ``same_org_as``, in that key's organisation (a rotated key)."""
        if not api_key:
            raise ValueError("an API key must not be empty")
        register_secret(api_key)
        kid = key_id(api_key)
        with self._lock:
            org_id = self._org_of.get(key_id(same_org_as), key_id(same_org_as)) if same_org_as else kid
            self._org_of[kid] = org_id
            self._revoked.discard(kid)

    def revoke_key(self, api_key: str) -> None:
        """Refuse ``api_key`` from now on (401), even when any key is accepted; its jobs stay."""
        kid = key_id(api_key)
        with self._lock:
            self._revoked.add(kid)

    # ------------------------------------------------------------------ rate windows

    @staticmethod
    def _wait(window: deque[float], limit: int, now: float) -> int | None:
        while window and window[0] <= now - _WINDOW:
            window.popleft()
        if len(window) >= limit:
            return max(1, math.ceil(window[0] + _WINDOW - now))
        return None

    def take_request(self, kid: str, limit: int, now: float) -> int | None:
        """Count one request of a key against ``limit`` per minute (0: none); seconds to wait when full."""
        if not limit:
            return None
        with self._lock:
            window = self._requests.setdefault(kid, deque())
            wait = self._wait(window, limit, now)
            if wait is None:
                window.append(now)
            return wait

    def submit_wait(self, org: Org, limit: int, now: float) -> int | None:
        """Seconds until the organisation may submit again (``limit`` per minute, 0: none), else None."""
        if not limit:
            return None
        with self._lock:
            return self._wait(org.submits, limit, now)

    # ------------------------------------------------------------------ money

    def spendable(self, org: Org) -> int:
        """Balance minus the holds of running jobs, in cents."""
        with self._lock:
            return org.balance_cents - org.holds_cents

    def hold(self, org: Org, cents: int, now: float) -> bool:
        """Hold ``cents`` for a new job and count the submission; False when the balance is short."""
        with self._lock:
            if org.balance_cents - org.holds_cents < cents:
                return False
            org.holds_cents += cents
            org.submits.append(now)
            return True

    def settle(self, org_id: str, held_cents: int, charge_cents: int) -> None:
        """Release a job's hold and charge what it cost."""
        with self._lock:
            org = self._orgs[org_id]
            org.holds_cents -= held_cents
            org.balance_cents -= charge_cents

    # ------------------------------------------------------------------ idempotency

    def recall(self, org_id: str, endpoint: str, idem: str, now: float) -> IdempotencyHit | None:
        """The job an Idempotency-Key created, while it is remembered."""
        with self._lock:
            hit = self._idempotency.get((org_id, endpoint, idem))
        if hit is None or now - hit.at >= self.idempotency_ttl_seconds:
            return None
        return hit

    def remember(self, org_id: str, endpoint: str, idem: str, hit: IdempotencyHit) -> None:
        """Reserve an Idempotency-Key for an accepted submission (not at all when the TTL is 0)."""
        if self.idempotency_ttl_seconds <= 0:
            return
        with self._lock:
            self._idempotency[(org_id, endpoint, idem)] = hit

    def forget_idempotency_keys(self) -> int:
        """Forget every remembered Idempotency-Key now; returns how many there were."""
        with self._lock:
            n = len(self._idempotency)
            self._idempotency.clear()
            return n
