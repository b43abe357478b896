"""Limits fetch() and its client share (a module of its own so neither imports the other)."""

from __future__ import annotations

from typing import Final

__all__ = ["MAX_REDIRECTS"]

# The Fetch standard's redirect limit (https://fetch.spec.whatwg.org/#http-redirect-fetch).
MAX_REDIRECTS: Final = 20
