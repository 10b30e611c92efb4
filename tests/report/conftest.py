"""Fixtures shared with tests/e2e (a project wired to the emulator, ``wh``) and tests/warehouse (``backend``)."""

from __future__ import annotations

from tests.e2e.conftest import api_key, emulator, emulator_settings, project, wh  # noqa: F401 - the fixtures
from tests.warehouse.conftest import backend, backend_name  # noqa: F401 - the fixtures
