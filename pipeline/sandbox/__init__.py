"""The local Zyntro simulator: the documented addSIRequest contract plus production's faults."""

from .app import BASE_PATH, DEFAULT_API_KEY, DEFAULT_DEVELOPER_SECRET, DEFAULT_ORG_ID, Sandbox, SandboxConfig

__all__ = ["BASE_PATH", "DEFAULT_API_KEY", "DEFAULT_DEVELOPER_SECRET", "DEFAULT_ORG_ID", "Sandbox", "SandboxConfig"]
