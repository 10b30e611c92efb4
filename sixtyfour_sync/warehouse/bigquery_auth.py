"""BigQuery credentials for each of dbt-bigquery's ``method`` values (google-auth, no network until used)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sixtyfour_sync.errors import ConfigError, MissingDriverError

if TYPE_CHECKING:
    from sixtyfour_sync.config.profiles import BigQueryTarget

__all__ = ["credentials_for"]

_INSTALL_HINT = "pip install 'sixtyfour-sync[bigquery]'"


def _secret(value: object) -> str | None:
    get = getattr(value, "get", None)
    return None if value is None else str(get()) if callable(get) else str(value)


def credentials_for(config: BigQueryTarget, *, project_dir: Path | None = None) -> Any:
    """google-auth credentials for a profile's ``method`` (impersonated when the profile says so)."""
    scopes = config.scopes or [
        "https://www.googleapis.com/auth/bigquery",
        "https://www.googleapis.com/auth/cloud-platform",
    ]
    try:
        import google.auth
        from google.auth.credentials import AnonymousCredentials
        from google.oauth2 import credentials as user_credentials
        from google.oauth2 import service_account
    except ImportError as exc:  # pragma: no cover - google-auth comes with the client
        raise MissingDriverError("BigQuery needs google-auth", hint=_INSTALL_HINT) from exc
    creds: Any
    if config.method == "anonymous":
        return AnonymousCredentials()  # type: ignore[no-untyped-call]
    if config.method == "service-account":
        path = Path(str(config.keyfile)).expanduser()
        if not path.is_absolute() and project_dir is not None:
            path = project_dir / path
        try:
            creds = service_account.Credentials.from_service_account_file(str(path), scopes=scopes)  # type: ignore[no-untyped-call]
        except (OSError, ValueError) as exc:
            raise ConfigError(
                f"bigquery: keyfile {str(path)!r} cannot be used: {getattr(exc, 'strerror', None) or exc}",
                hint="point keyfile at a service-account JSON key (relative paths start at the project directory)",
            ) from None
    elif config.method == "service-account-json":
        try:
            info = json.loads(_secret(config.keyfile_json) or "{}")
            creds = service_account.Credentials.from_service_account_info(info, scopes=scopes)  # type: ignore[no-untyped-call]
        except (ValueError, KeyError) as exc:
            raise ConfigError(
                f"bigquery: keyfile_json is not a service-account key ({type(exc).__name__})",
                hint="paste the whole JSON key under keyfile_json",
            ) from None
    elif config.method == "oauth-secrets":
        creds = user_credentials.Credentials(  # type: ignore[no-untyped-call]
            token=_secret(config.token),
            refresh_token=_secret(config.refresh_token),
            client_id=config.client_id,
            client_secret=_secret(config.client_secret),
            token_uri=config.token_uri,
            scopes=scopes,
        )
    else:
        try:
            creds, _ = google.auth.default(scopes=scopes)
        except google.auth.exceptions.DefaultCredentialsError as exc:
            raise ConfigError(
                "bigquery: method oauth found no application default credentials",
                hint="run `gcloud auth application-default login`, or use method: service-account with keyfile",
            ) from exc
    if config.impersonate_service_account:
        from google.auth import impersonated_credentials

        creds = impersonated_credentials.Credentials(  # type: ignore[no-untyped-call]
            source_credentials=creds, target_principal=config.impersonate_service_account, target_scopes=scopes
        )
    return creds
