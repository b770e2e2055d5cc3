"""The engine and its storage-backed services."""

from daycare.engine.engine import Engine

__all__ = ["Engine"]
