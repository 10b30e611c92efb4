"""Idempotency-Keys that encode exactly the question asked.

A key is derived from the sync, the spec hash (endpoint, struct, tier, options), the file's content hash and a
*salt*. The salt is empty for an ordinary question, so the same rows asked the same way get the same key and
the API answers a second submission with the first job (a replay, never a second charge). It is set when the
user means to ask again:

- a deliberate re-ask (``--full-refresh``, ``refresh.when: always``, ``max_age``, ``retry_failed_after``) is
  salted with the run id;
- a re-ask after a job that did not merge (rejected, failed, cancelled, abandoned) is salted with that job's
  id, or the API would answer with the dead job again.

The parts are hashed together, so the key stays far below the API's 255 characters without cutting off the
part that tells two questions apart. The key is stored in the ledger before the first submission and reused
verbatim on every retry and resume.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence

__all__ = ["KEY_PREFIX", "idempotency_key", "salt_for"]

KEY_PREFIX = "sixtyfour-sync"


def salt_for(*, run_id: str | None = None, after_job: str | None = None) -> str:
    """The salt of a question: the run id for a deliberate re-ask and/or the dead job it replaces."""
    parts = []
    if run_id:
        parts.append(f"run={run_id}")
    if after_job:
        parts.append(f"after={after_job}")
    return ";".join(parts)


def idempotency_key(sync_name: str, spec_hash: str, content_hash: str, salt: str = "") -> str:
    """``sixtyfour-sync:<sync>:<sha256 of every part>``: at most 255 visible ASCII characters.

    The readable sync name is only a label (cut to 64 characters); the digest covers the full name too.
    """
    parts: Sequence[str] = (sync_name, spec_hash, content_hash, salt)
    digest = hashlib.sha256("\x1f".join(parts).encode("utf-8")).hexdigest()
    label = re.sub(r"[^A-Za-z0-9_.-]", "_", sync_name)[:64]
    return f"{KEY_PREFIX}:{label}:{digest}"
