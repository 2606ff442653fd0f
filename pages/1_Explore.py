"""Explore: pick a config, run it in the background, watch it learn, share its URL."""
import streamlit as st

from hierpoly.config import RunConfig
from hierpoly.fieldspec import MORE, SIDEBAR, Choice, FieldSpec, PresetOrText, field_specs
from hierpoly.jobs import budget, policy
from hierpoly.jobs import records as jobs
from hierpoly.views import forms, monitor, plots, tour, widgets
from hierpoly.views.markdown import literal

PREFIX = "ex_"  # widget keys; a preset-or-text field's text box is PREFIX + name + "_text"


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


def url_ui() -> tuple[bool, dict]:
    """Read a new URL into the controls (or the last one, back from another page); returns (locked, URL errors)."""
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
    return st.session_state.get("ex_locked", False), st.session_state.get("ex_url_errors", {})


def header_ui(locked: bool, url_errors: dict) -> None:
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


def _control(spec: FieldSpec, mode: str | None, locked: bool):
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
def controls_ui(locked: bool) -> dict:
    """The sidebar's widgets, made from RunConfig's declaration; returns the form's values (None: derived)."""
    values = {}
    groups = forms.form_groups()
    with st.sidebar:
        st.header("Settings")
        for spec in groups[SIDEBAR]:
            values[spec.name] = _control(spec, values.get("mode"), locked)
        with st.expander("More settings"):
            for spec in groups[MORE]:
                values[spec.name] = _control(spec, values.get("mode"), locked)
    return values


def config_ui(locked: bool) -> RunConfig:
    """The config the controls make, written back to the URL; the page stops, saying why, when it is invalid."""
    check = forms.build_config(controls_ui(locked))
    if "" in check.errors:
        st.sidebar.error(literal(check.errors[""]), icon=":material/error:")
    for warning in check.warnings:
        st.sidebar.warning(warning)
    if check.config is None:
        st.error("Fix the highlighted settings in the sidebar; nothing is launched until they are valid.")
        st.stop()
    params = forms.params_from_config(check.config)
    signature = st.session_state.get("ex_sig")
    if locked:
        params[forms.LOCK_PARAM] = "1"
        if signature:
            params[policy.SIGNATURE_PARAM] = signature
    if st.query_params.to_dict() != params:
        st.query_params.from_dict(params)
    st.session_state["ex_url"] = params
    st.session_state["ex_last"] = params
    return check.config


def settings_line(cfg: RunConfig) -> str:
    """'**d = 6, …** · m1 = 100, m2 = 1000, steps = 3000, lr = 0.01'."""
    if cfg.mode == "layerwise":
        rates = "/".join(f"{lr:g}" if lr is not None else "1/L" for lr in (cfg.lr, cfg.lr2))
        decays = f"{cfg.weight_decay:g}/{cfg.weight_decay2:g}"
        steps_text = f"T1/T2 = {cfg.steps}/{cfg.steps2}, η1/η2 = {rates}, ξ1/ξ2 = {decays}"
    else:
        steps_text = f"steps = {cfg.steps}, lr = {cfg.lr:g}"
    return f"**{forms.run_label(cfg)}** · m1 = {cfg.m1}, m2 = {cfg.m2}, {steps_text}"


# ------------------------------------------------------------------ Run and Cancel
def run_ui(cfg: RunConfig, store, result, job, locked: bool) -> str | None:
    """Run, Cancel and the share box; acts on a click. Returns why Run is off (None: it can be pressed)."""
    live = job is not None and job.status in jobs.LIVE
    signature = st.session_state.get("ex_sig")
    col_run, col_cancel = st.columns([1, 5])
    # gallery launches nothing; in classroom mode an edited locked link is refused (jobs/policy.py)
    if locked and policy.current_mode() == "classroom" and not policy.signature_matches(cfg, signature, store):
        st.error("This locked link was changed after it was made (its signature does not match), so it cannot be "
                 "run. Open the link your teacher gave you again.")
        refusal = "the link was changed after it was made"
    else:
        refusal = None if result is not None or live or not policy.can_launch() else widgets.run_refusal(
            "ex_run", cfg, store, locked=locked, signature=signature)
        if refusal is not None:  # a run the mode would refuse is greyed out, with the reason beside it
            col_cancel.caption(f"Run is off: {literal(refusal)}")
    visitor = widgets.visitor()
    run_clicked = policy.can_launch() and col_run.button(
        "▶ Run", type="primary", disabled=result is not None or live or refusal is not None, key="ex_run")
    cancel_clicked = live and policy.may_cancel(job, visitor) and col_cancel.button("■ Cancel", key="ex_cancel")
    widgets.offered(cfg.key(), policy.can_launch() and result is None and not live and refusal is None)
    share_ui(cfg)
    if run_clicked:
        widgets.watch(cfg.key())  # this page plays the run back if its training is over before a redraw
        try:
            policy.submit_from_web(cfg, store, visitor, locked=locked, signature=signature)
        except policy.REFUSALS as err:
            st.error(f"Not launched: {literal(err)}")
            st.stop()
        st.rerun()
    if cancel_clicked:
        try:
            policy.cancel_from_web(job.job_id, store, visitor)
        except policy.PolicyError as err:
            st.error(literal(err))
            st.stop()
        st.rerun()
    return refusal if policy.can_launch() else "the gallery trains nothing"


def share_ui(cfg: RunConfig) -> None:
    with st.expander("Share this run"):
        st.markdown(f"Key `{cfg.key()[:12]}`: the same settings give the same key, and the store serves it.")
        st.code(forms.share_url((st.context.url or "").split("?")[0].rsplit("/", 1)[0], "Explore",
                                st.session_state["ex_url"]), language=None, wrap_lines=True)


# ---------------------------------------------------------------- the result
def result_ui(result, store, locked: bool = False) -> None:
    """The feature first, then the test loss and how the run ended, the learned feature, link, curves, metadata.

    On a locked link (a class, every page on one shared run) the charts wait behind a toggle:
    six browsers drawing five charts each at once beside the server on 2 cores took 5-8 s more to show the result."""
    metrics, cfg = result.metrics, result.config
    said = monitor.outcome(result)  # the message may come from a bundle: shown as text
    (st.success if said.found else st.info)(f"Stored result. {said.headline}")
    st.markdown(f"{said.loss}  \n{literal(said.ending)}")  # the ending may quote a bundle's message
    # short values, so no metric is cut at a projector's 1024 px with the sidebar open
    cols = st.columns(4)
    cols[0].metric("feature correlation", monitor.format_corr(metrics["feature_corr"]),
                   help="Pearson corr(g, p) of the learned feature g with p, on the same points")
    cols[1].metric("test loss", monitor.format_loss(metrics["test_loss"]),
                   help=f"mean square error over {cfg.n_eval:,} fresh points; predicting 0 scores "
                        "E[h²] = 1 on average")
    cols[2].metric("train loss", monitor.format_loss(metrics["train_loss"]))
    cols[3].metric("wall time", monitor.format_seconds(result.meta.get("seconds", 0.0)))
    with st.expander("Why can the correlation be high while the test loss is not small?",
                     expanded=metrics["feature_corr"] >= 0.9 and metrics["test_loss"] >= 0.2):
        st.markdown(monitor.HEAVY_TAIL.format(n_eval=cfg.n_eval))
    hist = monitor.history_frame(result.history)
    charts = not locked or st.toggle("Show the charts: the replay, the link, the prediction, the curves",
                                     key="ex_charts")
    if result.samples and len(result.samples.get("p", ())):
        samples_ui(result, hist, charts)
    else:
        st.info("This result carries no test-point samples (a baseline), so there are no scatter plots.")
        if charts:
            st.plotly_chart(plots.corr_figure(hist), key="chart_corr", config=plots.CHART_CONFIG)
    if charts:
        st.plotly_chart(plots.loss_figure(hist), key="chart_loss", config=plots.CHART_CONFIG)
    st.download_button("Download the history (CSV)", monitor.histories_csv([result]),
                       file_name=f"history_{result.key[:12]}.csv", mime="text/csv", key="ex_csv")
    with st.expander("Run details: key, work, metadata"):
        st.markdown(f"key `{result.key}` · about {budget.estimate(cfg).flops:.2g} floating-point operations at the cap")
        st.json({"config": cfg.to_dict(), "message": result.message, "meta": result.meta})


def samples_ui(result, hist, charts: bool = True) -> None:
    """The learned feature against p (a replay when snapshots were stored), the learned link, the predictions and
    the correlation's curve; without `charts` the learned feature at its last snapshot only, as a picture."""
    samples, metrics, cfg = result.samples, result.metrics, result.config
    left, right = st.columns(2)
    with left:
        if not charts and widgets.last_frame(result):  # a class: the playback's last picture, no chart to build
            return
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


def state_ui(cfg: RunConfig, store, result, job, refusal: str | None, locked: bool) -> None:
    """What this config has: its result, its live job, its last failure, or what running it would take.

    A class on a locked link watches the scatter and the correlation live, without the loss curves: six
    pages redrawing three charts a second each is more than a shared classroom machine keeps up with."""
    if result is not None:
        if widgets.play_back(result, "ex"):  # a run this page waited for: its training played back first
            return
        result_ui(result, store, locked)
        widgets.transfer_panel(result, store, "ex")
    elif job is not None and job.status in jobs.LIVE:
        widgets.live_job(job.job_id, store, "ex", curves=not locked)
    elif job is not None and job.status in ("failed", "diverged", "cancelled"):
        again = " Press Run to try again." if refusal is None else ""
        st.error(f"The last run of this config {job.status}: {literal(job.message)}.{again}")
        if job.progress:
            st.plotly_chart(plots.loss_figure(monitor.history_frame(job.progress)), key="chart_failed_loss",
                            config=plots.CHART_CONFIG)
    elif policy.can_launch():
        when = monitor.estimate_text(monitor.time_estimate(cfg, store.summaries()))
        press = "Press Run to train it in the background" if refusal is None else "Training it would take"
        st.info(f"Not run yet. {press}: {when}.")
    else:  # a gallery trains nothing
        st.info("This run is not in the gallery. The gallery shows stored results only: open one from the Results "
                "page or the Learn tour.")


def others_ui(key: str, store) -> None:
    others = [j for j in jobs.live_jobs(store) if j.key != key]
    if others:
        st.subheader("Other jobs in progress")
        for other in others:
            st.page_link("pages/1_Explore.py", label=f"{other.status}: {forms.run_label(other.config)}",
                         query_params=forms.params_from_config(other.config))


def main() -> None:
    store = widgets.store_or_stop()
    locked, url_errors = url_ui()
    # a classroom link opens with the sidebar out of the way: the class watches, the settings are fixed
    st.set_page_config(page_title="Explore · hierpoly", page_icon=":material/explore:", layout="wide",
                       initial_sidebar_state="collapsed" if locked else "auto")
    header_ui(locked, url_errors)
    cfg = config_ui(locked)
    key = cfg.key()
    result, job = store.get(key), jobs.for_key(key, store)
    st.markdown(settings_line(cfg))
    refusal = run_ui(cfg, store, result, job, locked)
    state_ui(cfg, store, result, job, refusal, locked)
    others_ui(key, store)


main()
