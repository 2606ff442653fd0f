"""How a failure is told in one line: job messages, store errors and CLI reasons all show an error this way.

Pure Python, no JAX.
"""
from __future__ import annotations


def first_line(err: BaseException) -> str:
    """The first line of the error's message, or its type's name when the message is empty."""
    text = str(err)
    return text.splitlines()[0] if text else type(err).__name__
