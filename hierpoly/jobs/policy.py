"""Where the app runs and what a web visitor may launch: ``HIERPOLY_MODE``.

    local      one's own machine (the default): the web app launches what the
               machine's budget allows (budget.py), as the CLI does; everything
               else too: cancel any job, delete, import
    classroom  a machine a class can reach: run within the budget, cancel only
               one's own jobs, browse, download. Each web-launched run must fit a
               small budget of estimated CPU seconds (the layer-wise eigen-solves
               included) and width caps; each visitor may have a few runs queued
               or running, and the whole queue is capped; a locked link made on the
               Learn page carries an HMAC signature of its config and launches only
               while the signature matches
    gallery    read-only: browse, compare, download and replay stored and shipped
               results; nothing can be launched, cancelled, deleted or imported

The functions here (``submit_from_web``, ``cancel_from_web``, ``delete_from_web``,
``import_from_web``) are what the pages call, and they enforce the mode whatever a
page shows. A visitor is the client's network address when Streamlit knows it (a
new tab or a reload is the same visitor), else the browser session.

The CLI is the operator's tool and keeps the machine's own, larger budget. The
signing secret is a random file in the store directory (``secret.key``, mode 0600),
so links stay valid across restarts and never leave the server.
"""
from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from dataclasses import dataclass

from hierpoly import settings
from hierpoly.config import RunConfig
from hierpoly.jobs import pace, records, scheduler
from hierpoly.jobs.budget import BudgetError, check_budget
from hierpoly.results import bundles
from hierpoly.results.store import Store

MODES = ("local", "classroom", "gallery")
# what a web visitor may do in each mode; browse and download are never refused
ALLOWED = {
    "local": {"run", "cancel any job", "cancel own jobs", "delete", "import"},
    "classroom": {"run", "cancel own jobs"},
    "gallery": set(),
}
SIGNATURE_PARAM = "sig"  # the URL parameter of a locked link's signature
SECRET_BYTES = 32


class PolicyError(BudgetError):
    """A launch refused by the mode the app runs in, with a one-line reason."""


REFUSALS = (PolicyError, scheduler.QueueFull, BudgetError)  # every reason a web launch is refused


@dataclass(frozen=True)
class ClassroomLimits:
    """What a classroom visitor may launch."""

    seconds_per_run: float  # estimated CPU seconds of one unlocked run
    per_visitor: int  # runs queued or running per visitor (network address, else browser session)
    queue: int  # runs queued or running in all
    max_width: int  # m1 and m2 at most: the eigen-solves and memory grow with m³ and m²


def current_mode() -> str:
    """$HIERPOLY_MODE: local (default), classroom or gallery."""
    value = settings.text("HIERPOLY_MODE").strip().lower() or "local"
    if value not in MODES:
        raise PolicyError(f"HIERPOLY_MODE must be one of {', '.join(MODES)}, got {value!r}")
    return value


def _env_number(name: str, integer: bool = False) -> float:
    text = settings.text(name)
    try:
        value = int(text) if integer else float(text)
    except ValueError:
        raise PolicyError(f"{name} must be a {'whole ' if integer else ''}number, got {text!r}") from None
    if not value > 0:
        raise PolicyError(f"{name} must be positive, got {text!r}")
    return value


def classroom_limits() -> ClassroomLimits:
    """From $HIERPOLY_CLASSROOM_SECONDS, $HIERPOLY_VISITOR_JOBS, $HIERPOLY_QUEUE_LIMIT and
    $HIERPOLY_CLASSROOM_MAX_WIDTH (defaults in settings.py)."""
    return ClassroomLimits(
        seconds_per_run=_env_number("HIERPOLY_CLASSROOM_SECONDS"),
        per_visitor=int(_env_number("HIERPOLY_VISITOR_JOBS", integer=True)),
        queue=int(_env_number("HIERPOLY_QUEUE_LIMIT", integer=True)),
        max_width=int(_env_number("HIERPOLY_CLASSROOM_MAX_WIDTH", integer=True)),
    )


def allows(action: str, mode: str | None = None) -> bool:
    """Whether a web visitor may do `action` (run, cancel any job, cancel own jobs, delete, import) in the mode."""
    return action in ALLOWED[mode or current_mode()]


def require(action: str, mode: str | None = None) -> None:
    """PolicyError unless the mode lets a web visitor do `action`."""
    mode = mode or current_mode()
    if not allows(action, mode):
        raise PolicyError(f"in {mode} mode (HIERPOLY_MODE={mode}) a visitor may not {action}: "
                          f"this explorer allows {_allowed_text(mode)}")


def _allowed_text(mode: str) -> str:
    doing = {"run": "running", "cancel any job": "cancelling jobs", "cancel own jobs": "cancelling one's own jobs",
             "delete": "deleting", "import": "importing"}
    actions = [doing[a] for a in ("run", "cancel any job", "cancel own jobs", "delete", "import") if a in ALLOWED[mode]]
    if "cancelling jobs" in actions:
        actions.remove("cancelling one's own jobs")
    return ", ".join(["browsing", "downloading", *actions])


def estimated_seconds(cfg: RunConfig, summaries=None) -> float:
    """Wall seconds of a run at this machine's measured pace (``pace.estimate``): what the pages say too."""
    return pace.estimate(cfg, summaries).seconds


def _secret(store: Store) -> bytes:
    """The store's signing secret, made once (O_EXCL: concurrent first calls agree on one)."""
    path = store.directory / "secret.key"
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        pass
    except OSError as err:
        raise PolicyError(f"cannot create the signing secret in {store.directory}: {err.strerror or err}") from None
    else:
        with os.fdopen(fd, "w") as fh:
            fh.write(secrets.token_hex(SECRET_BYTES))
    try:
        text = path.read_text().strip()
    except OSError as err:
        raise PolicyError(f"cannot read the signing secret {path}: {err.strerror or err}") from None
    if len(text) < 2 * SECRET_BYTES:
        raise PolicyError(f"the signing secret {path} is damaged: delete it (locked links made so far stop working)")
    return text.encode()


def sign(cfg: RunConfig, store: Store) -> str:
    """The signature of a locked link: HMAC-SHA256 of the config's key with the store's secret."""
    return hmac.new(_secret(store), cfg.key().encode(), hashlib.sha256).hexdigest()[:32]


def signature_matches(cfg: RunConfig, signature: str | None, store: Store) -> bool:
    return isinstance(signature, str) and hmac.compare_digest(sign(cfg, store), signature.strip().lower())


def web_limits(cfg: RunConfig, store: Store, *, locked: bool = False, signature: str | None = None,
               mode: str | None = None) -> scheduler.QueueLimits | None:
    """The queue limits a web launch of cfg runs under; PolicyError when the mode refuses it.

    Args:
        cfg: the config to launch.
        store: the store (holds the signing secret).
        locked: the page was opened from a locked link.
        signature: that link's signature.
        mode: default ``current_mode()``.
    """
    mode = mode or current_mode()
    if mode == "gallery":
        raise PolicyError("this explorer is a gallery (HIERPOLY_MODE=gallery): it shows stored results; "
                          "nothing can be launched from the web")
    if mode == "local":
        return None
    limits = classroom_limits()
    widest = max(cfg.m1, cfg.m2)
    if widest > limits.max_width:
        raise PolicyError(f"in classroom mode m1 and m2 may be at most {limits.max_width} "
                          f"(HIERPOLY_CLASSROOM_MAX_WIDTH), this run has m1 = {cfg.m1}, m2 = {cfg.m2}")
    if locked and not signature_matches(cfg, signature, store):
        raise PolicyError("this locked link was changed after it was made (its signature does not match): "
                          "open the link your teacher gave you again")
    if not locked:
        seconds = estimated_seconds(cfg, store.summaries())
        if seconds > limits.seconds_per_run:
            raise PolicyError(f"this run takes about {_duration(seconds)} here; in classroom mode a run may use "
                              f"{_duration(limits.seconds_per_run)}: lower n, d, m1, m2 or steps")
    return scheduler.QueueLimits(total=limits.queue, per_owner=limits.per_visitor)


def submit_from_web(cfg: RunConfig, store: Store, visitor: str, *, locked: bool = False,
                    signature: str | None = None) -> str:
    """Launch cfg for a web visitor under the mode's rules; returns the job id.

    Raises one of REFUSALS with a one-line reason.
    """
    limits = web_limits(cfg, store, locked=locked, signature=signature)
    return scheduler.submit(cfg, store, owner=visitor, limits=limits)


def launch_refusal(cfg: RunConfig, store: Store, visitor: str, *, locked: bool = False,
                   signature: str | None = None) -> str | None:
    """Why ``submit_from_web`` would refuse cfg for this visitor now, or None: the page disables Run and says why.

    A config already stored or already live is never refused (the store or the shared job serves it).
    """
    if store.has(cfg.key()):
        return None
    try:
        limits = web_limits(cfg, store, locked=locked, signature=signature)
        check_budget(cfg)
        live = records.live_jobs(store)
    except REFUSALS as err:
        return str(err)
    if any(job.key == cfg.key() for job in live) or limits is None:
        return None
    return scheduler.limits_refusal([job.owner for job in live], visitor, limits)


def may_cancel(job: records.Job, visitor: str, mode: str | None = None) -> bool:
    """Whether this visitor may cancel this job: any job in local mode, their own in classroom mode."""
    mode = mode or current_mode()
    return allows("cancel any job", mode) or (allows("cancel own jobs", mode) and job.owner == visitor)


def cancel_from_web(job_id: str, store: Store, visitor: str, mode: str | None = None) -> bool:
    """Cancel a job for a web visitor under the mode's rules; False if it already ended. PolicyError if refused."""
    mode = mode or current_mode()
    job = records.get(job_id, store)
    if job is None:
        return False
    if not may_cancel(job, visitor, mode):
        require("cancel own jobs", mode)
        raise PolicyError(f"in {mode} mode a visitor may cancel only the runs they started; this one is someone else's")
    return scheduler.cancel(job_id, store)


def delete_from_web(store: Store, keys: list[str], mode: str | None = None) -> int:
    """Delete stored results for a web visitor (local mode only); returns how many were deleted."""
    require("delete", mode)
    return sum(store.delete(key) for key in keys)


def import_from_web(store: Store, data: bytes, mode: str | None = None) -> list[str]:
    """Import a bundle for a web visitor (local mode only); never replaces a stored result (bundles.import_bundle)."""
    require("import", mode)
    return bundles.import_bundle(store, data)


def can_launch(mode: str | None = None) -> bool:
    """Whether the web app may start runs (not in a gallery)."""
    return allows("run", mode)


def describe(mode: str | None = None) -> str:
    """One line for the sidebar: the mode and what it allows."""
    mode = mode or current_mode()
    if mode == "gallery":
        return "Gallery mode: browse, compare and download stored results; nothing is launched here."
    if mode == "classroom":
        limits = classroom_limits()
        return (f"Classroom mode: each run may take about {_duration(limits.seconds_per_run)} here and use widths up to "
                f"{limits.max_width}; at most {limits.per_visitor} runs per visitor and {limits.queue} in all, queued "
                "or running. Visitors browse, download, run and cancel their own runs.")
    return "Local mode: runs are limited only by this machine's memory and work budget."


def _duration(seconds: float) -> str:
    return pace.format_seconds(seconds)
