"""Home: the result at a glance, the state of this machine, and where to go next."""
import streamlit as st

from hierpoly import __version__
from hierpoly.study import cell_stats, presets, specs
from hierpoly.views import forms, monitor, plots, widgets
from hierpoly.views.system import format_bytes, system_status

HERO_GRIDS = ("cpu", "paper", "tiny")  # the grid the shipped results fill first: a fresh clone draws `cpu`


def hero_ui(store) -> None:
    """The collapse of the first grid with stored runs for two or more d, named with the d it draws; a pointer
    when there is none."""
    summaries = store.summaries()
    for name in HERO_GRIDS:
        spec = presets.preset(name, baselines=False)
        cells = cell_stats.aggregate(specs.stored_runs(spec, store, summaries))
        drawn = sorted(int(d) for d in cells["d"].unique()) if len(cells) else []
        if len(drawn) >= 2:
            st.plotly_chart(plots.collapse_figure(cells, k=spec.k, threshold=cell_stats.THRESHOLD), key="home_hero",
                            config=plots.CHART_CONFIG)
            st.caption(f"The network needs about d^{spec.k} samples: the `{name}` grid from the stored results "
                       f"({specs.ds_text(drawn, spec.ds, specs.n_counts(spec, cells))}), the median over seeds of each cell (one seed on a poor "
                       "feature does not move it).")
            st.page_link("pages/2_Figure_2.py", label=f"The `{name}` grid on Figure 2", icon=":material/show_chart:",
                         query_params={"preset": name, "x": "n_over_dk"})
            return
    st.info("No Figure 2 grid is stored yet, so the collapse cannot be drawn. Queue one on the Figure 2 page, "
            "or import a bundle on the Results page.")


def intro_ui() -> None:
    st.markdown(
        r"""
**The network learns the feature first.** The target is $h = g \circ p$: a cubic link $g$ of a degree-$k$
feature $p(x) = \sum_i \lambda_i h_k(x_i)$ of a Gaussian input $x \in \mathbb{R}^d$. Measured in units of
$d^k$ samples, the correlation between the network's learned feature and $p$ rises within a factor of two of
the same place for every $d$ (drifting left as $d$ grows; Figure 2 measures by how much): about $d^k$ samples
suffice, where a kernel method needs about $d^{kq}$ ($d^3$ against $d^9$ here).
"""
    )
    st.page_link("pages/1_Explore.py", label="Watch a network find p", icon=":material/explore:")
    st.page_link("pages/2_Figure_2.py", label="Figure 2 in full", icon=":material/show_chart:")
    st.page_link("pages/4_Learn.py", label="A tour for a class", icon=":material/school:")
    st.page_link("pages/3_Results.py", label="Every stored run", icon=":material/table_view:")


def machine_ui(store) -> None:
    st.subheader("This machine")
    status = system_status(store)
    cols = st.columns(3)
    cols[0].metric("stored results", f"{status.results:,}")
    cols[1].metric("store size", format_bytes(status.size_bytes), help=str(status.store_dir))
    cols[2].metric("jobs queued or running", len(status.live_jobs))
    st.caption(f"JAX device: {status.device}" + (" (from the newest stored result; the app never loads JAX itself, "
                                                  "a separate process is asking it, reload to see)"
                                                  if status.device_source != "probe" else ""))
    for job in status.live_jobs:
        view = monitor.progress_view(job.status, job.progress, monitor.total_steps(job.config), job.config.n_eval)
        st.page_link("pages/1_Explore.py", icon=":material/hourglass_top:",
                     query_params=forms.params_from_config(job.config),
                     label=f"{forms.run_label(job.config)}: {view.text}")


def main() -> None:
    store = widgets.store_or_stop()
    st.title("Three-layer networks learn hierarchical polynomials")
    st.caption(f"hierpoly explorer {__version__} · Wang, Nichani & Lee, *Learning Hierarchical Polynomials with "
               "Three-Layer Neural Networks*, ICLR 2024")
    left, right = st.columns([3, 2], gap="large")
    with left:
        hero_ui(store)
    with right:
        intro_ui()
    machine_ui(store)


main()
