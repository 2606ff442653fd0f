"""Explore: pick a config, run it in the background, watch it learn, share its URL."""
import streamlit as st

from hierpoly.config import RunConfig
from hierpoly.fieldspec import MORE, SIDEBAR, Choice, FieldSpec, PresetOrText, field_specs
from hierpoly.jobs import budget, policy
from hierpoly.jobs import records as jobs
from hierpoly.views import forms, monitor, plots, tour, widgets
from hierpoly.views.markdown import literal

PREFIX = "ex_"  # widget keys; a preset-or-text field's text box is PREFIX + name + "_text"
store = widgets.store_or_stop()


# ------------------------------------------------ URL -> controls (once per new URL)
def _apply(url_values: dict) -> dict:
    """Put the form's starting values into the controls' state; returns why any URL value was dropped."""
    values, dropped = forms.form_values(url_values, tour.tour_config())
    for name in forms.FIELDS:
        st.session_state[PREFIX + name] = values[name]
    for spec in field_specs(RunConfig):
        if isinstance(spec.edit, PresetOrText):
            choice, text = forms.preset_or_text(spec.edit, values[spec.name])
            st.session_state[PREFIX + spec.name], st.session_state[PREFIX + spec.name + "_text"] = choice, text
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
# a classroom link opens with the sidebar out of the way: the class watches, the settings are fixed
st.set_page_config(page_title="Explore · hierpoly", page_icon=":material/explore:", layout="wide",
                   initial_sidebar_state="collapsed" if locked else "auto")

st.title("Explore one run")
st.caption("Train the three-layer network on h = g ∘ p and watch it learn the feature p. "
           "Every setting lives in the page's URL: copy it to share the run.")
if locked:
    st.info("Classroom link: the settings are fixed by the link you opened.", icon=":material/lock:")
for name, message in url_errors.items():  # the link's text is shown as text, never as Markdown
    st.warning(f"Ignored {literal(name)} from the link: {literal(message)}")


def _error(name: str, value) -> None:
    message = forms.field_error(name, value)
    if message:
        st.error(literal(message), icon=":material/error:")


def _control(spec: FieldSpec, mode: str | None):
    """One field's control and its value; greyed out and None in a mode the field does not apply to."""
    off = spec.only_mode not in (None, mode)
    label = spec.label + (f" ({spec.only_mode} only)" if off else "")
    key, disabled, edit = PREFIX + spec.name, locked or off, spec.edit
    if isinstance(edit, Choice):
        value = st.selectbox(label, edit.options, key=key, disabled=disabled, help=spec.help)
    elif isinstance(edit, PresetOrText):
        value = st.selectbox(label, [*edit.presets, edit.custom], key=key, disabled=disabled, help=spec.help)
        if value == edit.custom:
            value = st.text_input(edit.text_label, key=key + "_text", disabled=disabled, placeholder=edit.placeholder)
    else:
        value = st.number_input(label, key=key, disabled=disabled, help=spec.help, step=edit.step,
                                format=edit.format, placeholder=edit.placeholder)
    if off:
        return None
    _error(spec.name, value)
    return value


# ------------------------------------------------------------------- controls
def controls() -> dict:
    """The sidebar's widgets, made from RunConfig's declaration; returns the form's values (None: derived)."""
    values = {}
    groups = forms.form_groups()
    with st.sidebar:
        st.header("Settings")
        for spec in groups[SIDEBAR]:
            values[spec.name] = _control(spec, values.get("mode"))
        with st.expander("More settings"):
            for spec in groups[MORE]:
                values[spec.name] = _control(spec, values.get("mode"))
    return values


check = forms.build_config(controls())
if "" in check.errors:
    st.sidebar.error(literal(check.errors[""]), icon=":material/error:")
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

if cfg.mode == "layerwise":
    rates = "/".join(f"{lr:g}" if lr is not None else "1/L" for lr in (cfg.lr, cfg.lr2))
    decays = f"{cfg.weight_decay:g}/{cfg.weight_decay2:g}"
    steps_text = f"T1/T2 = {cfg.steps}/{cfg.steps2}, η1/η2 = {rates}, ξ1/ξ2 = {decays}"
else:
    steps_text = f"steps = {cfg.steps}, lr = {cfg.lr:g}"
st.markdown(f"**{forms.run_label(cfg)}** · m1 = {cfg.m1}, m2 = {cfg.m2}, {steps_text}")
col_run, col_cancel = st.columns([1, 5])
# gallery launches nothing; in classroom mode an edited locked link is refused (jobs/policy.py)
link_refused = locked and policy.current_mode() == "classroom" and not policy.signature_matches(cfg, signature, store)
if link_refused:
    st.error("This locked link was changed after it was made (its signature does not match), so it cannot be "
             "run. Open the link your teacher gave you again.")
run_clicked = cancel_clicked = False
visitor = widgets.visitor()
if policy.can_launch():
    # a run the mode would refuse is not offered: Run is greyed out with the reason beside it
    refusal = None if result is not None or live else widgets.run_refusal("ex_run", cfg, store, locked=locked,
                                                                         signature=signature)
    run_clicked = col_run.button("▶ Run", type="primary", disabled=result is not None or live or refusal is not None,
                                 key="ex_run")
    if refusal is not None and not link_refused:
        col_cancel.caption(f"Run is off: {literal(refusal)}")
if live and policy.may_cancel(job, visitor):  # classroom: only the visitor who started it
    cancel_clicked = col_cancel.button("■ Cancel", key="ex_cancel")
with st.expander("Share this run"):
    st.markdown(f"Key `{key[:12]}`: the same settings give the same key, and the store serves it.")
    st.code(forms.share_url((st.context.url or "").split("?")[0].rsplit("/", 1)[0], "Explore", params),
            language=None, wrap_lines=True)

if run_clicked:
    try:
        policy.submit_from_web(cfg, store, visitor, locked=locked, signature=signature)
    except policy.REFUSALS as err:
        st.error(f"Not launched: {literal(err)}")
        st.stop()
    st.rerun()
if cancel_clicked and job is not None:
    try:
        policy.cancel_from_web(job.job_id, store, visitor)
    except policy.PolicyError as err:
        st.error(literal(err))
        st.stop()
    st.rerun()


# ---------------------------------------------------------------- the result
def show_result(result) -> None:
    """The feature first, then the test loss and how the run ended, the learned feature, link, curves, metadata."""
    metrics = result.metrics
    said = monitor.outcome(result)  # the message may come from a bundle: shown as text
    (st.success if said.found else st.info)(f"Stored result. {said.headline}")
    st.markdown(f"{said.loss}  \n{literal(said.ending)}")  # the ending may quote a bundle's message
    # short values, so no metric is cut at a projector's 1024 px with the sidebar open
    cols = st.columns(4)
    cols[0].metric("feature correlation", f"{metrics['feature_corr']:.3f}",
                   help="Pearson corr(g, p) of the learned feature g with p, on the same points")
    cols[1].metric("test loss", f"{metrics['test_loss']:.3f}",
                   help=f"mean square error over {result.config.n_eval:,} fresh points; predicting 0 scores "
                        "E[h²] = 1 on average")
    cols[2].metric("train loss", f"{metrics['train_loss']:.2e}")
    cols[3].metric("wall time", monitor.format_seconds(result.meta.get("seconds", 0.0)))
    with st.expander("Why can the correlation be high while the test loss is not small?",
                     expanded=metrics["feature_corr"] >= 0.9 and metrics["test_loss"] >= 0.2):
        st.markdown(monitor.HEAVY_TAIL.format(n_eval=result.config.n_eval))
    hist = monitor.history_frame(result.history)
    if result.samples and len(result.samples.get("p", ())):
        show_samples(result, hist)
    else:
        st.info("This result carries no test-point samples (a baseline), so there are no scatter plots.")
        st.plotly_chart(plots.corr_figure(hist), key="chart_corr", config=plots.CHART_CONFIG)
    st.plotly_chart(plots.loss_figure(hist), key="chart_loss", config=plots.CHART_CONFIG)
    st.download_button("Download the history (CSV)", monitor.histories_csv([result]),
                       file_name=f"history_{key[:12]}.csv", mime="text/csv", key="ex_csv")
    with st.expander("Run details: key, work, metadata"):
        st.markdown(f"key `{key}` · about {budget.estimate(cfg).flops:.2g} floating-point operations at the cap")
        st.json({"config": cfg.to_dict(), "message": result.message, "meta": result.meta})


def show_samples(result, hist) -> None:
    """The learned feature against p (a replay when snapshots were stored), the learned link, predictions."""
    samples, metrics = result.samples, result.metrics
    left, right = st.columns(2)
    with left:
        if not widgets.replay(result, "ex"):
            st.plotly_chart(plots.feature_scatter(samples, metrics["feature_corr"]), key="chart_scatter",
                            config=plots.CHART_CONFIG)
    fit = monitor.link_fit(samples, cfg.link, result.meta.get("C"))
    right.plotly_chart(plots.link_figure(samples, fit.curve, fit.alpha, fit.beta), key="chart_link",
                       config=plots.CHART_CONFIG)
    right.caption(f"The learned feature is a rescaled p: g ≈ {plots.affine(fit.alpha, fit.beta)}. On that scale "
                  "the true link is g ↦ C·poly((g − β)/α), the black curve; when the hierarchy is learned, "
                  "the points (g(x), h_θ(x)) lie on it.")
    left, right = st.columns(2)
    left.plotly_chart(plots.prediction_scatter(samples, metrics["test_loss"]), key="chart_pred",
                      config=plots.CHART_CONFIG)
    right.plotly_chart(plots.corr_figure(hist), key="chart_corr", config=plots.CHART_CONFIG)


if result is not None:
    show_result(result)
    widgets.transfer_panel(result, store, "ex")
elif live:
    widgets.live_job(job.job_id, store, "ex")
elif job is not None and job.status in ("failed", "diverged", "cancelled"):
    again = " Press Run to try again." if policy.can_launch() else ""
    st.error(f"The last run of this config {job.status}: {literal(job.message)}.{again}")
    if job.progress:
        st.plotly_chart(plots.loss_figure(monitor.history_frame(job.progress)), key="chart_failed_loss",
                        config=plots.CHART_CONFIG)
elif policy.can_launch():
    when = monitor.estimate_text(monitor.time_estimate(cfg, store.summaries()))
    st.info(f"Not run yet. Press Run to train it in the background: {when}.")
else:  # a gallery trains nothing
    st.info("This run is not in the gallery. The gallery shows stored results only: open one from the Results "
            "page or the Learn tour.")

others = [j for j in jobs.live_jobs(store) if j.key != key]
if others:
    st.subheader("Other jobs in progress")
    for other in others:
        st.page_link("pages/1_Explore.py", label=f"{other.status}: {forms.run_label(other.config)}",
                     query_params=forms.params_from_config(other.config))
