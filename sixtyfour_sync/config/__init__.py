"""Configuration: profiles.yml targets (:mod:`.profiles`, :mod:`.targets`), sync definitions (:mod:`.models`,
:mod:`.loading`) and ``env_var()`` rendering (:mod:`.envvars`).

The names below are loaded on first use: importing a submodule (the CLI's options, the schema's URL) does not
build the pydantic models of every warehouse's profile.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from sixtyfour_sync._lazy import lazy_names

if TYPE_CHECKING:
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

_WHERE = {
    "render_env_vars": "sixtyfour_sync.config.envvars",
    "DuckDBTarget": "sixtyfour_sync.config.profiles",
    "PostgresTarget": "sixtyfour_sync.config.profiles",
    "ResolvedTarget": "sixtyfour_sync.config.profiles",
    "SnowflakeTarget": "sixtyfour_sync.config.profiles",
    "SqlAlchemyTarget": "sixtyfour_sync.config.profiles",
    "TargetConfig": "sixtyfour_sync.config.profiles",
    "load_target": "sixtyfour_sync.config.profiles",
    "parse_target_config": "sixtyfour_sync.config.profiles",
}

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


__getattr__ = lazy_names(__name__, _WHERE)
