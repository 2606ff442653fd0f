"""Text from outside (URL parameters, bundle and job messages, link strings) placed in Markdown as itself.

Streamlit renders the body of ``st.error``, ``st.warning``, ``st.success`` and most
labels as Markdown (links, images, emphasis, ``:red[...]`` colours, LaTeX, bare
URLs made into links). A backslash before every ASCII punctuation character is
CommonMark's escape: none of those constructs can start, and the text reads the same.
"""
from __future__ import annotations

import string

_ESCAPES = {ord(c): "\\" + c for c in string.punctuation}


def literal(text: object) -> str:
    """`text` escaped so that Markdown shows it character for character, on one line."""
    return " ".join(str(text).split()).translate(_ESCAPES)
