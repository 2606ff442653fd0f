"""The notebook API: one call per task, the same store, jobs and reports as the CLI and the app.

Every function takes ``store``: a ``Store``, a folder, or None for the default store ($HIERPOLY_CACHE_DIR, else
cache/store in a checkout, else the user's cache folder: ``hierpoly.locations``). A store opened here loads the
shipped bundles it lacks first, as the CLI and the app do (unless $HIERPOLY_LOAD_PRECOMPUTED is 0).

Training runs in background worker processes (``hierpoly.jobs``): this process never imports JAX for a run, and
no function here changes a process-wide setting, save where its docstring says so (``sweep`` with the inline
executor). The examples run on ``demo_store()``, the shipped results in a temporary store: no training.
"""
from __future__ import annotations

import atexit
import dataclasses
import shutil
import sys
import tempfile
import warnings
from pathlib import Path

from hierpoly.config import ConfigError, RunConfig
from hierpoly.results.codec import Result
from hierpoly.results.store import Store

POLL_S = 0.5  # how often a wait looks at the job table


class RunError(RuntimeError):
    """A run that ended without a result (failed, diverged or cancelled); the job's status and message say why.

    Example:
        >>> import hierpoly
        >>> str(hierpoly.RunError("diverged", "the loss became NaN at step 120"))
        'run diverged: the loss became NaN at step 120'
    """

    def __init__(self, status: str, message: str):
        super().__init__(f"run {status}: {message}")
        self.status, self.message = status, message


def _open(store: Store | str | Path | None = None) -> Store:
    """A Store from a Store, a folder or None (the default store), with the shipped bundles it lacks loaded."""
    store = store if isinstance(store, Store) else Store(store)
    from hierpoly.results import bundles
    from hierpoly.results.codec import StoreError

    try:
        bundles.load_precomputed(store)
    except (bundles.BundleError, StoreError) as err:  # what is stored still serves (a full disk, a bad bundle)
        warnings.warn(f"shipped results not loaded: {err}", stacklevel=3)
    return store


def load_shipped(store: Store | str | Path | None = None) -> list[str]:
    """Import the shipped results (Figure 2, the exponents, the transfers, the tour) that the store lacks.

    Always loads, whatever $HIERPOLY_LOAD_PRECOMPUTED says; each bundle is validated and goes in whole or not
    at all. Returns the keys added (none when everything was there).

    Example:
        >>> import hierpoly
        >>> store = hierpoly.demo_store()   # a fresh store, loaded with load_shipped
        >>> hierpoly.load_shipped(store)    # already there: nothing added
        []
    """
    from hierpoly.results import bundles

    store = store if isinstance(store, Store) else Store(store)
    return bundles.load_precomputed(store, bundles.PRECOMPUTED)


_demo: list[Store] = []


def demo_store() -> Store:
    """A temporary store holding the shipped results, to try the API on without touching your own store.

    The same store on every call in a process; its folder is deleted when the process exits (an ``atexit``
    handler, registered on the first call). The examples of this API use it, so they answer without training.

    Example:
        >>> import hierpoly
        >>> store = hierpoly.demo_store()
        >>> store is hierpoly.demo_store(), len(store) > 1000
        (True, True)
    """
    if not _demo:
        folder = tempfile.mkdtemp(prefix="hierpoly-demo-")
        atexit.register(shutil.rmtree, folder, ignore_errors=True)
        store = Store(folder)
        load_shipped(store)
        _demo.append(store)
    return _demo[0]


def _config(config: RunConfig | None, settings: dict) -> RunConfig:
    fields = [f.name for f in dataclasses.fields(RunConfig)]
    unknown = sorted(set(settings) - set(fields))
    if unknown:
        raise ConfigError(f"no setting {', '.join(unknown)}; a run's settings: {', '.join(fields)}")
    if config is None:
        return RunConfig(**settings)
    if not isinstance(config, RunConfig):
        raise TypeError(f"config must be a RunConfig, got {type(config).__name__}")
    return dataclasses.replace(config, **settings) if settings else config


class JobHandle:
    """A submitted run: its job in the background workers, its config and store; ``wait()`` gives its Result.

    Example:
        >>> import hierpoly
        >>> store = hierpoly.demo_store()
        >>> handle = hierpoly.run(d=8, n=4096, store=store, wait=False)   # shipped: done at once
        >>> handle.job.status, handle.job.message
        ('done', 'already in the store')
        >>> round(handle.wait().metrics["feature_corr"], 4)
        0.9991
    """

    def __init__(self, job_id: str, config: RunConfig, store: Store):
        self.job_id, self.config, self.store = job_id, config, store

    def __repr__(self) -> str:
        return f"JobHandle({self.job_id}: {self.job.status}, key {self.config.key()[:12]})"

    @property
    def job(self):
        """The job as it stands now (``hierpoly.jobs.records.Job``: status, message, progress rows)."""
        from hierpoly.jobs import records

        job = records.get(self.job_id, self.store)
        if job is None:
            raise KeyError(f"no job {self.job_id} in the store at {self.store.directory}")
        return job

    def cancel(self) -> bool:
        """Stop the run (queued: never starts; running: stops at its next chunk). False when it had finished."""
        from hierpoly.jobs import scheduler

        return scheduler.cancel(self.job_id, self.store)

    def wait(self, progress: bool = True, timeout: float | None = None) -> Result:
        """Wait for the run and return its stored Result; a progress bar (tqdm.auto: terminal or Jupyter) while it
        trains. Ctrl-C (interrupting the kernel) stops waiting, not the run: call ``wait`` again or ``cancel``.

        Raises:
            RunError when the run ended without a result; TimeoutError after ``timeout`` seconds.
        """
        from hierpoly.jobs import scheduler

        job = self.job
        bar = None if job.finished or not progress else _Bar(job.total_steps)
        try:
            job = scheduler.wait(self.job_id, timeout=timeout, poll=POLL_S, store=self.store,
                            on_update=None if bar is None else bar.update)
        finally:
            if bar is not None:
                bar.close()
        if not job.finished:
            raise TimeoutError(f"job {self.job_id} still {job.status} after {timeout} s: it goes on in the background")
        result = self.store.get(self.config.key()) if job.status == "done" else None
        if result is None:
            raise RunError(job.status, job.message if job.status != "done" else "its result is not in the store")
        return result


class _Bar:
    """A job's steps as a tqdm.auto bar: a widget in Jupyter, text on stderr in a terminal."""

    def __init__(self, total: int):
        from tqdm.auto import tqdm

        self.bar = tqdm(total=total, unit="step", file=sys.stderr, mininterval=0.5, dynamic_ncols=True)

    def update(self, job) -> None:
        row = job.last
        if row is None:
            self.bar.set_description(job.status if job.status != "queued" else f"queued ({job.message})")
            return
        self.bar.update(max(0, row.step - self.bar.n))
        self.bar.set_description(row.phase if not row.is_history else "training")
        if row.is_history:
            self.bar.set_postfix(test_loss=f"{row.test_loss:.4f}", corr=f"{row.feature_corr:.3f}", refresh=False)

    def close(self) -> None:
        self.bar.close()


def run(config: RunConfig | None = None, /, *, store: Store | str | Path | None = None, wait: bool = True,
        progress: bool = True, **settings) -> Result | JobHandle:
    """Train one config in a background worker and return its stored Result; a stored config answers at once.

    Args:
        config: a RunConfig; or leave it out and give its fields as keywords (``run(d=6, n=864)``); keywords
            given with a config replace those fields.
        store: where results live (see the module docstring); the result is stored there, under its config's key.
        wait: False returns a JobHandle at once (``.wait()`` for the Result, ``.cancel()`` to stop it).
        progress: show a progress bar while it trains (tqdm.auto).
    Returns:
        the Result: metrics, curves (``history``), samples of p, g, h, its meta; ``params`` holds the trained
        parameters it keeps (the first block of a three-layer run; see ``Result.params``).
    Raises:
        ConfigError for a bad setting, BudgetError for a run this machine cannot hold, RunError when it fails.

    Example (a shipped run, answered from the store; ``run(d=6, n=864, m2=200, steps=300)`` trains one in
    about half a minute):
        >>> import hierpoly
        >>> store = hierpoly.demo_store()
        >>> r = hierpoly.run(d=8, n=4096, seed=0, store=store)
        >>> r.config.d, r.config.n, r.meta["stopped_by"], round(r.metrics["feature_corr"], 4)
        (8, 4096, 'feature settled', 0.9991)
        >>> hierpoly.run(d=0, n=10, store=store)
        Traceback (most recent call last):
        ...
        hierpoly.config.ConfigError: d must be between 1 and 4096, got 0
        >>> hierpoly.run(d=6, samples=864, store=store)
        Traceback (most recent call last):
        ...
        hierpoly.config.ConfigError: no setting samples; a run's settings: d, n, k, link, sigma1, m1, m2, arch, mode, steps, lr, weight_decay, steps2, lr2, weight_decay2, tol, patience, lr_drops, lr_decay, feature_tol, b_scale, seed, n_test, n_eval, source
    """
    from hierpoly.jobs import scheduler

    cfg = _config(config, settings)
    store = _open(store)
    handle = JobHandle(scheduler.submit(cfg, store), cfg, store)
    return handle.wait(progress=progress) if wait else handle


def stored(store: Store | str | Path | None = None, **filters):
    """The store's runs as a DataFrame, one row per run (config, metrics, how it stopped), filtered by column.

    A filter is a value (``d=8``) or a list of values (``arch=["kernel", "two_layer"]``).

    Example:
        >>> import hierpoly
        >>> store = hierpoly.demo_store()
        >>> table = hierpoly.stored(store, d=8, n=4096, arch="three_layer", link="cubic")
        >>> sorted(table["seed"])
        [0, 1, 2]
        >>> hierpoly.stored(store, width=3)
        Traceback (most recent call last):
        ...
        ValueError: no column 'width' to filter on; the columns: key, d, n, k, link, sigma1, m1, m2, arch, mode, seed, steps, lr, n_test, status, test_loss, test_loss_se, mean_h2, feature_corr, train_loss, steps_run, stopped_by, converged, seconds, created, source
    """
    table = _open(store).summaries()
    for name, wanted in filters.items():
        if name not in table.columns:
            raise ValueError(f"no column {name!r} to filter on; the columns: {', '.join(table.columns)}")
        values = list(wanted) if isinstance(wanted, (list, tuple, set)) else [wanted]
        table = table[table[name].isin(values)]
    return table.reset_index(drop=True)


def grid(ds, ns=None, multiples=None, seeds: int = 1, baselines: bool = True, **options):
    """A Figure 2 grid of your own (a ``SweepSpec``): d values and either n values or multiples of d^k.

    Other fields as keywords: k, link, sigma1, mode, m1, m2, steps, n_test, n_eval. ``sweep`` runs it,
    ``figure2`` reports it.

    Example:
        >>> import hierpoly
        >>> spec = hierpoly.grid(ds=(4, 6), multiples=(2, 8), k=2, baselines=False)
        >>> spec.cells()
        [(4, 32), (4, 128), (6, 72), (6, 288)]
    """
    from hierpoly.study import specs

    return specs.custom(ds, ns=ns, multiples=multiples, seeds=seeds, baselines=baselines, **options)


def _spec(preset):
    from hierpoly.study import presets

    return presets.preset(preset) if isinstance(preset, str) else preset


def sweep(preset="tiny", store: Store | str | Path | None = None, executor="local", progress: bool = True):
    """Run a grid's configs that are not stored yet (a rerun is a no-op); one row per config as a DataFrame.

    Args:
        preset: a preset name (tiny, cpu, paper, exponents) or a grid (``grid(...)``).
        executor: ``local`` (background workers), ``ray`` (a Ray cluster, see the README) or an executor
            object such as ``hierpoly.jobs.cluster.RayExecutor(address=...)``. ``inline`` trains in this
            process and so points JAX's persistent compilation cache (a process-wide JAX setting) at
            $HIERPOLY_XLA_CACHE_DIR, else the default store's xla/ folder.
    Example (every run of this tiny grid is shipped):
        >>> import hierpoly
        >>> store = hierpoly.demo_store()
        >>> rows = hierpoly.sweep(hierpoly.grid(ds=(8,), ns=(4096,), seeds=3, baselines=False), store, progress=False)
        >>> rows[["seed", "status", "cached"]].to_dict("list")
        {'seed': [0, 1, 2], 'status': ['done', 'done', 'done'], 'cached': [True, True, True]}
    """
    import pandas as pd

    from hierpoly.study.sweep import run_sweep

    store = _open(store)
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=None, unit="run", file=sys.stderr, dynamic_ncols=True)

    def report(p) -> None:
        if bar is not None:
            bar.total = p.total
            bar.update(p.done - bar.n)
            bar.set_postfix_str(p.running or "", refresh=True)

    try:
        rows = run_sweep(_spec(preset), executor, store, on_progress=report)
    finally:
        if bar is not None:
            bar.close()
    return pd.DataFrame(rows)


class Figure2:
    """Figure 2 of a grid from the store (``study.figure2.Figure2Report``, whose fields it gives): ``table`` (one
    row per (d, n), baselines beside the network), ``cells``, ``runs``, ``kappa`` (κ, its interval and readings),
    ``coverage``, ``short`` (cells lacking seeds), ``to_json()``; and ``figure()``, the plotly figure.

    Example:
        >>> import hierpoly
        >>> rep = hierpoly.figure2("cpu", hierpoly.demo_store())
        >>> rep
        Figure2(cpu: 40 cells, d = 8, 12, 16, 20, 24, 32; d = 32 at 5 of 7 n; κ = 2.54 [2.37, 2.72] at corr ≥ 0.9, median over seeds)
        >>> type(rep.figure()).__name__
        'Figure'
    """

    def __init__(self, report):
        self.report = report

    def __getattr__(self, name: str):
        if name == "report":  # not set yet (unpickling, copying)
            raise AttributeError(name)
        return getattr(self.report, name)

    def __dir__(self):
        return sorted({*super().__dir__(), *(f.name for f in dataclasses.fields(self.report)), "short", "to_json"})

    def __repr__(self) -> str:
        from hierpoly.study import specs

        k, ds = self.kappa, specs.ds_text(sorted({int(d) for d in self.table["d"]}), self.spec.ds,
                                            specs.n_counts(self.spec, self.table))
        kappa = (f"κ = {k['estimate']:.2f} [{k['low']:.2f}, {k['high']:.2f}]" if k.get("low") is not None
                 else f"κ = {k['estimate']:.2f}" if k.get("estimate") is not None else f"no κ: {k.get('reason')}")
        where = f"at corr ≥ {self.threshold:g}" if k.get("criterion") == "feature_corr" else f"at {k.get('criterion')}"
        return f"Figure2({self.spec.name}: {len(self.table)} cells, {ds}; {kappa} {where}, {k.get('statistic')} over seeds)"

    def figure(self, x: str = "n_over_dk", show=("kernel", "two_layer")):
        """The plotly figure: test loss and feature correlation against ``x`` (``n`` or ``n_over_dk``, the collapse)."""
        from hierpoly.views import plots

        return plots.figure2(self.cells, x=x, k=self.spec.k, runs=self.runs, show=show,
                             statistic=self.kappa.get("statistic") or "median")


def figure2(preset="cpu", store: Store | str | Path | None = None, threshold: float | None = None,
            statistic: str = "median") -> Figure2:
    """Figure 2 of a preset (``cpu``, ``paper``, ``tiny``) or a grid (``grid(...)``) from its stored runs.

    Nothing is trained: cells without runs are listed in ``coverage`` (``sweep`` fills them). ``threshold``: the
    feature correlation that counts as learned (default 0.9); ``statistic``: κ from the seeds' median or mean.
    Example: see ``Figure2``.
    """
    from hierpoly.study import cell_stats, specs
    from hierpoly.study import figure2 as study_figure2

    spec = _spec(preset)
    if isinstance(spec, specs.SweepFamily):
        raise ValueError(f"{spec.name!r} is a family of grids: exponents() reports it")
    rep = study_figure2.figure2_report(spec, _open(store), cell_stats.THRESHOLD if threshold is None else threshold,
                                       statistic=statistic)
    return Figure2(rep)


def exponents(preset="exponents", store: Store | str | Path | None = None, statistic: str = "median"):
    """The sample-complexity exponent κ of each target (n* ∝ d^κ) beside the theory's k and the kernel's kq.

    One row per target grid of the preset: k, q, link, κ with its bootstrap interval (``low``, ``high``) at each
    threshold and from the collapse, and a ``diagnosis`` where κ cannot be read.

    Example:
        >>> import hierpoly
        >>> store = hierpoly.demo_store()
        >>> table = hierpoly.exponents(store=store)
        >>> table[["k", "q", "kernel_kq"]].to_dict("list")
        {'k': [1, 1, 1, 2, 2, 2, 3], 'q': [2, 3, 4, 2, 3, 4, 3], 'kernel_kq': [2, 3, 4, 4, 6, 8, 9]}
    """
    from hierpoly.study import cell_stats
    from hierpoly.study import exponents as study_exponents
    from hierpoly.study import figure2 as study_figure2

    report, _ = study_figure2.figure2_json(_spec(preset), _open(store), cell_stats.THRESHOLD, statistic)
    return study_exponents.exponent_frame(report["exponents"])


def _source(source, store: Store) -> RunConfig:
    if isinstance(source, Result):
        return source.config
    if isinstance(source, RunConfig):
        return source
    prefix = str(source).strip().lower()
    found = [key for key in store.keys() if key.startswith(prefix)] if len(prefix) >= 4 else []
    if len(found) != 1:
        raise ValueError(f"source must be a Result, a RunConfig or a stored run's key (a unique prefix of at least "
                         f"4 hex digits); {len(found)} stored runs match {prefix!r}")
    return store.get(found[0]).config


def transfer(source, link: str = "quadratic", n: int = 256, seed: int = 0, mode: str = "joint",
             store: Store | str | Path | None = None, progress: bool = True) -> dict[str, Result]:
    """Reuse a stored run's learned feature for a new link h′ = g′ ∘ p from ``n`` samples, beside the network
    trained from scratch on h′ and the kernel baseline (all three stored; those already stored answer at once).

    Args:
        source: the three-layer run whose first block is frozen: a Result, a RunConfig or a stored key (prefix).
        link: the new link; n, seed: the fresh samples; mode: ``joint`` (Adam on a, b, c) or ``layerwise``.
    Returns:
        {"transfer": Result, "scratch": Result, "kernel": Result}.

    Example (a shipped comparison: d = 12, n = 4d³):
        >>> import hierpoly
        >>> store = hierpoly.demo_store()
        >>> out = hierpoly.transfer("c711be20", link="quadratic", n=256, store=store)
        >>> out["transfer"].metrics["test_loss"] < out["scratch"].metrics["test_loss"]
        True
    """
    from hierpoly.jobs import scheduler
    from hierpoly.study.transfer import transfer_runs

    store = _open(store)
    cfgs = transfer_runs(_source(source, store), link, n, seed, mode=mode)
    handles = {role: JobHandle(scheduler.submit(cfg, store), cfg, store) for role, cfg in cfgs.items()}
    return {role: handle.wait(progress=progress) for role, handle in handles.items()}
