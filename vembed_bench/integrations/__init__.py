"""Bridges to other evaluation tools (optional dependencies, imported lazily)."""
