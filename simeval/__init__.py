"""simeval: the harness and CLI that evaluate robot policies on the project's worlds."""

__version__ = "0.1.0"
