"""The package version (a leaf module: what records it imports nothing else of clproto)."""

__version__ = "0.1.0"
