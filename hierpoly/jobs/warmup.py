"""The warm worker: a worker that has compiled the programs of the app's default run before anyone clicks Run.

`python -m hierpoly.jobs.warmup SERVER_PID CONFIG_JSON...`, started by the app (``start``).

A fresh worker starts Python and JAX and compiles before its first training step. Measured
through the job table on this project's 2-core CPU under a load average of 12 (the Learn tour's
run, submit to result): 61 s cold, 13–15 s in a fresh worker with every program already in the
persistent compilation cache (``<store>/xla``), 2.4–2.8 s in a worker that had run the same
shapes before. Only a live process makes the first click fast, so the warm worker rehearses
each default config (``rehearsal``: the same shapes, a few steps, thrown away, nothing stored),
then serves queued jobs like any worker (``worker.serve``), for as long as the server that
started it runs rather than for $HIERPOLY_WORKER_IDLE_S. Its programs reach the persistent
cache too, for workers started beside it.

Its state is the job table's ``warm`` row (JSON: state, pid, start, host, seconds, message,
updated), written by ``start`` and by the warm worker; ``readiness`` only reads it. Importing
this module does not import JAX.
"""
from __future__ import annotations

import dataclasses
import json
import os
import socket
import sys
import time
from dataclasses import dataclass

from hierpoly import settings
from hierpoly.config import RunConfig
from hierpoly.failure import first_line
from hierpoly.jobs import policy, processes, records, scheduler, worker
from hierpoly.results.store import Store

ROW = "warm"  # the job table's entry for the warm worker
REHEARSAL_STEPS = 2  # enough to run every compiled program once: steps and rules are their arguments (engine/loop.py)
SETTLED = ("", "ready", "failed", "stopped")  # states that change only when the server starts a new warm worker


@dataclass(frozen=True)
class Readiness:
    """What the warm worker is doing, as its row and its process say."""

    state: str  # "" (none started), starting, compiling, ready, failed or stopped (its process is gone)
    message: str = ""  # failed: why
    seconds: float | None = None  # ready: how long the rehearsals took
    pid: int | None = None

    @property
    def ready(self) -> bool:
        return self.state == "ready"

    @property
    def settled(self) -> bool:
        return self.state in SETTLED


def wanted(mode: str) -> bool:
    """Whether the app starts a warm worker: $HIERPOLY_WARM 1 in a mode that launches runs, 0 never, else classroom only."""
    choice = (settings.text("HIERPOLY_WARM") or "").strip()
    if not policy.can_launch(mode) or choice == "0":
        return False
    return choice == "1" or mode == "classroom"


def rehearsal(cfg: RunConfig) -> RunConfig:
    """cfg's shapes at REHEARSAL_STEPS: it compiles every program cfg's run calls, in seconds, under another key."""
    stage2 = {"steps2": REHEARSAL_STEPS} if cfg.mode == "layerwise" else {}
    return dataclasses.replace(cfg, steps=REHEARSAL_STEPS, **stage2)


def _row(t) -> dict | None:
    try:
        row = json.loads(t.get(ROW) or "null")
    except (TypeError, ValueError):
        return None  # a damaged row reads as none: the next start writes a new one
    return row if isinstance(row, dict) else None


def readiness(store: Store) -> Readiness:
    """The warm worker's state (a row whose process is gone reads as stopped); reads the job table only."""
    row = _row(records.table(store))
    if row is None:
        return Readiness("")
    pid = row.get("pid")
    here = row.get("host") == socket.gethostname()
    alive = isinstance(pid, int) and (not here or processes.process_alive(pid, row.get("start")))
    state = str(row.get("state", "")) if alive or row.get("state") == "failed" else "stopped"
    return Readiness(state, str(row.get("message") or ""), row.get("seconds"), pid)


def describe(state: Readiness) -> str:
    """One line for the sidebar ('' when no warm worker was started)."""
    if state.state in ("starting", "compiling"):
        doing = "starting Python and JAX" if state.state == "starting" else "compiling"
        return f"Preparing runs ({doing})…"
    if state.ready:
        took = f" (compiled in {state.seconds:.0f} s)" if state.seconds is not None else ""
        return f"Ready: runs start warm{took}."
    if state.state == "failed":
        return f"Runs start cold: the warm-up failed ({state.message})."
    if state.state == "stopped":
        return "Runs start cold: the warm worker has stopped."
    return ""


def start(store: Store, configs: list[RunConfig], server: int | None = None) -> None:
    """Start the warm worker for configs unless one is alive; it serves while process `server` (default: this one) runs."""
    if readiness(store).state not in ("", "failed", "stopped"):
        return
    server = os.getpid() if server is None else server
    args = [str(server), *(json.dumps(cfg.to_dict()) for cfg in configs)]
    try:
        proc = scheduler.spawn(store, "hierpoly.jobs.warmup", args, f"warm-{time.strftime('%Y%m%d-%H%M%S')}")
    except OSError as err:
        _write(store, {"state": "failed", "pid": None, "message": f"could not start it: {first_line(err)}"})
        return
    _write(store, {"state": "starting", "pid": proc.pid, "start": processes.process_start(proc.pid)}, only_new=True)


def _write(store: Store, fields: dict, only_new: bool = False) -> None:
    """Replace the row; only_new: unless the same process wrote it already (it may have said more)."""
    t = records.table(store)
    with t.transact():
        row = _row(t) or {}
        if only_new and (row.get("pid"), row.get("start")) == (fields["pid"], fields["start"]):
            return
        row = {"host": socket.gethostname(), "seconds": None, "message": "", "updated": time.time(), **fields}
        t.set(ROW, json.dumps(row))


def _record(store: Store, **fields) -> None:
    """The warm worker's own state, in its row (a row another live warm worker holds is left alone)."""
    t = records.table(store)
    me = os.getpid()
    with t.transact():
        row = _row(t) or {}
        other = row.get("pid")
        if isinstance(other, int) and other != me and processes.process_alive(other, row.get("start")):
            return
        row = row if other == me else {"seconds": None, "message": ""}  # a dead worker's words are not mine
        row.update(pid=me, start=processes.process_start(me), host=socket.gethostname(), updated=time.time(), **fields)
        t.set(ROW, json.dumps(row))


def warm_up(store: Store, configs: list[RunConfig]) -> bool:
    """Rehearse each config in this process, recording compiling, then ready or failed; True when ready."""
    from hierpoly.jobs import runner

    try:
        runner.use_compilation_cache()  # imports JAX
        _record(store, state="compiling")
        t0 = time.perf_counter()
        for cfg in configs:
            runner.execute(rehearsal(cfg))  # thrown away: only the compiled programs are kept
    except Exception as err:  # the app still runs, cold: the sidebar says why
        _record(store, state="failed", message=f"{type(err).__name__}: {first_line(err)}")
        return False
    _record(store, state="ready", seconds=time.perf_counter() - t0, message="")
    return True


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) < 2:
        print("usage: python -m hierpoly.jobs.warmup SERVER_PID CONFIG_JSON...", file=sys.stderr)
        return 2
    store = Store()
    server = int(argv[0])
    server_start = processes.process_start(server)
    if not warm_up(store, [RunConfig.from_dict(json.loads(text)) for text in argv[1:]]):
        return 1
    idle_s = worker.idle_seconds()
    serving = lambda: processes.process_alive(server, server_start)  # while the app runs, a class may click at any time
    worker.serve(store, worker.wait_for_work(store, idle_s, serving), idle_s, serving)
    return 0


if __name__ == "__main__":
    sys.exit(main())
