"""The version of tcpworkers: the one place it is written.

``pyproject.toml`` reads it (``[tool.setuptools.dynamic]``), ``tcpworkers.__version__`` and
``tcpworkers --version`` re-export it, and CHANGELOG.md has a section for it.
"""

__all__ = ["__version__"]

__version__ = "0.1.0"
