"""Plotly figure builders shared by the app and the CLI.

Every builder takes plain data (DataFrames, dicts of numpy arrays, small
dataclasses) and returns a ``plotly.graph_objects.Figure``; nothing here
computes science or reads the store (compute in one place, plot in
another). Importing this module does not import JAX.
"""
from __future__ import annotations

import base64
import math
from collections.abc import Mapping

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from hierpoly.views.monitor import format_loss

PALETTE = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#17becf", "#8c564b", "#e377c2")
TEMPLATE = "plotly_white"
# Toolbar: PNG by default, SVG via the config the pages pass to st.plotly_chart.
CHART_CONFIG = {"displaylogo": False, "toImageButtonOptions": {"format": "svg", "scale": 2}}


LOG2_DTICK = float(np.log10(2))  # log-axis ticks at powers of two (n/d^k = 2^j)


TITLE_CHARS = 48  # a title line that fits a half-width chart at a projector's 1024 px; longer titles wrap


def wrap_title(title: str, width: int = TITLE_CHARS) -> list[str]:
    """The title's lines, broken between words so none is longer than `width` (a longer word stands alone)."""
    lines: list[str] = []
    for word in title.split(" "):
        if lines and len(lines[-1]) + 1 + len(word) <= width:
            lines[-1] += " " + word
        else:
            lines.append(word)
    return lines


def _layout(fig: go.Figure, title: str, height: int = 360) -> go.Figure:
    # the legend sits under the x-axis title, so it never runs into the chart's title at projector widths;
    # plotly never wraps a title (it is clipped at the chart's edge), so long ones are broken into lines here
    lines = wrap_title(title)
    fig.update_layout(
        title=dict(text="<br>".join(lines), x=0.0, xanchor="left"), template=TEMPLATE, height=height + 22 * (len(lines) - 1),
        margin=dict(l=55, r=20, t=50 + 22 * (len(lines) - 1), b=85),
        legend=dict(orientation="h", yanchor="top", y=-0.22, xanchor="left", x=0.0),
    )
    return fig


def log_ticks(values) -> dict:
    """Ticks for a log axis over `values`, each labelled in full ('0.02', '500', '1e-05'), never a bare
    mantissa ('5', '2') without its decade as plotly's own minor labels read: 1, 2, 5 per decade over up to
    two decades, powers of ten beyond. {} when no value is positive and finite."""
    flat = np.asarray(values, dtype=float).ravel()
    flat = flat[np.isfinite(flat) & (flat > 0)]
    if not len(flat):
        return {}
    low, high = math.floor(math.log10(flat.min())), math.ceil(math.log10(flat.max()))
    steps = (1, 2, 5) if high - low <= 2 else (1,)
    every = max(1, math.ceil((high - low) / 8))  # at most about eight labels
    ticks = [m * 10.0 ** e for e in range(low, high + 1, every if steps == (1,) else 1) for m in steps]
    return dict(tickvals=ticks, ticktext=[f"{t:,.6g}" if 1e-3 <= t < 1e6 else f"{t:.0e}" for t in ticks])


def d_colors(ds) -> dict:
    """One colour per d, the same in every panel and for every model of that d."""
    return {d: PALETTE[i % len(PALETTE)] for i, d in enumerate(sorted({int(d) for d in ds}))}


def _rgba(hex_color: str, alpha: float) -> str:
    r, g, b = (int(hex_color[i : i + 2], 16) for i in (1, 3, 5))
    return f"rgba({r},{g},{b},{alpha})"


# ----------------------------------------------------------------- one run
def loss_figure(history: pd.DataFrame, title: str = "Loss during training") -> go.Figure:
    """Train and test loss against step, log y (history columns: step, train_loss, test_loss)."""
    fig = go.Figure()
    labels = {"train_loss": "train loss", "test_loss": "test loss (monitor points ÷ their mean h²)"}
    for name, color in (("train_loss", PALETTE[0]), ("test_loss", PALETTE[1])):
        if name in history and len(history):
            y = history[name].to_numpy(dtype=float)
            fig.add_scatter(x=history["step"], y=np.where(y > 0, y, np.nan), name=labels[name],
                            mode="lines+markers", line=dict(color=color), marker=dict(size=4))
    fig.update_yaxes(type="log", title="square loss", **log_ticks(history[[c for c in ("train_loss", "test_loss")
                                                                           if c in history]].to_numpy()))
    fig.update_xaxes(title="step")
    return _layout(fig, title)


def corr_figure(history: pd.DataFrame, title: str = "Feature correlation corr(g, p)") -> go.Figure:
    """Pearson correlation of the learned feature with p against step."""
    fig = go.Figure()
    if "feature_corr" in history and len(history):
        fig.add_scatter(x=history["step"], y=history["feature_corr"], name="feature corr", mode="lines+markers",
                        line=dict(color=PALETTE[2]), marker=dict(size=4))
    fig.update_yaxes(title="corr(g, p)", range=[-1.05, 1.05])
    fig.update_xaxes(title="step")
    return _layout(fig, title)


def feature_scatter(samples: Mapping[str, np.ndarray], corr: float | None = None) -> go.Figure:
    """The learned feature g_{u,s,V}(x) against the true feature p(x) on test points."""
    p, g = np.asarray(samples["p"]), np.asarray(samples["g"])
    if corr is None:
        corr = float(np.corrcoef(p, g)[0, 1]) if len(p) > 1 and p.std() > 0 and g.std() > 0 else 0.0
    fig = go.Figure(go.Scattergl(x=p, y=g, mode="markers", marker=dict(size=4, color=PALETTE[0], opacity=0.5),
                                 name="test points"))
    fig.update_xaxes(title="true feature p(x)")
    fig.update_yaxes(title="learned feature g(x)")
    return _layout(fig, f"Learned feature vs p(x): corr = {corr:.3f}")


def snapshot_figure(snapshot) -> go.Figure:
    """The learned feature against p on the sample points at one step, both standardised.

    Standardising makes the picture independent of g's scale, which changes a lot
    while training: a learned feature puts the points on the diagonal (up to sign).
    """
    p, g = np.asarray(snapshot.p, float), np.asarray(snapshot.g, float)
    ok = np.isfinite(g)
    p_std = (p - p.mean()) / (p.std() or 1.0)
    g_std = np.where(ok, (g - np.nanmean(g)) / (np.nanstd(g) or 1.0), np.nan)
    corr = snapshot.corr
    reach = float(np.nanmax(np.abs(p_std))) * 1.05 if len(p) else 1.0
    fig = go.Figure(go.Scatter(x=p_std, y=g_std, mode="markers", name="sample points",
                                 marker=dict(size=5, color=PALETTE[0], opacity=0.6)))
    sign = 1.0 if corr >= 0 else -1.0
    fig.add_scatter(x=[-reach, reach], y=[-sign * reach, sign * reach], mode="lines", name="g = ±p (learned)",
                    line=dict(color="gray", dash="dash"))
    fig.update_xaxes(title="true feature p(x), standardised", range=[-reach, reach])
    fig.update_yaxes(title="learned feature g(x), standardised", range=[-reach, reach])
    return _layout(fig, snapshot_title(snapshot), height=380)


def snapshot_title(snapshot) -> str:
    """'Step 1,200: corr(g, p) = 0.412': the live and the replayed scatter's title alike."""
    return f"Step {snapshot.step:,}: corr(g, p) = {snapshot.corr:.3f}"


def snapshot_svg(snapshot, size: int = 360) -> str:
    """``snapshot_figure``'s picture as a small self-contained SVG: the points, the diagonal g = ±p, the axes.

    For the replay of a run that trained faster than a page redraws: it shows at once, with no charting
    library to load first (plotly's takes seconds on a busy classroom machine, longer than such a replay).
    """
    p, g = np.asarray(snapshot.p, float), np.asarray(snapshot.g, float)
    ok = np.isfinite(g)
    p_std = (p - p.mean()) / (p.std() or 1.0)
    g_std = (g - np.nanmean(g)) / (np.nanstd(g) or 1.0)
    reach = float(np.nanmax(np.abs(p_std))) * 1.05 if len(p) else 1.0
    pad, span = 30, size - 40

    def to_px(x, y):
        return pad + (x + reach) / (2 * reach) * span, 10 + (reach - y) / (2 * reach) * span

    dots = "".join('<circle cx="{:.1f}" cy="{:.1f}" r="2.5"/>'.format(*to_px(x, y))
                   for x, y in zip(p_std[ok], np.clip(g_std[ok], -reach, reach), strict=True))
    sign = 1.0 if snapshot.corr >= 0 else -1.0
    (x0, y0), (x1, y1) = to_px(-reach, -sign * reach), to_px(reach, sign * reach)
    return (f'<svg xmlns="http://www.w3.org/2000/svg" width="{size}" height="{size}" viewBox="0 0 {size} {size}">'
            f'<rect x="{pad}" y="10" width="{span}" height="{span}" fill="white" stroke="#ccc"/>'
            f'<line x1="{x0:.1f}" y1="{y0:.1f}" x2="{x1:.1f}" y2="{y1:.1f}" stroke="gray" stroke-dasharray="5,4"/>'
            f'<g fill="{PALETTE[0]}" fill-opacity="0.6">{dots}</g>'
            f'<text x="{pad + span / 2}" y="{size - 8}" text-anchor="middle" font-size="12" font-family="sans-serif">true feature p(x)</text>'
            f'<text x="12" y="{10 + span / 2}" text-anchor="middle" font-size="12" font-family="sans-serif" '
            f'transform="rotate(-90 12 {10 + span / 2})">learned feature g(x)</text></svg>')


def _base64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def frame_html(snapshot) -> str:
    """One snapshot as an HTML figure: an image with its SVG inline (a data URI; HTML sanitisers drop inline <svg>)
    and its title as the caption."""
    return (f'<figure style="margin:0"><img alt="" src="data:image/svg+xml;base64,{_base64(snapshot_svg(snapshot))}">'
            f'<figcaption>replay · {snapshot_title(snapshot)}</figcaption></figure>')


def prediction_scatter(samples: Mapping[str, np.ndarray], test_loss: float | None = None) -> go.Figure:
    """The prediction h_θ(x) against the target h(x), with the diagonal."""
    h, pred = np.asarray(samples["h"]), np.asarray(samples["h_pred"])
    fig = go.Figure(go.Scattergl(x=h, y=pred, mode="markers", marker=dict(size=4, color=PALETTE[1], opacity=0.5),
                                 name="test points"))
    if len(h):
        lo, hi = float(min(h.min(), pred.min())), float(max(h.max(), pred.max()))
        fig.add_scatter(x=[lo, hi], y=[lo, hi], mode="lines", name="h_θ = h", line=dict(color="gray", dash="dash"))
    fig.update_xaxes(title="target h(x)")
    fig.update_yaxes(title="prediction h_θ(x)")
    title = "Prediction vs target" + (f": test loss = {format_loss(test_loss)}" if test_loss is not None else "")
    return _layout(fig, title)


def link_figure(samples: Mapping[str, np.ndarray], curve: pd.DataFrame, alpha: float, beta: float) -> go.Figure:
    """The learned link (h_θ against g) and the true link on the same scale (curve columns: g, h_true)."""
    g, pred = np.asarray(samples["g"]), np.asarray(samples["h_pred"])
    fig = go.Figure(go.Scattergl(x=g, y=pred, mode="markers", name="learned: h_θ(x) vs g(x)",
                                 marker=dict(size=4, color=PALETTE[3], opacity=0.5)))
    fig.add_scatter(x=curve["g"], y=curve["h_true"], mode="lines", name="true link C·poly((g−β)/α)",
                    line=dict(color="black", width=2))
    fig.update_xaxes(title="learned feature g(x)")
    fig.update_yaxes(title="output")
    return _layout(fig, f"Learned link vs true link (g ≈ {affine(alpha, beta)})")


def affine(alpha: float, beta: float, var: str = "p") -> str:
    """'0.036·p − 0.005': an affine map written with its sign."""
    return f"{alpha:.3g}·{var} {'−' if beta < 0 else '+'} {abs(beta):.3g}"


def overlay_figure(histories: Mapping[str, pd.DataFrame], metric: str) -> go.Figure:
    """One curve per run of `metric` against step (log y for losses)."""
    fig = go.Figure()
    for i, (label, hist) in enumerate(histories.items()):
        if metric in hist and len(hist):
            # every run named in the legend, even alone; a one-row history (a kernel fit) is a marker
            fig.add_scatter(x=hist["step"], y=hist[metric], name=label, mode="lines" if len(hist) > 1 else "markers",
                            line=dict(color=PALETTE[i % len(PALETTE)]), marker=dict(color=PALETTE[i % len(PALETTE)]),
                            showlegend=True)
    if metric.endswith("loss"):
        values = [hist[metric].to_numpy(dtype=float) for hist in histories.values() if metric in hist]
        fig.update_yaxes(type="log", **log_ticks(np.concatenate(values) if values else []))
    fig.update_yaxes(title=metric.replace("_", " "))
    fig.update_xaxes(title="step")
    return _layout(fig, f"{metric.replace('_', ' ')} of the selected runs", height=420)


# ---------------------------------------------------------------- Figure 2
BASELINE_DASH = {"kernel": "dot", "two_layer": "dash"}
BASELINE_NAMES = {"kernel": "kernel baseline", "two_layer": "two-layer baseline"}


STATISTIC_NAMES = {"median": "median over seeds, band min–max", "mean": "mean over seeds ± its standard error, band min–max"}


def figure2(cells: pd.DataFrame, x: str = "n", k: int = 3, baselines: pd.DataFrame | None = None,
            runs: pd.DataFrame | None = None, show=("kernel", "two_layer"), statistic: str = "median") -> go.Figure:
    """Figure 2: test loss and feature correlation against n, one colour per d, the seeds' min–max as a band.

    Args:
        cells: one row per (d, n) with d, n, n_over_dk, seeds and ``{metric}_{statistic, min, max}`` for
            test_loss and feature_corr (``cell_stats.aggregate``); with an ``arch`` column its non-network
            rows are the baselines.
        x: "n" or "n_over_dk" (the collapse: if n* ∝ d^k every d lies on one curve; the cpu grid's curves
            shift left in n/d^k as d grows, see ``readings``).
        k: feature degree, for the axis label.
        baselines: optional rows with the same columns and an ``arch`` column (kernel, two_layer).
        runs: optional one row per run (d, n, k, arch, test_loss, feature_corr): the seeds as dots.
        show: which baselines to draw (in the loss panel, in their d's colour, dotted or dashed).
        statistic: the line, ``median`` (robust to one seed on a poor feature) or ``mean`` (with error
            bars ± the standard error of the mean where the cells have it).
    Returns:
        a figure with two panels sharing the log x-axis.
    """
    if x not in ("n", "n_over_dk"):
        raise ValueError(f"x must be 'n' or 'n_over_dk', got {x!r}")
    if statistic not in STATISTIC_NAMES:
        raise ValueError(f"statistic must be one of {', '.join(STATISTIC_NAMES)}, got {statistic!r}")
    if "arch" in cells:  # cell_stats.aggregate's table: the network's rows, and the baselines beside them
        if baselines is None:
            baselines = cells[cells["arch"] != "three_layer"]
        cells = cells[cells["arch"] == "three_layer"]
    colors = d_colors(cells["d"])
    fig = make_subplots(rows=1, cols=2, subplot_titles=("Test loss (1 = predicting 0)", "Feature correlation corr(g, p)"),
                        horizontal_spacing=0.12)
    for d, group in cells.sort_values(["d", "n"]).groupby("d", sort=True):
        for col, metric in ((1, "test_loss"), (2, "feature_corr")):
            _band_line(fig, group, x, metric, f"d = {d}", colors[int(d)], col, show_legend=col == 1, statistic=statistic)
    if runs is not None and len(runs):
        _seed_dots(fig, runs[runs["arch"] == "three_layer"], x, colors)
    if baselines is not None and len(baselines):
        _baselines(fig, baselines[baselines["arch"].isin(list(show))], x, colors, statistic)
    xtitle = "n (training samples)" if x == "n" else f"n / d^{k}"
    if x == "n":
        fig.update_xaxes(type="log", title=xtitle, dtick=1, tickformat="~s")
    else:
        fig.update_xaxes(type="log", title=xtitle, dtick=LOG2_DTICK, tick0=0, tickformat="~g")
    fig.update_yaxes(type="log", title="test loss", dtick=1, row=1, col=1)
    fig.update_yaxes(title="corr(g, p)", range=[-0.05, 1.05], row=1, col=2)
    return _layout(fig, f"Figure 2 against {'n' if x == 'n' else f'n / d^{k}'}: {STATISTIC_NAMES[statistic]}", height=480)


def _seed_dots(fig, runs: pd.DataFrame, x: str, colors: dict) -> None:
    """Each seed's value as a small dot in its d's colour; hollow when the run stopped at the step cap."""
    runs = runs.assign(n_over_dk=runs["n"] / runs["d"].astype(float) ** runs["k"])
    capped = runs["stopped_by"].eq("step cap") if "stopped_by" in runs.columns else pd.Series(False, index=runs.index)
    for d, group in runs.groupby("d", sort=True):
        symbols = np.where(capped[group.index], "circle-open", "circle")
        stops = np.where(capped[group.index], "stopped at the step cap", "stopped on a rule")
        for col, metric in ((1, "test_loss"), (2, "feature_corr")):
            fig.add_scatter(x=group[x], y=group[metric], mode="markers", legendgroup=f"d = {d}", showlegend=False,
                            marker=dict(size=6, color=colors.get(int(d), "gray"), opacity=0.5, symbol=symbols),
                            customdata=stops,
                            hovertemplate=f"d = {d}, one seed, %{{customdata}}<br>x=%{{x:.4g}}<br>%{{y:.4g}}<extra></extra>",
                            row=1, col=col)
    legend = (("circle", "one seed (stopped on a rule)"), ("circle-open", "one seed at the step cap"))
    for symbol, name in legend if capped.any() else legend[:1]:  # the markers' legend, once
        fig.add_scatter(x=[None], y=[None], mode="markers", name=name, marker=dict(size=7, color="gray", symbol=symbol),
                        row=1, col=2)


def _baselines(fig, baselines: pd.DataFrame, x: str, colors: dict, statistic: str = "median") -> None:
    """Baseline loss curves in their d's colour; one legend entry per baseline toggles all its curves."""
    column = f"test_loss_{statistic}" if f"test_loss_{statistic}" in baselines else "test_loss_mean"
    for arch, by_arch in baselines.sort_values(["d", "n"]).groupby("arch", sort=True):
        name = BASELINE_NAMES.get(arch, arch)
        fig.add_scatter(x=[None], y=[None], mode="lines", name=name, legendgroup=arch,
                        line=dict(color="gray", dash=BASELINE_DASH.get(arch)), row=1, col=1)
        for d, group in by_arch.groupby("d", sort=True):
            fig.add_scatter(x=group[x], y=group[column], mode="lines+markers", legendgroup=arch,
                            showlegend=False, line=dict(color=colors.get(int(d), "gray"), dash=BASELINE_DASH.get(arch)),
                            marker=dict(size=4),
                            hovertemplate=f"{name}, d = {d}<br>x=%{{x:.4g}}<br>{statistic}=%{{y:.4g}}<extra></extra>",
                            row=1, col=1)


def _band_line(fig, group, x, metric, name, color, col, show_legend, statistic="median"):
    """The statistic's line over the seeds' min–max band; the band of one seed is the line itself."""
    xs = group[x].to_numpy(dtype=float)
    line = group[f"{metric}_{statistic}"].to_numpy(dtype=float)
    lo, hi = (group[f"{metric}_{end}"].to_numpy(dtype=float) for end in ("min", "max"))
    if np.any(hi > lo):
        # mode "lines": plotly's default would put unrelated-coloured markers on the band's corners;
        # min and max are seeds' own values, so the band stays in range on either axis
        fig.add_scatter(x=np.concatenate([xs, xs[::-1]]), y=np.concatenate([hi, lo[::-1]]), fill="toself", mode="lines",
                        fillcolor=_rgba(color, 0.18), line=dict(width=0), hoverinfo="skip", showlegend=False,
                        legendgroup=name, row=1, col=col)
    seeds = group["seeds"].to_numpy() if "seeds" in group else np.full(len(group), "?")
    se = f"{metric}_se"  # error bars on the mean: the standard error of the seed mean (cell_stats.aggregate)
    bars = (dict(type="data", array=np.nan_to_num(group[se].to_numpy(dtype=float)), thickness=1.5)
            if statistic == "mean" and se in group else None)
    fig.add_scatter(x=xs, y=line, mode="lines+markers", name=name, legendgroup=name, showlegend=show_legend,
                    line=dict(color=color), customdata=seeds, error_y=bars,
                    hovertemplate=f"x=%{{x:.4g}}<br>{statistic}=%{{y:.4g}}<br>seeds=%{{customdata}}<extra>{name}</extra>",
                    row=1, col=col)


def kappa_axis_figure(cells: pd.DataFrame, k: int, kq: int, criterion: str = "feature_corr",
                      statistic: str = "median", threshold: float | None = None) -> go.Figure:
    """Every d's score against κ = log n / log d, with the network theory's k and the kernel's kq marked.

    On this axis a method that needs d^a samples learns at κ = a for every d (Dandi et al. 2025):
    one glance shows where the network learns and where a kernel would need to be.

    Args:
        cells: ``cell_stats.aggregate`` rows (the network's are used): d, n and the score's statistic.
        k, kq: the network's and the kernel's exponents (vertical lines).
        criterion: ``feature_corr`` (the correlation) or ``explained`` (1 − test loss).
        statistic: ``median`` or ``mean``; the band is the seeds' min–max.
        threshold: a horizontal line at the score that defines n*(d).
    """
    if "arch" in cells:
        cells = cells[cells["arch"] == "three_layer"]
    colors = d_colors(cells["d"])
    fig = go.Figure()
    for d, group in cells.sort_values(["d", "n"]).groupby("d", sort=True):
        xs = np.log(group["n"].to_numpy(float)) / np.log(float(d))
        if criterion == "feature_corr":
            line, lo, hi = (group[f"feature_corr_{s}"].to_numpy(float) for s in (statistic, "min", "max"))
        else:  # 1 − loss reverses the order: the largest loss is the smallest score
            line, hi, lo = (1.0 - group[f"test_loss_{s}"].to_numpy(float) for s in (statistic, "min", "max"))
        color = colors[int(d)]
        if np.any(hi > lo):
            fig.add_scatter(x=np.concatenate([xs, xs[::-1]]), y=np.concatenate([hi, lo[::-1]]), fill="toself",
                            mode="lines", fillcolor=_rgba(color, 0.15), line=dict(width=0), hoverinfo="skip",
                            showlegend=False, legendgroup=f"d = {d}")
        fig.add_scatter(x=xs, y=line, mode="lines+markers", name=f"d = {d}", legendgroup=f"d = {d}",
                        line=dict(color=color), customdata=group["n"],
                        hovertemplate=f"d = {d}, n = %{{customdata}}<br>log n / log d = %{{x:.2f}}<br>"
                                      f"{statistic} = %{{y:.3f}}<extra></extra>")
    for at, text, dash in ((k, f"network theory: κ = k = {k}", "dash"), (kq, f"kernel: κ = kq = {kq}", "dot")):
        fig.add_vline(x=at, line=dict(color="gray", dash=dash), annotation_text=text, annotation_position="bottom right")
    if threshold is not None:
        fig.add_hline(y=threshold, line=dict(color="lightgray", width=1))
    low = float(np.nanmin(np.log(cells["n"].to_numpy(float)) / np.log(cells["d"].to_numpy(float)))) if len(cells) else 0.0
    fig.update_xaxes(title="κ = log n / log d", range=[min(low, k) - 0.3, max(kq, k) + 0.5])
    score = "corr(g, p)" if criterion == "feature_corr" else "1 − test loss"
    fig.update_yaxes(title=f"{score}, {statistic} over seeds", range=[-0.05, 1.05] if criterion == "feature_corr" else None)
    return _layout(fig, "Where each method learns: score against log n / log d", height=420)


def n_star_figure(kappa: dict, k: int) -> go.Figure:
    """n*(d) against d on log–log axes: the points, the fitted line of slope κ, and each local slope.

    Args:
        kappa: ``kappa_fit.kappas`` output: ``n_star`` (d, n_star), ``estimate`` and ``intercept``
            (log n* = κ log d + c) and ``local_slopes`` (d_low, d_high, slope).
        k: the theory's exponent, drawn as a reference line through the fit's centre.
    """
    points = [(p["d"], p["n_star"]) for p in kappa.get("n_star", []) if p["n_star"] is not None]
    fig = go.Figure()
    if points:
        ds, stars = (np.array(v, float) for v in zip(*points))
        fig.add_scatter(x=ds, y=stars, mode="markers", name="n*(d)", marker=dict(size=10, color=PALETTE[0]),
                        hovertemplate="d = %{x}<br>n* = %{y:.4g}<extra></extra>")
        grid = np.geomspace(ds.min() * 0.9, ds.max() * 1.1, 20)
        if kappa.get("estimate") is not None:
            fig.add_scatter(x=grid, y=np.exp(kappa["intercept"]) * grid ** kappa["estimate"], mode="lines",
                            name=f"fit: slope κ = {kappa['estimate']:.2f}", line=dict(color=PALETTE[0]))
            centre = np.exp(np.mean(np.log(ds)))
            through = np.exp(kappa["intercept"]) * centre ** kappa["estimate"]
            fig.add_scatter(x=grid, y=through * (grid / centre) ** k, mode="lines", name=f"slope k = {k} (theory)",
                            line=dict(color="gray", dash="dash"))
        for s in kappa.get("local_slopes", []):
            d_mid = math.sqrt(s["d_low"] * s["d_high"])
            n_mid = math.sqrt(dict(points)[s["d_low"]] * dict(points)[s["d_high"]])
            fig.add_annotation(x=math.log10(d_mid), y=math.log10(n_mid), text=f"{s['slope']:.2f}", showarrow=False,
                               yshift=14, font=dict(color=PALETTE[1]))
    fig.update_xaxes(type="log", title="d", tickvals=[p[0] for p in points] or None)
    fig.update_yaxes(type="log", title="n*(d): samples to cross the threshold", **log_ticks([p[1] for p in points]))
    return _layout(fig, "n*(d) on log–log axes (red: the local slope between successive d)", height=420)


def collapse_figure(cells: pd.DataFrame, k: int = 3, threshold: float | None = None,
                    statistic: str = "median") -> go.Figure:
    """The collapse: the network's feature correlation (its seed median, or mean) against n/d^k, one line per d
    (the Home page's chart)."""
    if "arch" in cells:
        cells = cells[cells["arch"] == "three_layer"]
    colors = d_colors(cells["d"])
    fig = go.Figure()
    for d, group in cells.sort_values(["d", "n"]).groupby("d", sort=True):
        fig.add_scatter(x=group["n_over_dk"], y=group[f"feature_corr_{statistic}"], mode="lines+markers", name=f"d = {d}",
                        line=dict(color=colors[int(d)], width=3), marker=dict(size=7),
                        hovertemplate=f"d = {d}<br>n/d^{k}=%{{x:.3g}}<br>{statistic} corr=%{{y:.3f}}<extra></extra>")
    if threshold is not None:
        fig.add_hline(y=threshold, line=dict(color="gray", dash="dot"), annotation_text=f"corr = {threshold}",
                      annotation_position="bottom right")
    fig.update_xaxes(type="log", title=f"n / d^{k}: samples in units of d^{k}", dtick=LOG2_DTICK, tick0=0, tickformat="~g")
    fig.update_yaxes(title="feature correlation corr(g, p)", range=[-0.05, 1.05])
    return _layout(fig, "Each d against n/d^k", height=420)


def coverage_heatmap(coverage: pd.DataFrame) -> go.Figure:
    """Which grid cells are stored: rows d, columns n, colour = stored seeds / wanted seeds.

    Args:
        coverage: one row per (d, n) with d, n, stored, wanted (or per (arch, d, n): summed).
    """
    if coverage.empty:
        return _layout(go.Figure(), "No grid cells")
    table = coverage
    if "arch" in table:  # specs.coverage: one row per architecture, summed per cell
        table = table.groupby(["d", "n"], as_index=False)[["stored", "wanted"]].sum()
    ds = sorted(table["d"].unique())
    z, text = [], []
    for d in ds:
        row = table[table["d"] == d].sort_values("n")
        z.append((row["stored"] / row["wanted"].clip(lower=1)).tolist())
        text.append([f"n={n}<br>{s}/{w} seeds" for n, s, w in zip(row["n"], row["stored"], row["wanted"], strict=True)])
    width = max(len(r) for r in z)
    z = [r + [None] * (width - len(r)) for r in z]
    text = [r + [""] * (width - len(r)) for r in text]
    fig = go.Figure(go.Heatmap(z=z, x=[f"n{j + 1}" for j in range(width)], y=[f"d = {d}" for d in ds], text=text,
                               texttemplate="%{text}", zmin=0, zmax=1, colorscale="Blues", showscale=False,
                               hovertemplate="%{y}, %{text}<extra></extra>"))
    fig.update_xaxes(title="n grid point (ascending)", showgrid=False)
    fig.update_yaxes(showgrid=False)
    return _layout(fig, "Stored cells (d, n): seeds stored / wanted", height=120 + 60 * len(ds))


# ------------------------------------------------------------------- Learn
def hermite_figure(curves: pd.DataFrame) -> go.Figure:
    """Normalised Hermite polynomials h_k (columns z, k, value)."""
    fig = go.Figure()
    for i, (k, group) in enumerate(curves.groupby("k", sort=True)):
        fig.add_scatter(x=group["z"], y=group["value"], mode="lines", name=f"h_{k}",
                        line=dict(color=PALETTE[i % len(PALETTE)]))
    fig.update_xaxes(title="z")
    fig.update_yaxes(title="h_k(z)", range=[-6, 6])
    return _layout(fig, "Normalised Hermite polynomials h_k = He_k / √k!")


def histogram_figure(hist: pd.DataFrame, title: str, xtitle: str, log_y: bool = False) -> go.Figure:
    """A density histogram against the standard Gaussian (columns center, width, density, gaussian)."""
    fig = go.Figure(go.Bar(x=hist["center"], y=hist["density"], width=hist["width"], name="samples",
                           marker=dict(color=PALETTE[0], opacity=0.6)))
    fig.add_scatter(x=hist["center"], y=hist["gaussian"], mode="lines", name="N(0, 1)",
                    line=dict(color="black", width=2))
    if log_y:
        fig.update_yaxes(type="log")
    fig.update_xaxes(title=xtitle)
    fig.update_yaxes(title="density")
    return _layout(fig, title)


def tail_figure(tails: pd.DataFrame) -> go.Figure:
    """P(|Z| > t) for the target h against a Gaussian, log y (columns t, h, gaussian)."""
    fig = go.Figure()
    fig.add_scatter(x=tails["t"], y=tails["h"], mode="lines", name="target h(x)", line=dict(color=PALETTE[1]))
    fig.add_scatter(x=tails["t"], y=tails["gaussian"], mode="lines", name="N(0, 1)", line=dict(color="black"))
    fig.update_yaxes(type="log", title="P(|value| > t)", exponentformat="power")
    fig.update_xaxes(title="t")
    return _layout(fig, "Heavy tail of h = g ∘ p (both have variance 1)")


def sample_count_figure(counts: pd.DataFrame, k: int, q: int) -> go.Figure:
    """Samples needed against d, log-log (columns d, network, kernel)."""
    fig = go.Figure()
    fig.add_scatter(x=counts["d"], y=counts["network"], mode="lines+markers", name=f"three-layer net: d^{k}",
                    line=dict(color=PALETTE[0]))
    fig.add_scatter(x=counts["d"], y=counts["kernel"], mode="lines+markers", name=f"kernel: d^{k * q}",
                    line=dict(color=PALETTE[1]))
    fig.update_xaxes(type="log", title="d", dtick=LOG2_DTICK, tick0=0)
    fig.update_yaxes(type="log", title="samples n", exponentformat="power", dtick=3)
    return _layout(fig, f"Samples needed: d^k = d^{k} against d^(kq) = d^{k * q}")


# ------------------------------------------------------------ exponent table
def exponent_figure(table: pd.DataFrame) -> go.Figure:
    """κ against k, one marker per link degree q with its interval, the line κ = k and the kernel's kq.

    Args:
        table: ``exponents.exponent_frame`` rows: k, q, kappa, low, high (None/NaN: no estimate), kernel_kq.
    Returns:
        one panel; points of one k are spread a little by q so their intervals do not overlap.
    """
    fig = go.Figure()
    ks = sorted(table["k"].unique()) if len(table) else [1, 2, 3]
    span = [min(ks) - 0.4, max(ks) + 0.4]
    fig.add_scatter(x=span, y=span, mode="lines", name="κ = k (the network, theory)", line=dict(color="gray", dash="dash"))
    for i, (q, group) in enumerate(table.sort_values("k").groupby("q", sort=True) if len(table) else []):
        color, x = PALETTE[i % len(PALETTE)], group["k"].to_numpy(float) + 0.12 * (q - 3)
        kappa = pd.to_numeric(group["kappa"], errors="coerce").to_numpy(float)
        low = pd.to_numeric(group["low"], errors="coerce").to_numpy(float)
        high = pd.to_numeric(group["high"], errors="coerce").to_numpy(float)
        fig.add_scatter(
            x=x, y=kappa, mode="markers", name=f"measured κ, q = {q}", marker=dict(size=10, color=color),
            error_y=dict(type="data", symmetric=False, array=np.nan_to_num(high - kappa), arrayminus=np.nan_to_num(kappa - low)),
            text=group["link"], hovertemplate="k = %{x:.0f}, link %{text}: κ = %{y:.2f}<extra></extra>",
        )
        fig.add_scatter(x=x, y=group["kernel_kq"], mode="markers", name=f"kernel d^(kq), q = {q}",
                        marker=dict(size=10, color=color, symbol="diamond-open"))
        none = ~np.isfinite(kappa)  # no crossing inside the grid: marked on the axis, not left out
        if none.any():
            fig.add_scatter(x=x[none], y=np.zeros(int(none.sum())), mode="markers", name=f"no κ in the grid, q = {q}",
                            marker=dict(size=11, color=color, symbol="x-thin", line=dict(width=2, color=color)))
    fig.update_xaxes(title="feature degree k", tickvals=ks, range=span)
    fig.update_yaxes(title="exponent κ in n*(d) ∝ d^κ", rangemode="tozero")
    _layout(fig, "Samples needed: measured κ against k (the kernel needs kq)", height=480)
    return fig.update_layout(legend=dict(orientation="h", yanchor="top", y=-0.18, xanchor="left", x=0.0),
                             margin=dict(b=120))


# ----------------------------------------------------------------- transfer
TRANSFER_DASH = {"transfer": "solid", "scratch": "dash", "kernel": "dot"}


def transfer_figure(cells: pd.DataFrame, link: str) -> go.Figure:
    """Test loss against N for one link: per d (its colour) the transfer solid, scratch dashed, kernel dotted.

    Args:
        cells: ``study.transfer.report(...)["cells"]`` as a frame: d, n, link, role, seeds, test_loss (the
            mean), test_loss_se, test_loss_median, test_loss_min, test_loss_max.
        link: which link's rows to draw.
    Returns:
        one panel, log–log: the median over seeds, bars from the lowest to the highest seed, the mean ± SE
        on hover. Transfer curves that coincide across d are the claim (a one-dimensional link needs no more
        samples as d grows); scratch curves moving right with d are the contrast.
    """
    rows = cells[(cells["link"] == link) & cells["test_loss"].notna()]
    colors = d_colors(rows["d"]) if len(rows) else {}
    fig = go.Figure()
    for (d, role), group in rows.sort_values(["d", "n"]).groupby(["d", "role"], sort=True):
        median = group["test_loss_median"]
        fig.add_trace(go.Scatter(
            x=group["n"], y=median, mode="lines+markers", name=f"d = {d} {role}",
            line=dict(color=colors[int(d)], dash=TRANSFER_DASH.get(role, "solid")),
            error_y=dict(type="data", symmetric=False, array=group["test_loss_max"] - median,
                         arrayminus=median - group["test_loss_min"], visible=True),
            customdata=np.column_stack([group["seeds"], group["test_loss"], group["test_loss_se"]]),
            hovertemplate=(f"d = {d} {role}<br>N = %{{x}}<br>median %{{y:.4f}} over %{{customdata[0]}} seeds"
                           "<br>mean %{customdata[1]:.4f} ± %{customdata[2]:.4f}<extra></extra>"),
        ))
    fig.update_xaxes(type="log", title="N (samples of the new target h' = g' ∘ p)", dtick=LOG2_DTICK * 2, tickformat=",d")
    fig.update_yaxes(type="log", title="test loss (1 = predicting 0)",
                     **log_ticks(rows[["test_loss_min", "test_loss_max"]].to_numpy() if len(rows) else []))
    return _layout(fig, f"Reusing the learned feature for {link}: transfer (solid), scratch (dashed), kernel (dotted)", 460)
