"""The package's version: the one place it is written (pyproject.toml reads it through ``[tool.hatch.version]``).

Kept in a module of its own that imports nothing, so ``sixtyfour-sync --version`` and the build backend read
it without loading the rest of the package.
"""

__version__ = "0.1.0"
