"""Figure 2: test loss and feature correlation against n for several d, and the collapse at n/d^k.

The preset, the x-axis and the baselines shown live in the URL, so a link opens the collapse directly.
"""
import streamlit as st

from hierpoly.config import MODES
from hierpoly.jobs import executors, local, policy
from hierpoly.jobs import records as jobs
from hierpoly.study import figure2, kappa_fit, presets, readings, specs
from hierpoly.views import forms, plots, widgets

PRESETS = ["cpu", "paper", "tiny", "exponents", "custom"]  # every preset the page draws, each selectable by ?preset=
X_AXES = {"n": "n", "n_over_dk": "n / d^k (the collapse)"}
BASELINES = {"kernel": "kernel baseline", "two_layer": "two-layer baseline"}
STATISTICS = {"median": "median over seeds", "mean": "mean over seeds"}


def url_to_state() -> None:
    """Read preset, x-axis and baselines from a new URL into the controls (once per URL)."""
    params = st.query_params.to_dict()
    if params == st.session_state.get("f2_url"):
        return
    st.session_state["f2_url"] = params
    if params.get("preset") in PRESETS:
        st.session_state["f2_preset"] = params["preset"]
    if params.get("x") in X_AXES:
        st.session_state["f2_x"] = params["x"]
    if params.get("stat") in STATISTICS:
        st.session_state["f2_stat"] = params["stat"]
    if "baselines" in params:
        st.session_state["f2_show"] = [b for b in params["baselines"].split(",") if b in BASELINES]


def state_to_url(preset: str, x_axis: str, show: list, statistic: str) -> None:
    params = {"preset": preset, "x": x_axis, "baselines": ",".join(show), "stat": statistic}
    if st.query_params.to_dict() != params:
        st.query_params.from_dict(params)
    st.session_state["f2_url"] = params


def preset_captions() -> list[str]:
    """Each preset's d, read from the preset itself (so the sidebar never names other d than the page draws)."""
    where = {"cpu": "a laptop", "paper": "a GPU", "tiny": "seconds"}
    grids = [f"{specs.ds_text(presets.preset(name).ds, ())}, {where[name]}" for name in ("cpu", "paper", "tiny")]
    return [*grids, "κ against k for several targets", "your own grid"]


def grid_ui():
    """The sidebar's grid controls; (name, SweepSpec), or (name, None) for `exponents` and after showing why a
    grid is invalid."""
    with st.sidebar:
        st.header("Grid")
        name = st.radio("preset", PRESETS, key="f2_preset", captions=preset_captions())
        if name == "exponents":
            return name, None
        seeds = st.number_input("seeds per cell", min_value=1, max_value=20, value=presets.preset(name).seeds
                                if name != "custom" else 1, key=f"f2_seeds_{name}")
        baselines = st.checkbox("with the kernel and two-layer baselines", value=True, key="f2_baselines")
        try:
            if name != "custom":
                return name, presets.preset(name, seeds=int(seeds), baselines=baselines)
            return name, custom_grid(int(seeds), baselines)
        except (ValueError, executors.SweepError) as err:
            st.error(str(err), icon=":material/warning:")
            return name, None


def custom_grid(seeds: int, baselines: bool) -> specs.SweepSpec:
    ds = forms.parse_number_list(st.text_input("d values", "6, 8", key="f2_ds"), "d values")
    by = st.radio("n grid", ["multiples of d^k", "n values"], horizontal=True, key="f2_by")
    ns = mult = None
    if by == "n values":
        ns = forms.parse_number_list(st.text_input("n values", "256, 1024, 4096", key="f2_ns"), "n values")
    else:
        mult = forms.parse_number_list(st.text_input("multiples of d^k", "0.25, 1, 4", key="f2_mult"), "multiples",
                                       integer=False)
    mode = st.selectbox("mode", MODES, key="f2_mode")
    steps = st.number_input("steps (0 = default)", min_value=0, value=0, step=100, key="f2_steps")
    return specs.custom(ds, ns=ns, multiples=mult, seeds=seeds, mode=mode, baselines=baselines,
                         steps=int(steps) or None)


@st.cache_data(max_entries=8, show_spinner="Bootstrapping κ…")
def report(_spec: specs.SweepSpec, _store, spec_id: str, stored: tuple, statistic: str) -> figure2.Figure2Report:
    """The CLI's Figure 2 report, recomputed only when the grid, its stored runs or the statistic change."""
    return figure2.figure2_report(_spec, _store, statistic=statistic)


LINE_TEXT = {
    "median": "Lines: the median over seeds (one seed on a poor feature does not move it), band: the seeds' "
              "min–max, ",
    "mean": "Lines: the mean over seeds with error bars ± one standard error of that mean, band: the seeds' "
            "min–max, ",
}


def figure_ui(rep: figure2.Figure2Report, statistic: str) -> None:
    """The two panels, with the x-axis and the baselines to compare chosen above them."""
    cols = st.columns([2, 3])
    x_axis = cols[0].radio("x-axis", list(X_AXES), format_func=X_AXES.get, key="f2_x", horizontal=True)
    st.session_state.setdefault("f2_show", list(BASELINES))
    show = cols[1].pills("compare with", list(BASELINES), format_func=BASELINES.get, selection_mode="multi",
                         key="f2_show")
    state_to_url(rep.spec.name, x_axis, show, statistic)
    fmt = st.session_state.get("f2_format", "svg")
    fig = plots.figure2(rep.cells, x=x_axis, k=rep.spec.k, runs=rep.runs, show=show, statistic=statistic)
    st.plotly_chart(fig, key="f2_figure", config={**plots.CHART_CONFIG, "toImageButtonOptions": {"format": fmt}})
    st.caption(
        LINE_TEXT[statistic] + "dots the seeds (hollow: stopped at the step cap), one colour per d. The test loss "
        "is the plain mean squared error over each run's fresh evaluation points (unbiased: E[h²] = 1), not a ratio. "
        f"If the network needs about d^{rep.spec.k} samples, the **feature correlation** of every d rises at the "
        f"same place against n/d^{rep.spec.k}; where each d crosses is measured below. "
        + (readings.shift_sentence(rep.readings) + " " if rep.readings else "")
        + "The **test loss** falls with n too; it is dominated by the rare inputs outside the training data (heavy tail; see "
        "Explore). The two-layer baseline stops where a holdout of its training set says: trained on, it fits the "
        "heavy-tailed targets and predicts worse than 0, so it stays near the zero predictor's mean h² (about 1; "
        "each evaluation set's own) and learns a little of p only at the largest n. The kernel baseline stays near "
        "its floor."
    )
    downloads_ui(rep, fig)


def figure_html(fig) -> bytes:
    """The figure as one HTML file with plotly.js inside it: it opens offline, on a projector without a network."""
    return fig.to_html(include_plotlyjs=True, full_html=True).encode()


def downloads_ui(rep: figure2.Figure2Report, fig) -> None:
    cols = st.columns(3)
    cols[0].download_button("Table (CSV)", rep.table.to_csv(index=False).encode(),
                            file_name=f"figure2_{rep.spec.name}.csv", mime="text/csv", key="f2_csv")
    cols[1].download_button("Figure (interactive HTML)", figure_html(fig),
                            file_name=f"figure2_{rep.spec.name}.html", mime="text/html", key="f2_html")
    cols[2].radio("image format of the chart's camera button", ["svg", "png"], horizontal=True, key="f2_format",
                  help="PNG and SVG are drawn by your browser from the chart's toolbar (camera icon); "
                       "drawing them on the server would need kaleido and a Chrome install.")


def headline_ui(rep: figure2.Figure2Report) -> None:
    """κ beside its theory value, the statistic it is read from, and the other statistic's κ as the sensitivity;
    above it, the grid's d that have no stored run, when there are any."""
    kappa, k = rep.kappa, rep.spec.k
    drawn = sorted(int(d) for d in rep.runs["d"].unique())
    counts = specs.n_counts(rep.spec, rep.table)
    if set(drawn) != set(rep.spec.ds) or any(got < of for got, of in counts.values()):
        st.warning(f"The `{rep.spec.name}` grid is drawn from {specs.ds_text(drawn, rep.spec.ds, counts)}: "
                   "κ below reads only the cells drawn.", icon=":material/info:")
    cols = st.columns([3, 3, 4])  # the κ label whole at a projector's 1024 px with the sidebar open
    if kappa["estimate"] is None:
        cols[0].metric("exponent κ", "–", help=kappa["reason"])
        cols[1].metric("theory", f"κ ≈ k = {k}")
        cols[2].caption(f"Exponent κ not available yet: {kappa['reason']}.")
        return
    cols[0].metric(f"κ (seed {kappa['statistic']}, at {rep.threshold})", f"{kappa['estimate']:.2f}",
                   help="n*(d) ∝ d^κ, n*(d) being where the score crosses the threshold")
    cols[1].metric("theory", f"κ ≈ k = {k}")
    other = kappa["sensitivity"]
    text = [f"95% interval {interval_text(kappa)}."]
    if other["estimate"] is not None:
        text.append(f"From the seed {other['statistic']} instead: {other['estimate']:.2f} ({interval_text(other)}).")
    cols[2].caption(" ".join(text) + " Intervals resample whole seeds: seed noise only, not the threshold, the "
                    "step cap or the finite-d bias.")


def interval_text(kappa: dict) -> str:
    """'[low, high]', or the two scenarios of a bootstrap that one seed splits."""
    split = kappa.get("split")
    if split:
        return (f"no single interval: the bootstrap splits by seed {split['seed']}, "
                f"{split['without']['low']:.2f}–{split['without']['high']:.2f} without it and "
                f"{split['with']['low']:.2f}–{split['with']['high']:.2f} with it")
    return "–" if kappa["low"] is None else f"[{kappa['low']:.2f}, {kappa['high']:.2f}]" + ("†" if kappa.get("marked") else "")


def exponent_ui(rep: figure2.Figure2Report, statistic: str) -> None:
    """κ at 0.8 / 0.9 / 0.95 and from the collapse fit; the κ-axis view and n*(d) on log–log axes."""
    kappa = rep.kappa
    if kappa["estimate"] is None:
        return
    rows = [*kappa["by_threshold"], {"threshold": "collapse fit", **kappa["collapse"]}]
    table = [{"threshold": str(r["threshold"]), "κ": r["estimate"], "95% interval (†: marked)": interval_text(r),
              "rests on d": ", ".join(map(str, r.get("fit_ds") or []))} for r in rows]
    st.dataframe(table, hide_index=True, column_config={"κ": st.column_config.NumberColumn(format="%.2f")})
    cols = st.columns(2)
    cols[0].plotly_chart(plots.kappa_axis_figure(rep.cells, rep.spec.k, rep.spec.k * rep.spec.q, kappa["criterion"],
                                                 statistic, rep.threshold), key="f2_kappa_axis",
                         config=plots.CHART_CONFIG)
    cols[1].plotly_chart(plots.n_star_figure(kappa, rep.spec.k), key="f2_n_star", config=plots.CHART_CONFIG)
    slopes = kappa["local_slopes"]
    trend = ", ".join(f"{s['slope']:.2f} ({s['d_low']}→{s['d_high']})" for s in slopes)
    st.caption(f"n*(d): where the seed-{statistic} {CRITERIA.get(kappa['criterion'], kappa['criterion'])} crosses "
               f"{rep.threshold}. Local slopes between successive d: {trend or 'none (fewer than two d cross)'}. "
               + readings.slope_caption(kappa, rep.spec.k) + " " + kappa_fit.slope_trend(slopes, rep.spec.k))
    readings_ui(rep)


def readings_ui(rep: figure2.Figure2Report) -> None:
    """n* per d beside d^k and the polynomial counts, and which ratio is flat within its interval."""
    if not rep.readings:
        return
    st.subheader("Finite-d readings: n* beside d^k and the polynomial counts")
    st.dataframe(readings.per_d_frame(rep.readings["per_d"], rep.spec.k), hide_index=True)
    said = [*readings.why_below_k(rep.readings), *(readings.flatness_sentence(rep.readings, s["threshold"])
                                                   for s in rep.readings["slopes"])]
    st.markdown("\n".join(f"- {s}" for s in said if s))
    st.caption(readings.MARK_NOTE)


CRITERIA = {"feature_corr": "feature correlation", "explained": "explained variance 1 − test loss"}


def _submit(cfg, store) -> str:
    return policy.submit_from_web(cfg, store, widgets.visitor())


def coverage_ui(spec: specs.SweepSpec, rep: figure2.Figure2Report | None, store) -> None:
    """Which cells are stored, and queueing the missing ones (in an expander unless nothing is stored)."""
    cover = rep.coverage if rep is not None else specs.coverage(spec, store)
    total, stored = int(cover["wanted"].sum()), int(cover["stored"].clip(upper=cover["wanted"]).sum())
    missing = specs.missing(spec, store)
    with st.expander(f"Grid: {stored} of {total} runs stored, {len(missing)} missing", expanded=rep is None):
        st.plotly_chart(plots.coverage_heatmap(cover), key="f2_heatmap", config=plots.CHART_CONFIG)
        cols = st.columns([3, 2])  # the queue button whole at a projector's 1024 px
        cols[0].markdown(f"**{stored} of {total} runs stored** ({len(spec.cells())} cells × "
                         f"{len(spec.archs)} architectures, {specs.seeds_text(spec)}); {len(missing)} missing.")
        if policy.can_launch() and cols[1].button(f"Queue the {len(missing)} missing runs", disabled=not missing,
                                                  key="f2_queue"):
            _, refused = local.submit_all(missing, store, submit=_submit)
            if refused:
                st.error(f"{len(refused)} runs were refused before launch. First: {refused[0]['message']}")
            st.rerun()
        grid_keys = {cfg.key() for cfg in spec.configs()}
        if any(j.key in grid_keys and j.status in jobs.LIVE for j in jobs.live_jobs(store)):
            grid_progress(grid_keys, store)


@st.fragment(run_every=2.0)
def grid_progress(grid_keys: set, store) -> None:
    """Overall progress of this grid's jobs; reads the job table only."""
    live = [j for j in jobs.live_jobs(store) if j.key in grid_keys and j.status in jobs.LIVE]
    if not live:
        st.rerun()
    done_now = sum(store.has(k) for k in grid_keys)
    running = [j for j in live if j.status == "running"]
    text = f"{done_now} / {len(grid_keys)} runs stored, {len(running)} running, {len(live) - len(running)} queued"
    st.progress(done_now / max(len(grid_keys), 1), text=text)


# ------------------------------------------------------------------ the exponent table
@st.cache_data(max_entries=4, show_spinner="Bootstrapping κ for every target…")
def _exponent_table(_family, _store, stored: tuple, statistic: str) -> tuple[list[dict], list[str], list[tuple]]:
    """The CLI's exponent entries, the names of the grids still missing runs and each grid's (k, q, which ratio is
    flat at 0.9) (recomputed when the stored runs change)."""
    report = figure2.figure2_json(_family, _store, statistic=statistic)[0]
    flatness = [(g["k"], g["q"], readings.flatness_sentence({**g["readings"], "per_d": g["per_d"]}, g["readings"]["threshold"]))
                for g in report["grids"] if g["readings"]]
    return report["exponents"], [grid["name"] for grid in report["grids"] if grid["missing"]], flatness


def exponent_table_ui(statistic: str, store) -> None:
    """κ per (k, q) from the `exponents` preset's stored runs: the table, the κ-vs-k figure, what it shows."""
    st.header("Exponent table: κ against k, for links of degree q")
    family = presets.preset("exponents")
    stored = tuple(sorted(set(store.keys()) & {cfg.key() for cfg in family.configs()}))
    entries, unfinished, flatness = _exponent_table(family, store, stored, statistic) if stored else ([], [], [])
    if not entries:
        st.info("No run of the `exponents` preset is stored: `python -m hierpoly sweep --preset exponents`.")
        return
    frame = readings.exponent_frame(entries)
    st.plotly_chart(plots.exponent_figure(frame), key="f2_exponents", config=plots.CHART_CONFIG)
    two_places = {c: st.column_config.NumberColumn(format="%.2f") for c in frame.columns
                  if c.startswith(("kappa", "low", "high"))}
    st.dataframe(frame, hide_index=True, width="stretch", column_config=two_places)
    facts = [f"- **k = {e['k']}, q = {e['q']}** ({e['link']}): {e['diagnosis']}." for e in entries if e["diagnosis"]]
    facts += [f"- **k = {e['k']}, q = {e['q']}** ({e['link']}): {e['reason']}." for e in entries
              if e["estimate"] is None and not e["diagnosis"]]
    facts += [f"- **k = {e['k']}, q = {e['q']}**: κ at {b['threshold']} rests on d = {', '.join(map(str, b['fit_ds']))} "
              f"only ({len(b['fit_ds'])} of {len(e['ds'])}): the others never cross and are left out of its fit."
              for e in entries for b in e["by_threshold"] if b["estimate"] is not None and b["fit_ds"] != e["ds"]]
    facts += [f"- **k = {k}, q = {q}**: {sentence}" for k, q, sentence in flatness]
    if unfinished:
        facts.append(f"- Grids with runs still missing ({', '.join(unfinished)}): "
                     "`python -m hierpoly sweep --preset exponents` fills them in (resumable).")
    st.markdown(EXPONENT_NOTE)
    if facts:
        st.markdown("**Where a row departs from κ ≈ k, what was measured:**\n" + "\n".join(facts))
    with st.expander("About the `exponents` preset"):
        st.text(family.doc)


EXPONENT_NOTE = """
**What it shows.** Each row is one target h = g ∘ p (feature degree k, link of degree q)
on one d grid; κ is the slope of log n*(d) against log d, n*(d) being where the network's
seed-median score crosses the threshold (corr(g, p); for k = 1 the explained variance
1 − test loss, since a linear p lets the first layer learn p² or h itself). A kernel needs
about d^(kq) samples (open diamonds); the theory gives the network d^k (dashed line) when
E[g′(z)] ≠ 0, so that h's degree-k part points at p. Every link of the preset meets it: the
cubic z³, and h₁ + h₂, h₁ + h₄ applied to p/√d (`std:` links: half of E[h²] along p at
every d; on the raw p a mixed link's top power takes over as d grows). For k = 1 the cubic
first block can represent any h of degree kq ≤ 3 itself, so the network need not go
through p, and a quartic link's heavy tail decides its test loss. At these small d a slope need
not be the asymptotic one: what moves with d is measured, not assumed (the finite-d readings
above for the grid shown, and below, per row, which ratio n*/N(d) is flat). The intervals are a bootstrap over whole seeds and
cover seed-to-seed noise only — not the threshold (compare the κ@0.8, 0.9, 0.95 columns and
the collapse fit) or a finite-d bias; `marked` columns say where an interval rests on fewer
than 30 distinct replicate values or on replicates with different sets of d: not a 95% interval.
"""


def statistic_ui() -> str:
    with st.sidebar:
        return st.radio("statistic over seeds", list(STATISTICS), format_func=STATISTICS.get, key="f2_stat",
                        help="The median is robust to one seed on a poor feature; the mean is the sensitivity figure.")


def grid_figure_ui(spec: specs.SweepSpec, statistic: str, store) -> None:
    """One grid: κ, the figure, the exponent's views, the table, what is stored, the preset's own words."""
    stored_keys = tuple(sorted(set(store.keys()) & {cfg.key() for cfg in spec.configs()}))
    rep = report(spec, store, repr(spec), stored_keys, statistic) if stored_keys else None
    if rep is None or rep.runs.empty:
        st.info("No run of this grid is stored yet. Queue the missing runs below, or import a bundle on the "
                "Results page.")
        coverage_ui(spec, None, store)
        st.stop()
    headline_ui(rep)
    figure_ui(rep, statistic)
    exponent_ui(rep, statistic)
    st.dataframe(rep.table, hide_index=True, width="stretch")
    coverage_ui(spec, rep, store)
    if spec.doc:
        with st.expander(f"About the `{spec.name}` preset"):
            st.text(spec.doc)


def main() -> None:
    st.set_page_config(page_title="Figure 2 · hierpoly", page_icon=":material/show_chart:", layout="wide")
    store = widgets.store_or_stop()
    url_to_state()
    st.title("Figure 2: the samples needed grow like d^k")
    name, spec = grid_ui()
    statistic = statistic_ui()
    if name == "exponents":  # the family of targets: its table is the page
        state_to_url(name, st.session_state.get("f2_x", "n"), st.session_state.get("f2_show", list(BASELINES)),
                     statistic)
        exponent_table_ui(statistic, store)
        return
    if spec is None:
        st.error("The grid is not valid: fix it in the sidebar.")
        st.stop()
    grid_figure_ui(spec, statistic, store)
    exponent_table_ui(statistic, store)


main()
