"""Where ``report`` writes its page when no ``--out`` says: beside dbt's artifacts in a dbt project.

In a dbt project (a ``dbt_project.yml`` in the project directory or in ``--dbt-project-dir``), or when a target
directory is set (``--target-path``, ``DBT_TARGET_PATH``), the page goes to dbt's target directory, where
``sixtyfour_run_results.json`` is written (``artifacts.py``): ``target/`` is already ignored by git and kept as
a CI artifact there. Otherwise it goes to ``report.html`` in the current directory.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from sixtyfour_sync.engine.project import TARGET_PATH_ENV, DbtProject

__all__ = ["REPORT_NAME", "default_report_path"]

REPORT_NAME = "report.html"


def default_report_path(
    dbt: DbtProject, *, target_path: Path | str | None = None, env: Mapping[str, str] | None = None
) -> Path:
    """``<dbt target directory>/report.html`` in a dbt project or with a target directory set, else ``report.html``."""
    env = os.environ if env is None else env
    if dbt.exists or target_path or env.get(TARGET_PATH_ENV):
        return dbt.target_dir(target_path, env) / REPORT_NAME
    return Path(REPORT_NAME)
