"""Learn: a guided tour for a class, every step runnable in seconds on a laptop CPU."""
import secrets

import streamlit as st

from hierpoly.config import MODES, ConfigError
from hierpoly.jobs import policy
from hierpoly.jobs import records as jobs
from hierpoly.study import specs
from hierpoly.views import forms, monitor, plots, tour, widgets
from hierpoly.views.markdown import literal


def hermite_ui() -> None:
    st.header("1 · The building blocks: Hermite polynomials")
    st.markdown(r"""
The feature is built from the normalised probabilists' Hermite polynomials $h_k = He_k/\sqrt{k!}$ **[seed]**,
e.g. $h_3(z) = (z^3 - 3z)/\sqrt 6$. For a Gaussian $z$ they are orthonormal: $E[h_i(z) h_j(z)] = 1$ if $i = j$,
else $0$, so a polynomial's Hermite coefficients say how much of it each degree carries.
""")
    left, right = st.columns([3, 2])
    left.plotly_chart(plots.hermite_figure(tour.hermite_curves()), key="learn_hermite", config=plots.CHART_CONFIG)
    right.markdown("$E[h_i h_j]$ by Gauss–Hermite quadrature (exact for polynomials):")
    right.dataframe(tour.hermite_gram(), width="stretch")


def target_ui() -> None:
    st.header("2 · What the target looks like")
    st.markdown(r"""
The feature $p(x) = \sum_{i=1}^d \lambda_i h_3(x_i)$, signs $\lambda_i = \pm 1$ **[seed]**, is a sum of $d$
independent terms of variance 1: $p/\sqrt d$ is close to a Gaussian, but only slowly, because $h_3$ has heavy tails.
The target $h = g(p) = C_d\,p^3$ cubes it: most of its values are tiny, a few are huge. $C_d$ is computed exactly
so that $E[h^2] = 1$ (Monte Carlo would underestimate it badly, precisely because of those tails).
""")
    d_hist = st.slider("d", min_value=2, max_value=64, value=8, key="learn_d")
    sample = tour.sample_target(int(d_hist), n=20000, seed=0)
    left, right = st.columns(2)
    left.plotly_chart(plots.histogram_figure(tour.density_histogram(sample["p_scaled"].to_numpy()),
                                             f"p(x)/√d against N(0, 1), d = {d_hist}", "p(x)/√d"),
                      key="learn_phist", config=plots.CHART_CONFIG)
    right.plotly_chart(plots.tail_figure(tour.tail_probabilities(sample["h"].to_numpy())), key="learn_tail",
                       config=plots.CHART_CONFIG)
    st.markdown("Exact moments of $p/\\sqrt d$ (a Gaussian has 3 and 15) and the constant $C_d$:")
    st.dataframe(tour.moment_table((4, 8, 16, int(d_hist), 40)).drop_duplicates("d").sort_values("d"),
                 hide_index=True, column_config={"C": st.column_config.NumberColumn(format="%.4e")})


def run_ui(store):
    """Step 3: the tour's run, trained on a click, live while it trains; returns its stored result or None."""
    st.header("3 · Watch a network find p")
    cfg = tour.tour_config()
    st.markdown(f"""
A three-layer network $h_θ(x) = g(x) + \\sum_j c_j \\mathrm{{ReLU}}(a_j g(x) + b_j)$ with learned feature
$g(x) = \\sum_i u_i (v_i\\cdot x + s_i)^3$ **[seed for parts, reconstructed equation]**, trained jointly with Adam on
n = {cfg.n} = 4·d³ samples at d = {cfg.d}. If it learns the hierarchy, its feature $g$ lines up with $p$.
""")
    result, job = store.get(cfg.key()), jobs.for_key(cfg.key(), store)
    can_run = result is None and (job is None or job.status not in jobs.LIVE) and train_button_ui(cfg, store, job)
    widgets.offered(cfg.key(), can_run)
    if result is not None:
        if widgets.play_back(result, "learn"):  # a run this page waited for: its training played back first
            return None
        result_ui(result)
    elif job is not None and job.status in jobs.LIVE:
        widgets.live_job(job.job_id, store, "learn", curves=False)
    return result


def train_button_ui(cfg, store, job) -> bool:
    """The Train button with its estimate, or why it is off; whether it can be pressed."""
    if job is not None:
        st.warning(f"The last attempt {job.status}: {literal(job.message)}")
    if not policy.can_launch():  # a gallery without the shipped tour run: say where it comes from
        st.info("The tour's run is not stored here: it ships in cache/precomputed/tour.zip.")
        return False
    took = monitor.estimate_text(monitor.time_estimate(cfg, store.summaries()))
    refusal = widgets.run_refusal("learn_run", cfg, store)
    if refusal is not None:
        st.caption(f"Training is off: {literal(refusal)}")
    st.caption(f"Training takes {took}.")
    if st.button(f"Train it (d = {cfg.d}, n = {cfg.n}, at most {cfg.steps:,} steps)",
                 type="primary", key="learn_run", disabled=refusal is not None):
        widgets.watch(cfg.key())
        widgets.launch_or_stop(cfg, store)
        st.rerun()
    return refusal is None


def result_ui(result) -> None:
    said = monitor.outcome(result)
    (st.success if said.found else st.info)(said.headline)
    left, right = st.columns(2)
    with left:
        if result.samples and not widgets.replay(result, "learn"):
            st.plotly_chart(plots.feature_scatter(result.samples, result.metrics["feature_corr"]),
                            key="learn_scatter", config=plots.CHART_CONFIG)
    right.plotly_chart(plots.corr_figure(monitor.history_frame(result.history)), key="learn_corr",
                       config=plots.CHART_CONFIG)
    st.page_link("pages/1_Explore.py", label="Open this run in Explore", icon=":material/explore:",
                 query_params=forms.params_from_config(result.config))


def why_ui() -> None:
    cfg = tour.tour_config()
    st.header("4 · Why d^k samples and not d^(kq)")
    q = tour.link_degree(cfg.link)
    st.markdown(f"""
A kernel method (or a network whose features stay at their random start) sees $h$ only as a polynomial of
degree $kq = {cfg.k * q}$ in $x$, and must pin down all of its $\\approx d^{{kq}}$ coefficients. The three-layer
network does two easier things in turn: its first block finds the one feature $p$, a degree-$k$ polynomial
(about $d^k$ coefficients, so about $d^k$ samples); then the link $g$ is a function of one variable, which costs
almost nothing. Learning the feature is what saves the factor $d^{{k(q-1)}}$.
""")
    st.plotly_chart(plots.sample_count_figure(tour.sample_counts(k=cfg.k, q=q), cfg.k, q), key="learn_counts",
                    config=plots.CHART_CONFIG)
    st.page_link("pages/2_Figure_2.py", label="See it measured: Figure 2 and the collapse at n/d^k",
                 icon=":material/show_chart:")


def transfer_ui(result, store) -> None:
    st.header("5 · Reuse the learned feature")
    st.markdown(r"""
If the network really learned the feature $p$ (and did not just memorise $h$), it can reuse it. Take a new target on
the same feature, $h' = g' \circ p$, freeze the first block and fit only the second, from $N$ fresh samples: that is
a one-dimensional fit of $g'$, so $N$ need not grow with $d$. The network from scratch and the kernel must find $p$
again, and need about $d^3$ samples or more.
""")
    if result is not None:
        widgets.transfer_panel(result, store, "learn")
    else:
        st.caption("Run step 3 first: its learned feature is the one reused here.")
    widgets.transfer_evidence(store)


def further_ui() -> None:
    """A gallery's last step: where its stored runs open (it hands out no classroom links: it runs nothing)."""
    st.header("Take it further")
    st.markdown("Every stored run opens in Explore with its replay and its learned link; the Results page "
                "compares them, and Figure 2 plots them all against n/d^k.")
    st.page_link("pages/1_Explore.py", label="Open the tour's run in Explore", icon=":material/explore:",
                 query_params=forms.params_from_config(tour.tour_config()))
    st.page_link("pages/3_Results.py", label="Compare stored runs", icon=":material/table_view:")


def classroom_ui(store) -> None:
    """The teacher's locked, signed link; its seed starts fresh for each teacher's session, never the shipped run's."""
    cfg = tour.tour_config()
    st.header("For teachers: a classroom link")
    st.markdown("Pick the run your class should see; the link opens Explore with these settings filled in and "
                "locked, so everyone sees the same run (and the store serves it at once after the first). "
                "The seed starts as a fresh one for this class, so the class watches a new run train.")
    st.session_state.setdefault("learn_c_seed", 1 + secrets.randbelow(forms.MAX_SEED))
    cols = st.columns([2, 3, 3, 4])  # the seed's ten digits whole at a projector's 1024 px
    c_d = cols[0].number_input("d", min_value=2, max_value=12, value=cfg.d, key="learn_c_d")
    c_mult = cols[1].selectbox("n as a multiple of d³", [0.25, 0.5, 1.0, 2.0, 4.0, 8.0], index=4, key="learn_c_mult")
    c_mode = cols[2].selectbox("mode", MODES, key="learn_c_mode")
    c_seed = cols[3].number_input("seed", min_value=0, max_value=forms.MAX_SEED, key="learn_c_seed",
                                  help=f"0 to {forms.MAX_SEED:,} (JAX keys take 32 bits)")
    try:
        classroom = tour.tour_config(d=int(c_d), n=specs.n_for(c_mult, int(c_d), cfg.k), mode=c_mode,
                                     seed=int(c_seed))
    except ConfigError as err:  # the box's bounds hold in the browser; a value that slips past them gets a line
        st.error(literal(err))
        st.stop()
    if store.has(classroom.key()):
        st.caption("This run is stored already: the class will see its result at once, not watch it train. "
                   "Change the seed for a new run.")
    # signed: in classroom mode the server launches a locked config only while the signature matches
    params = widgets.locked_params(classroom, store)
    if params is not None:
        st.page_link("pages/1_Explore.py", label="Open the classroom link", icon=":material/lock:",
                     query_params=params)
        widgets.classroom_link(params, "learn")


def main() -> None:
    st.set_page_config(page_title="Learn · hierpoly", page_icon=":material/school:", layout="wide")
    store = widgets.store_or_stop()
    st.title("A guided tour")
    st.markdown("Five steps, each a few seconds on a laptop. Marked **[seed]**: stated in the paper's summary; "
                "**[reconstructed]**: our reading of the paper's setup.")
    hermite_ui()
    target_ui()
    result = run_ui(store)
    why_ui()
    transfer_ui(result, store)
    if policy.can_launch():
        classroom_ui(store)
    else:
        further_ui()


main()
