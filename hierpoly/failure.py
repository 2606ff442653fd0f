"""How a failure is told in one line: job messages, store errors and CLI reasons all show an error this way.

Pure Python, no JAX.
"""
from __future__ import annotations


def first_line(err: BaseException) -> str:
    """The first non-blank line of the error's message, stripped, or its type's name when there is none."""
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    return lines[0] if lines else type(err).__name__
