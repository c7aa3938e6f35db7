"""The local Zyntro simulator: the documented addSIRequest contract plus production's faults."""

from .app import DEFAULT_API_KEY, DEFAULT_DEVELOPER_SECRET, DEFAULT_ORG_ID, BASE_PATH, Sandbox, SandboxConfig

__all__ = ["BASE_PATH", "DEFAULT_API_KEY", "DEFAULT_DEVELOPER_SECRET", "DEFAULT_ORG_ID", "Sandbox", "SandboxConfig"]
