"""Snowflake connection arguments from a profile: credentials, pinned session parameters, dbt's quoting.

dbt-snowflake's keys - ``account``, ``user``, and one of ``password``, ``private_key_path``
(+ ``private_key_passphrase``) or an inline ``private_key``, or ``authenticator`` (``externalbrowser``,
``oauth`` with ``token``, ``oauth_client_credentials``, ``username_password_mfa``, an Okta URL); ``role``,
``database``, ``warehouse``, ``schema``, ``host``. Key-pair auth loads the PEM with ``cryptography`` and
hands the connector DER bytes.

OAuth as dbt-snowflake does it: with ``authenticator: oauth``, ``oauth_client_id`` and
``oauth_client_secret``, ``token`` is a refresh token, exchanged at the account's
``/oauth/token-request`` for an access token (cached until shortly before it expires, so sibling
connections do not spend a single-use refresh token twice). ``authenticator: oauth_client_credentials``
hands the client id and secret to the connector's own client-credentials flow.

Session parameters pin what the text of values depends on (the row hash casts values to text) and how
ledger writes' timestamps are read, whatever the account or user defaults say.
"""

from __future__ import annotations

import base64
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx

from sixtyfour_sync.config.profiles import SnowflakeTarget
from sixtyfour_sync.errors import ConfigError, MissingDriverError, WarehouseError

__all__ = [
    "INSTALL_HINT",
    "SESSION_PARAMETERS",
    "OAuthTokens",
    "connect_kwargs",
    "load_private_key",
    "token_request_url",
]

INSTALL_HINT = "pip install 'sixtyfour-sync[snowflake]'"

_TS_TZ = "YYYY-MM-DD HH24:MI:SS.FF9 TZH:TZM"
#: Pinned on every connection. Output formats: CAST(ts AS VARCHAR) follows them (3 decimals by default, and
#: an administrator may change them), so the row hash would. Input formats: ledger timestamps are bound as
#: ISO-8601 text, which AUTO reads whatever format the account prefers.
SESSION_PARAMETERS: Mapping[str, str] = {
    "TIMEZONE": "UTC",
    "TIMESTAMP_OUTPUT_FORMAT": _TS_TZ,
    "TIMESTAMP_TZ_OUTPUT_FORMAT": _TS_TZ,
    "TIMESTAMP_LTZ_OUTPUT_FORMAT": _TS_TZ,
    "TIMESTAMP_NTZ_OUTPUT_FORMAT": "YYYY-MM-DD HH24:MI:SS.FF9",
    "DATE_OUTPUT_FORMAT": "YYYY-MM-DD",
    "TIME_OUTPUT_FORMAT": "HH24:MI:SS.FF9",
    "BINARY_OUTPUT_FORMAT": "HEX",
    "TIMESTAMP_INPUT_FORMAT": "AUTO",
    "DATE_INPUT_FORMAT": "AUTO",
    "TIME_INPUT_FORMAT": "AUTO",
}


def load_private_key(pem: bytes, passphrase: str | None, *, where: str) -> bytes:
    """A PEM (or base64 DER) private key, decrypted, as the PKCS#8 DER bytes the connector takes."""
    try:
        from cryptography.hazmat.primitives import serialization
    except ImportError as exc:  # pragma: no cover - cryptography comes with the connector
        raise MissingDriverError("key-pair auth needs the cryptography package", hint=INSTALL_HINT) from exc
    password = passphrase.encode() if passphrase else None
    try:
        if b"-----BEGIN" in pem:
            key = serialization.load_pem_private_key(pem, password=password)
        else:
            key = serialization.load_der_private_key(base64.b64decode(pem.strip()), password=password)
    except (ValueError, TypeError) as exc:
        # The library's message says whether the passphrase is wrong or missing; it never holds the key.
        raise ConfigError(
            f"{where}: cannot load the private key: {exc}",
            hint="check private_key_passphrase, and that the key is an unencrypted or PKCS#8 PEM",
        ) from None
    return key.private_bytes(
        encoding=serialization.Encoding.DER,
        format=serialization.PrivateFormat.PKCS8,
        encryption_algorithm=serialization.NoEncryption(),
    )


def token_request_url(config: SnowflakeTarget) -> str:
    """Where a refresh token is exchanged: ``oauth_token_request_url``, else the account's endpoint."""
    if config.oauth_token_request_url:
        return config.oauth_token_request_url
    host = config.host or f"{config.account}.snowflakecomputing.com"
    return f"https://{host}/oauth/token-request"


class OAuthTokens:
    """Access tokens from a refresh token, cached until a minute before they expire (thread-safe)."""

    def __init__(self, config: SnowflakeTarget, *, client: httpx.Client | None = None) -> None:
        self.config = config
        self._client = client
        self._lock = threading.Lock()
        self._token: str | None = None
        self._expires = 0.0

    def access_token(self) -> str:
        """A valid access token (exchanging the refresh token when none is cached)."""
        with self._lock:
            if self._token is None or time.monotonic() >= self._expires:
                self._token, lifetime = self._exchange()
                self._expires = time.monotonic() + max(lifetime - 60.0, 0.0)
            return self._token

    def _exchange(self) -> tuple[str, float]:
        c = self.config
        assert c.oauth_client_id and c.oauth_client_secret and c.token
        url = token_request_url(c)
        parts = urlsplit(url)
        if parts.scheme != "https" and parts.hostname not in ("127.0.0.1", "localhost", "::1"):
            raise ConfigError(
                f"snowflake: oauth_token_request_url must use https (got {parts.scheme}://{parts.hostname})",
                hint="the client secret and refresh token travel in this request",
            )
        basic = base64.b64encode(f"{c.oauth_client_id}:{c.oauth_client_secret.get()}".encode()).decode()
        # dbt-snowflake's request: the redirect URI must be present but is never followed.
        form = {"grant_type": "refresh_token", "refresh_token": c.token.get(), "redirect_uri": "http://localhost:9999"}
        client = self._client or httpx.Client(timeout=c.connect_timeout or 30)
        try:
            response = client.post(url, data=form, headers={"Authorization": f"Basic {basic}"})
        except httpx.HTTPError as exc:
            raise WarehouseError(
                f"snowflake: the OAuth token request to {parts.hostname} failed: {type(exc).__name__}"
            ) from None
        finally:
            if self._client is None:
                client.close()
        return _read_token_response(response, parts.hostname or "?")


def _read_token_response(response: httpx.Response, host: str) -> tuple[str, float]:
    try:
        body = response.json()
    except ValueError:
        body = {}
    if not isinstance(body, dict):
        body = {}
    if response.status_code != 200 or not isinstance(body.get("access_token"), str):
        # Snowflake answers {"error": "invalid_grant", "message": "..."}: safe to show, it holds no secret.
        reason = str(body.get("error") or "")
        detail = str(body.get("message") or body.get("error_description") or "")[:200]
        raise WarehouseError(
            f"snowflake: {host} refused the OAuth refresh token (HTTP {response.status_code}"
            f"{': ' + reason if reason else ''}{': ' + detail if detail else ''})",
            hint="check oauth_client_id/oauth_client_secret and that the refresh token (token:) is current; "
            "refresh tokens expire (OAUTH_REFRESH_TOKEN_VALIDITY) and may be single-use",
        )
    lifetime = body.get("expires_in")
    return str(body["access_token"]), float(lifetime) if isinstance(lifetime, (int, float)) else 600.0


def _name(value: str, quoted: bool) -> str:
    """A database/schema name for the connector: quoted when dbt's quoting says so (case kept)."""
    return f'"{value}"' if quoted else value


def connect_kwargs(
    config: SnowflakeTarget,
    *,
    project_dir: Path | None = None,
    tokens: OAuthTokens | None = None,
    quote_database: bool = False,
    quote_schema: bool = False,
) -> dict[str, Any]:
    """``snowflake.connector.connect`` arguments for a profile output (holds secrets: never log it)."""
    kw: dict[str, Any] = {
        "account": config.account,
        "user": config.user,
        "application": "sixtyfour-sync",
        "paramstyle": "qmark",
        "autocommit": False,
        "session_parameters": dict(SESSION_PARAMETERS),
    }
    if config.role:
        kw["role"] = config.role
    if config.warehouse:
        kw["warehouse"] = config.warehouse
    kw["database"] = _name(config.database, quote_database)
    if config.schema:
        kw["schema"] = _name(config.schema, quote_schema)
    if config.host:
        kw["host"] = config.host
    if config.query_tag:
        kw["session_parameters"]["QUERY_TAG"] = config.query_tag
    if config.connect_timeout:
        kw["login_timeout"] = config.connect_timeout
    if config.password is not None:
        kw["password"] = config.password.get()
    if config.authenticator:
        kw.update(_authenticator_kwargs(config, tokens))
    passphrase = config.private_key_passphrase.get() if config.private_key_passphrase is not None else None
    if config.private_key_path:
        path = Path(config.private_key_path).expanduser()
        if not path.is_absolute() and project_dir is not None:
            path = project_dir / path
        try:
            pem = path.read_bytes()
        except OSError as exc:
            raise ConfigError(
                f"snowflake: private_key_path {str(path)!r} cannot be read: {exc.strerror}",
                hint="point private_key_path at the PEM file (relative paths start at the project directory)",
            ) from None
        kw["private_key"] = load_private_key(pem, passphrase, where=f"private_key_path {str(path)!r}")
    elif config.private_key is not None:
        kw["private_key"] = load_private_key(config.private_key.get().encode(), passphrase, where="private_key")
    return kw


def _authenticator_kwargs(config: SnowflakeTarget, tokens: OAuthTokens | None) -> dict[str, Any]:
    auth = config.authenticator or ""
    kw: dict[str, Any] = {"authenticator": auth}
    if auth.lower() == "oauth":
        if config.oauth_client_id and config.oauth_client_secret:
            kw["token"] = (tokens or OAuthTokens(config)).access_token()
        elif config.token is not None:
            kw["token"] = config.token.get()
    elif auth.lower() == "oauth_client_credentials":
        kw["authenticator"] = "OAUTH_CLIENT_CREDENTIALS"
        kw["oauth_client_id"] = config.oauth_client_id
        kw["oauth_client_secret"] = config.oauth_client_secret.get() if config.oauth_client_secret else None
        if config.oauth_token_request_url:
            kw["oauth_token_request_url"] = config.oauth_token_request_url
    elif config.token is not None:
        kw["token"] = config.token.get()
    return kw
