"""The end-to-end fixtures (a project wired to the emulator on a real socket), shared with tests/e2e."""

from __future__ import annotations

from tests.e2e.conftest import api_key, emulator, emulator_settings, project  # noqa: F401 - the fixtures
