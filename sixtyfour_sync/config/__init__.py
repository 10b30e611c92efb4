"""Configuration: profiles.yml targets (:mod:`.profiles`) and ``env_var()`` rendering (:mod:`.envvars`)."""

from __future__ import annotations

from sixtyfour_sync.config.envvars import render_env_vars
from sixtyfour_sync.config.profiles import (
    DuckDBTarget,
    PostgresTarget,
    ResolvedTarget,
    SnowflakeTarget,
    SqlAlchemyTarget,
    TargetConfig,
    load_target,
    parse_target_config,
)

__all__ = [
    "DuckDBTarget",
    "PostgresTarget",
    "ResolvedTarget",
    "SnowflakeTarget",
    "SqlAlchemyTarget",
    "TargetConfig",
    "load_target",
    "parse_target_config",
    "render_env_vars",
]
