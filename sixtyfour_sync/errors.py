"""The one error hierarchy of sixtyfour-sync.

Callers decide by class, never by matching message text:

- :class:`ConfigError` - the user's files or flags are wrong; fix them and run again.
- :class:`ApiError` (in :mod:`sixtyfour_sync.api.errors`) - the Sixtyfour API refused or failed;
  its subclasses say whether a retry can help.
- :class:`WarehouseError` - the warehouse refused an operation or the data breaks a rule
  (NULL or duplicate keys, a type conflict on an owned column).
- :class:`BudgetExceededError` - the work would cost more than the budget allows.

Every error's text is safe to print: it never carries an API key, a password or a signed URL.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

__all__ = [
    "ApiKeyRefusedError",
    "BudgetExceededError",
    "ConfigError",
    "ConfigProblem",
    "DataError",
    "LimitExceededError",
    "MissingDriverError",
    "SixtyfourSyncError",
    "UnsafeIdentifierError",
    "WarehouseBusyError",
    "WarehouseError",
]


class SixtyfourSyncError(Exception):
    """Root of every error this package raises on purpose."""

    #: The process exit code the CLI uses for this error (CONTRACT.md: 1 failure).
    exit_code: int = 1
    #: A short, actionable hint shown under the message, when there is one.
    hint: str | None = None

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        if hint is not None:
            self.hint = hint

    def __str__(self) -> str:
        return self.message


@dataclass(frozen=True)
class ConfigProblem:
    """One problem in a file the user wrote: where it is, what is wrong, what to do."""

    file: str | None
    path: str | None
    message: str
    line: int | None = None
    hint: str | None = None

    def __str__(self) -> str:
        where = self.file or "<config>"
        if self.line is not None:
            where += f":{self.line}"
        if self.path:
            where += f": {self.path}"
        text = f"{where}: {self.message}"
        if self.hint:
            text += f" (hint: {self.hint})"
        return text


class ConfigError(SixtyfourSyncError):
    """The configuration (profiles, models, flags, API config) is invalid.

    Carries every problem found, so the user can fix them all in one go.
    """

    def __init__(
        self,
        message: str | None = None,
        *,
        problems: Sequence[ConfigProblem] = (),
        hint: str | None = None,
    ) -> None:
        self.problems = list(problems)
        if message is None:
            message = "\n".join(str(p) for p in self.problems) or "invalid configuration"
        elif self.problems:
            message = message + "\n" + "\n".join(f"  - {p}" for p in self.problems)
        super().__init__(message, hint=hint)


class LimitExceededError(ConfigError):
    """An input breaks a documented limit (rows per file, file size, config size...).

    ``limit`` and ``actual`` are the numbers, so a caller can split the work and retry.
    """

    def __init__(self, what: str, *, limit: int, actual: int, hint: str | None = None) -> None:
        self.what = what
        self.limit = limit
        self.actual = actual
        super().__init__(f"{what}: {actual:,} exceeds the limit of {limit:,}", hint=hint)


class UnsafeIdentifierError(ConfigError):
    """A table, schema or column name from configuration is not a safe SQL identifier."""


class MissingDriverError(SixtyfourSyncError):
    """A warehouse driver is not installed; the hint names the extra to install."""


class WarehouseError(SixtyfourSyncError):
    """The warehouse refused an operation (the driver's error is chained as ``__cause__``)."""


class WarehouseBusyError(WarehouseError):
    """Another process holds the warehouse (a DuckDB file) and did not let go within the profile's wait."""


class DataError(WarehouseError):
    """The data breaks a rule the sync relies on: a NULL key, a duplicate key, a type conflict."""


class BudgetExceededError(SixtyfourSyncError):
    """Submitting more work would exceed the run's budget; nothing more was submitted."""


class ApiKeyRefusedError(SixtyfourSyncError):
    """The API refused the key (401/403) while jobs were in flight: they are kept for a run with a valid key."""

    hint = "export a valid SIXTYFOUR_API_KEY (the one that submitted the jobs) and run again"
