"""Explore: pick a config, run it in the background, watch it learn, share its URL."""
import uuid

import streamlit as st

from hierpoly.config import ARCHS, MODES, SIGMA1
from hierpoly.runs import budget, jobs, policy
from hierpoly.targets import LINK_PRESETS, SUPPORTED_K
from hierpoly.views import forms, plots
from hierpoly.views.system import open_checked

st.set_page_config(page_title="Explore · hierpoly", page_icon="🔭", layout="wide")
store, problems = open_checked()  # damage and the mode's rules: a banner, never a traceback
for problem in problems:
    st.warning(problem, icon="⚠️")
if store is None:
    st.stop()
st.sidebar.caption(policy.describe())
CUSTOM = "custom coefficients"
PREFIX = "ex_"  # widget keys


# ------------------------------------------------ URL -> controls (once per new URL)
def _apply(values: dict) -> dict:
    """Put config values into the controls' session state (None: the mode's default); returns why any was dropped."""
    merged = {**forms.DEFAULT_VALUES, **values}
    link = str(merged.get("link", "cubic"))
    preset = link.strip().lower() in LINK_PRESETS
    state = st.session_state
    state[PREFIX + "link"] = link.strip().lower() if preset else CUSTOM
    state[PREFIX + "coefs"] = "" if preset else link
    for name in ("d", "n", "m2", "seed", "n_test", "n_eval", "m1", "steps", "lr", "weight_decay", "b_scale", "tol", "patience"):
        state[PREFIX + name] = merged.get(name)
    state[PREFIX + "seed"] = merged.get("seed", 0)
    state[PREFIX + "m2"] = merged.get("m2", 1000)
    dropped = {}
    for name, options, default in (("k", SUPPORTED_K, 3), ("mode", MODES, "joint"), ("sigma1", SIGMA1, "cube"),
                                   ("arch", ARCHS, "three_layer")):
        value = merged.get(name, default)
        if value not in options:
            dropped[name] = forms.field_error(name, value) or f"{value!r} is not one of {options}"
            value = default
        state[PREFIX + name] = value
    return dropped


url_params = st.query_params.to_dict()
parsed = forms.values_from_params(url_params)
# Re-read the URL when it changed, or when Streamlit dropped the controls' state (another page was shown).
if url_params != st.session_state.get("ex_url") or PREFIX + "d" not in st.session_state:
    if not parsed.values and not parsed.errors and "ex_last" in st.session_state:  # back from another page
        url_params = dict(st.session_state["ex_last"])
        parsed = forms.values_from_params(url_params)
    dropped = _apply(parsed.values)
    st.session_state["ex_url_errors"] = {**parsed.errors, **dropped}
    st.session_state["ex_locked"] = parsed.locked
    st.session_state["ex_sig"] = str(url_params.get(policy.SIGNATURE_PARAM, "")) or None
    st.session_state["ex_url"] = url_params
locked = st.session_state.get("ex_locked", False)
url_errors = st.session_state.get("ex_url_errors", {})

st.title("Explore one run")
st.caption("Train the three-layer network on h = g ∘ p and watch it learn the feature p. "
           "Every setting lives in the page's URL: copy it to share the run.")
if locked:
    st.info("🔒 Classroom link: the settings are fixed by the link you opened.")
for name, message in url_errors.items():
    st.warning(f"Ignored `{name}` from the link: `{message.replace('`', chr(39))}`")  # link text shown as code


def _error(name: str, value) -> None:
    message = forms.field_error(name, value)
    if message:
        st.error(message, icon="⚠️")


# ------------------------------------------------------------------- controls
with st.sidebar:
    st.header("Settings")
    d = st.number_input("d: input dimension", key=PREFIX + "d", step=1, disabled=locked)
    _error("d", d)
    n = st.number_input("n: training samples", key=PREFIX + "n", step=256, disabled=locked,
                        help="The paper's scale: n ≈ d^k. Layer-wise training splits n into D1 and D2.")
    _error("n", n)
    k = st.selectbox("k: degree of the feature p", SUPPORTED_K, key=PREFIX + "k", disabled=locked)
    link_choice = st.selectbox("link g", [*LINK_PRESETS, CUSTOM], key=PREFIX + "link", disabled=locked,
                               help="g(z) = C·poly(z) with C chosen so that E[h²] = 1 exactly.")
    link = link_choice
    if link_choice == CUSTOM:
        link = st.text_input("coefficients c0, c1, c2, … of g", key=PREFIX + "coefs", disabled=locked,
                             placeholder="0, 1, 0, 1")
    _error("link", link)
    mode = st.selectbox("training mode", MODES, key=PREFIX + "mode", disabled=locked,
                        help="joint: Adam on all parameters (Figure 2). layerwise: Algorithm 1, two ridge stages.")
    sigma1 = st.selectbox("σ1: first activation", SIGMA1, key=PREFIX + "sigma1", disabled=locked)
    m1 = st.number_input("m1: first width (empty = d² joint, C(d+k, k) layer-wise)", key=PREFIX + "m1", step=1,
                         disabled=locked, placeholder="auto")
    _error("m1", m1)
    m2 = st.number_input("m2: second width", key=PREFIX + "m2", step=50, disabled=locked)
    _error("m2", m2)
    steps = st.number_input("steps (joint: cap; layer-wise: T1 = T2; empty = default)", key=PREFIX + "steps",
                            step=100, disabled=locked, placeholder="auto")
    _error("steps", steps)
    lr = st.number_input("learning rate (empty = default)", key=PREFIX + "lr", format="%g", step=1e-3,
                         disabled=locked, placeholder="auto")
    _error("lr", lr)
    seed = st.number_input("seed", key=PREFIX + "seed", step=1, disabled=locked)
    _error("seed", seed)
    with st.expander("More settings"):
        n_test = st.number_input("monitor points (the live curves)", key=PREFIX + "n_test", step=256, disabled=locked)
        _error("n_test", n_test)
        n_eval = st.number_input("evaluation points (the final test loss: h is heavy-tailed)", key=PREFIX + "n_eval",
                                 step=65536, disabled=locked, placeholder="1048576")
        _error("n_eval", n_eval)
        weight_decay = st.number_input("weight decay ξ (layer-wise)", key=PREFIX + "weight_decay",
                                       format="%g", disabled=locked, placeholder="1e-06")
        _error("weight_decay", weight_decay)
        b_scale = st.number_input("b ~ Uniform[-b, b]", key=PREFIX + "b_scale", format="%g",
                                  disabled=locked, placeholder="4")
        _error("b_scale", b_scale)
        tol = st.number_input("joint: stop when the train loss improves by less than (relative)", key=PREFIX + "tol",
                              format="%g", step=1e-4, disabled=locked, placeholder="0.001")
        _error("tol", tol)
        patience = st.number_input("joint: … over this many steps", key=PREFIX + "patience", step=100,
                                   disabled=locked, placeholder="500")
        _error("patience", patience)
        arch = st.selectbox("model", ARCHS, key=PREFIX + "arch", disabled=locked,
                            help="three_layer: the paper's network; kernel and two_layer: Figure 2's baselines")

values = dict(d=d, n=n, k=k, link=link, mode=mode, sigma1=sigma1, m1=m1, m2=m2, steps=steps, lr=lr, seed=seed,
              n_test=n_test, n_eval=n_eval, weight_decay=weight_decay, b_scale=b_scale, tol=tol, patience=patience, arch=arch)
check = forms.build_config(values)
if "" in check.errors:
    st.sidebar.error(check.errors[""], icon="⚠️")
for warning in check.warnings:
    st.sidebar.warning(warning)

if check.config is None:
    st.error("Fix the highlighted settings in the sidebar; nothing is launched until they are valid.")
    st.stop()

# --------------------------------------------------------- controls -> URL
cfg = check.config
params = forms.params_from_config(cfg)
signature = st.session_state.get("ex_sig")
if locked:
    params[forms.LOCK_PARAM] = "1"
    if signature:
        params[policy.SIGNATURE_PARAM] = signature
if st.query_params.to_dict() != params:
    st.query_params.from_dict(params)
st.session_state["ex_url"] = params
st.session_state["ex_last"] = params

key = cfg.key()
result = store.get(key)
job = jobs.for_key(key, store)
live = job is not None and job.status in jobs.LIVE

st.markdown(f"**{forms.run_label(cfg)}** · m1 = {cfg.m1}, m2 = {cfg.m2}, steps = {cfg.steps}, "
            f"lr = {cfg.lr if cfg.lr is not None else '1/L'} · key `{key[:12]}`")
col_run, col_cancel, col_share = st.columns([1, 1, 4])
# --- mode: gallery launches nothing; classroom refuses an edited locked link (policy.py)
link_refused = locked and policy.current_mode() == "classroom" and not policy.signature_matches(cfg, signature, store)
if link_refused:
    st.error("This locked link was changed after it was made (its signature does not match), so it cannot be "
             "run. Open the link your teacher gave you again.")
run_clicked = cancel_clicked = False
if policy.can_launch():
    run_clicked = col_run.button("▶ Run", type="primary", disabled=result is not None or live or link_refused,
                                 key="ex_run")
    cancel_clicked = col_cancel.button("■ Cancel", disabled=not live, key="ex_cancel")
base = (st.context.url or "").split("?")[0]
col_share.code(base + forms.url_query(params), language=None)

if run_clicked:
    try:
        visitor = st.session_state.setdefault("visitor", uuid.uuid4().hex)
        policy.submit_from_web(cfg, store, visitor, locked=locked, signature=signature)
    except policy.REFUSALS as err:
        st.error(f"Not launched: {err}")
        st.stop()
    st.rerun()
if cancel_clicked and job is not None:
    jobs.cancel(job.job_id, store)
    st.rerun()


# ---------------------------------------------------------------- live view
@st.fragment(run_every=1.0)
def live_panel(job_id: str) -> None:
    """Reads the job table only; when the job ends, redraws the whole page."""
    current = jobs.get(job_id, store)
    if current is None or current.status not in jobs.LIVE:
        st.rerun()
    view = forms.progress_view(current.status, current.message, current.progress, current.total_steps)
    st.progress(view.fraction, text=view.text)
    left, right = st.columns(2)
    left.plotly_chart(plots.loss_figure(view.history), key="chart_live_loss", config=plots.CHART_CONFIG)
    right.plotly_chart(plots.corr_figure(view.history), key="chart_live_corr", config=plots.CHART_CONFIG)
    st.caption("The job runs in its own process: closing this tab does not stop it; open the same URL to come back.")


if result is not None:
    st.success(f"Stored result: {result.message}")
    m = result.metrics
    cols = st.columns(4)
    cols[0].metric("test loss", f"{m['test_loss']:.4f}",
                   help=f"over {result.config.n_eval:,} fresh points; predicting 0 scores 1")
    cols[1].metric("feature correlation", f"{m['feature_corr']:.3f}", help="Pearson corr(g, p) on the same points")
    cols[2].metric("train loss", f"{m['train_loss']:.4f}")
    cols[3].metric("wall time", forms.format_seconds(result.meta.get("seconds", 0.0)))
    samples = result.samples
    if samples and len(samples.get("p", ())):
        left, right = st.columns(2)
        left.plotly_chart(plots.feature_scatter(samples, m["feature_corr"]), key="chart_scatter",
                          config=plots.CHART_CONFIG)
        right.plotly_chart(plots.prediction_scatter(samples, m["test_loss"]), key="chart_pred",
                           config=plots.CHART_CONFIG)
        fit = forms.link_fit(samples, cfg.link, result.meta.get("C"))
        left.plotly_chart(plots.link_figure(samples, fit.curve, fit.alpha, fit.beta), key="chart_link",
                          config=plots.CHART_CONFIG)
        right.markdown(
            "**Reading the learned link.** The network computes h_θ from the learned feature g alone. "
            f"The learned feature is a rescaled p: a least-squares fit gives g ≈ {plots.affine(fit.alpha, fit.beta)}. "
            "On that scale the true link is g ↦ C·poly((g − β)/α), the black curve; when the hierarchy is "
            "learned, the points (g(x), h_θ(x)) lie on it."
        )
    else:
        st.info("This result carries no test-point samples (a baseline), so there are no scatter plots.")
    hist = forms.history_frame(result.history)
    left, right = st.columns(2)
    left.plotly_chart(plots.loss_figure(hist), key="chart_loss", config=plots.CHART_CONFIG)
    right.plotly_chart(plots.corr_figure(hist), key="chart_corr", config=plots.CHART_CONFIG)
    st.download_button("Download the history (CSV)", forms.histories_csv([result]), file_name=f"history_{key[:12]}.csv",
                       mime="text/csv", key="ex_csv")
    with st.expander("Run metadata"):
        st.json({"key": key, "config": cfg.to_dict(), "message": result.message, "meta": result.meta})
elif live:
    live_panel(job.job_id)
elif job is not None and job.status in ("failed", "diverged", "cancelled"):
    st.error(f"The last run of this config {job.status}: {job.message}. Press Run to try again.")
    if job.progress:
        hist = forms.history_frame(job.progress)
        st.plotly_chart(plots.loss_figure(hist), key="chart_failed_loss", config=plots.CHART_CONFIG)
else:
    est = budget.estimate(cfg)
    st.info(f"Not run yet. Press Run to train it in the background (about {est.flops:.2g} floating-point "
            f"operations, about {policy.estimated_seconds(cfg):.0f} s of CPU).")

others = [j for j in jobs.list_jobs(store) if j.status in jobs.LIVE and j.key != key]
if others:
    st.subheader("Other jobs in progress")
    for other in others:
        st.page_link("pages/1_Explore.py", label=f"{other.status}: {forms.run_label(other.config)}",
                     query_params=forms.params_from_config(other.config))
