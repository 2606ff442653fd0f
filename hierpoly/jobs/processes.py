"""Whether a process is alive, and the same one, from /proc: how the job table tells a lost worker."""
from __future__ import annotations

import os


def process_start(pid: int) -> str | None:
    """Start time of a process (clock ticks since boot) from /proc, or None when not readable."""
    try:
        stat = open(f"/proc/{pid}/stat").read()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()[19]


def process_alive(pid: int, start: str | None) -> bool:
    """Whether pid is a live (not zombie) process, and the same one when its start time is known."""
    try:
        stat = open(f"/proc/{pid}/stat").read()
    except FileNotFoundError:
        return False
    except OSError:  # no /proc: fall back to a signal-0 probe
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True
    fields = stat.rsplit(")", 1)[1].split()
    if fields[0] in ("Z", "X"):
        return False
    return start is None or fields[19] == start
