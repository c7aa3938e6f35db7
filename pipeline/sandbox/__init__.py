"""The local Zyntro simulator: the documented addSIRequest contract plus production's faults.

The names load on first use (PEP 562): the CLI imports `sandbox.args` for its flags, and
`validate` or `run` should not pay for aiohttp's server (about 0.1 s) to build a parser.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .app import BASE_PATH, DEFAULT_API_KEY, DEFAULT_DEVELOPER_SECRET, DEFAULT_ORG_ID, Sandbox, SandboxConfig

__all__ = ["BASE_PATH", "DEFAULT_API_KEY", "DEFAULT_DEVELOPER_SECRET", "DEFAULT_ORG_ID", "Sandbox", "SandboxConfig"]


def __getattr__(name: str) -> Any:
    if name not in __all__:
        raise AttributeError(f"module 'pipeline.sandbox' has no attribute {name!r}")
    value = getattr(importlib.import_module(".app", __name__), name)
    globals()[name] = value
    return value
