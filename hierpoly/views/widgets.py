"""Streamlit blocks that more than one page shows: a job's live panel, a run's replay, a classroom link,
the warm worker's line in the sidebar, a finished run's feature reused for a new link.

Pages compose these; the numbers come from ``monitor`` and ``forms``, the
figures from ``plots``. No JAX.
"""
from __future__ import annotations

import functools
import io
import socket
import time
import uuid

import pandas as pd
import streamlit as st

from hierpoly.config import source_problem
from hierpoly.jobs import pace, policy, records, warmup
from hierpoly.study import presets
from hierpoly.study.transfer import ROLES, report, transfer_runs
from hierpoly.views import forms, monitor, plots, tour
from hierpoly.views.markdown import literal
from hierpoly.views.system import open_checked

PHASE_MARKS = {"done": "✓ {}", "now": "**▶ {}**", "next": "{}"}
# what each phase is, in the words the phase line shows
PHASE_NAMES = {"starting": "starting Python and JAX", "tuning": "tuning", "compiling": "compiling",
               "training": "training", "evaluating": "evaluating"}


def through_the_app() -> None:
    """Send a deep link that reached a page file directly back through app.py's navigation.

    With a pages/ folder, Streamlit's first request in a server process runs the linked page
    file itself (its older multipage mode: a sidebar naming app.py "app", no icons) until
    app.py's ``st.navigation`` has run once. Leaving that mode and rerunning makes app.py run
    and route to the same page (the page's URL path gives it the same id in both modes).
    """
    from streamlit.runtime.pages_manager import PagesManager

    if PagesManager.uses_pages_directory and not st.session_state.get("_routed"):
        st.session_state["_routed"] = True  # once per session: a rerun must never swallow a click
        PagesManager.uses_pages_directory = False
        st.rerun()


def store_or_stop():
    """The app's store, with its problems as banners, the mode and the warm worker in the sidebar; stops if unusable."""
    through_the_app()
    store, problems = open_checked()  # damage and the mode's rules: a banner, never a traceback
    for problem in problems:
        st.warning(problem, icon=":material/warning:")
    st.sidebar.caption(policy.describe())
    if store is None:
        st.stop()
    if warmup.wanted(policy.current_mode()):
        _warm_worker(str(store.directory), store)
        with st.sidebar:
            warm_line(store)
    return store


@st.cache_resource(show_spinner=False)
def _warm_worker(directory: str, _store) -> None:
    """Once per server process and store: the worker that compiles the default run before the first click.

    Explore and Learn both start from the tour's run, so its shapes are the ones a class clicks first.
    """
    warmup.start(_store, [tour.tour_config()])


def warm_line(store, every: float = 2.0) -> None:
    """The warm worker's state, redrawn every `every` seconds until it settles (reads the job table only)."""
    state = warmup.readiness(store)
    if state.settled:
        st.caption(warmup.describe(state))
        return

    @st.fragment(run_every=every)
    def line() -> None:
        now = warmup.readiness(store)
        if now.settled:
            st.rerun()  # the whole page, once: it then shows the settled line and polls no more
        st.caption(warmup.describe(now))

    line()


def visitor() -> str:
    """Who is asking: the client's network address when Streamlit knows it, else this browser session.

    The classroom's per-visitor limit and "cancel only your own runs" count by it, so
    an address keeps one allowance however many tabs it opens or reloads. Streamlit
    gives no address for localhost (one machine: the session then stands for it).
    """
    address = st.context.ip_address
    return f"address {address}" if address else st.session_state.setdefault("visitor", uuid.uuid4().hex)


def run_refusal(button: str, cfg, store, **link) -> str | None:
    """Why the Run button with key `button` is off for cfg (``policy.launch_refusal``), or None.

    None at once in the rerun a click on it started, where the submission checks the same
    rules (``policy.submit_from_web``): a click checks the budget once. (Disabled then, the
    button would drop the click.)
    """
    if st.session_state.get(button):
        return None
    return policy.launch_refusal(cfg, store, visitor(), **link)


def launch_or_stop(cfg, store, what: str = "") -> None:
    """Submit a run for this visitor; a refusal is one line on the page, and the page stops there."""
    try:
        policy.submit_from_web(cfg, store, visitor())
    except policy.REFUSALS as err:
        st.error(f"Not launched{what}: {literal(err)}")
        st.stop()


def phase_line(view: monitor.ProgressView) -> str:
    """'✓ starting Python and JAX → ✓ compiling → **▶ training** → evaluating'."""
    names = {**PHASE_NAMES, "starting": "starting (a warm worker)"} if view.warm else PHASE_NAMES
    return " → ".join(PHASE_MARKS[state].format(names.get(name, name)) for name, state in view.phases)


def watch(key: str) -> None:
    """Remember that this session waits for key's run: its page plays the training back if it saw no live frames."""
    st.session_state.setdefault("watching", {}).setdefault(key, set())


def offered(key: str, can_run: bool) -> None:
    """Call after drawing key's Run button. A page whose last run offered Run for key watches key's run now:
    its click may arrive after a classmate's shared job for key ended, and Streamlit drops a click on a button
    that has since become disabled, so the click alone cannot say the student pressed Run."""
    if st.session_state.pop("offered", None) == key:
        watch(key)
    if can_run:
        st.session_state["offered"] = key


def _warm_pid(store) -> int | None:
    state = warmup.readiness(store)
    return state.pid if state.state in ("ready", "compiling", "starting") else None


def _warm(job, warm_pid: int | None) -> bool:
    """Whether the warm worker runs the job: its own, or (not claimed yet) the one a ready warm worker claims when
    free; a job a fresh worker took instead carries that worker's pid, and the line says so from then on."""
    return job.pid == warm_pid if job.pid is not None else warm_pid is not None


LIVE_EVERY = 1.0  # seconds between two redraws of the live panel


def live_job(job_id: str, store, prefix: str, curves: bool = True, every: float = LIVE_EVERY) -> None:
    """A job's phases, progress, live curves and feature scatter, redrawn every `every` seconds.

    Reads the job table only; when the job ends the whole page reruns, so it shows the result.
    Until the run has its own pace, the time left is at the stored runs' pace (read once here).
    """
    job = records.get(job_id, store)
    if job is None:
        return
    step_seconds = pace.measured(store.summaries(), job.config.arch).step_seconds(job.config)
    watch(job.key)
    seen = st.session_state["watching"][job.key]  # the live scatter's steps this page drew
    warm_pid = _warm_pid(store)

    @st.fragment(run_every=every)
    def panel() -> None:
        job = records.get(job_id, store)
        if job is None or job.status not in records.LIVE:
            st.rerun()
        view = monitor.progress_view(job.status, job.progress, monitor.total_steps(job.config), job.config.n_eval,
                                     step_seconds=step_seconds, warm=_warm(job, warm_pid))
        st.markdown(phase_line(view))
        st.progress(view.fraction, text=view.text)
        scatter, corr, loss, step = _live_figures(job.job_id, len(job.progress), job, view)
        left, right = st.columns(2)
        with left:
            if scatter is not None:
                st.plotly_chart(scatter, key=f"{prefix}_live_scatter", config=plots.CHART_CONFIG)
                seen.add(step)
            else:
                st.caption("The learned feature against p appears here once training has taken its first steps.")
        right.plotly_chart(corr, key=f"{prefix}_live_corr", config=plots.CHART_CONFIG)
        if curves:
            st.plotly_chart(loss, key=f"{prefix}_live_loss", config=plots.CHART_CONFIG)
        st.caption("The job runs in its own process: closing this tab does not stop it; "
                   "open the same URL to come back.")

    panel()


@st.cache_resource(max_entries=32, show_spinner=False)
def _live_figures(job_id: str, rows: int, _job, _view) -> tuple:
    """The live panel's figures for a job with `rows` progress rows, built once for every page watching it.

    A class watches one shared job: building the figures is most of a panel's redraw, and six pages
    rebuilding them every second on a busy CPU redrew each only every few seconds.
    """
    snapshot = monitor.live_snapshot(_job.progress)
    return (None if snapshot is None else plots.snapshot_figure(snapshot), plots.corr_figure(_view.history),
            plots.loss_figure(_view.history), None if snapshot is None else snapshot.step)


REPLAY_FRAMES = 6  # a played-back training shows this many snapshots, the first and the last among them
FRAME_SECONDS = 0.4  # how long each stays on screen once painted: the whole replay lasts under 3 s
LIVE_FRAMES = 3  # a page that sent fewer live frames replays: a busy browser may paint only one of two it was sent
# training shorter than this many redraws is played back however many live frames went out: a starved browser
# paints one of the three or four frames a second's training sends, and no server can tell which it painted
PLAYBACK_BELOW_SECONDS = LIVE_FRAMES * LIVE_EVERY
PLAYING_SECONDS = 30.0  # a rerun this soon after a playback began draws it again (the browser keeps its place)
DONE_PHASES = "✓ started → ✓ compiled → ✓ trained → ✓ evaluated → **▶ replay**"

# The browser paces the playback: a frame stays until it has been painted and FRAME_SECONDS have passed since, so a
# starved browser slows the playback down and never skips a frame (frames the server sent one per tick were painted
# together, only the last one seen). At the end it reports `played`, and the page reruns to the result.
_PLAYBACK_JS = """
export default function ({ parentElement, data, setTriggerValue }) {
  const box = parentElement.querySelector(".hp-playback");
  if (box.dataset.key === data.key) return;  // called again for the same run: the browser keeps its place
  box.dataset.key = data.key;
  box.innerHTML = data.frames.map(frame => `<div class="hp-frame">${frame}</div>`).join("");
  const frames = [...box.children];
  let shown = 0, paintedAt = null, stopped = false;
  const tick = now => {
    if (stopped || box.dataset.key !== data.key) return;  // unmounted, or another run's playback took the box
    if (paintedAt === null) {
      paintedAt = now;  // the first animation frame after a frame was shown comes after its paint
    } else if (now - paintedAt >= data.seconds * 1000) {
      if (shown + 1 === frames.length) return setTriggerValue("played", data.key);
      frames[shown].style.visibility = "hidden";
      frames[++shown].style.visibility = "visible";
      paintedAt = null;
    }
    requestAnimationFrame(tick);
  };
  const decoded = [...box.querySelectorAll("img")].map(img => img.decode().catch(() => null));
  Promise.all(decoded).then(() => {
    frames[0].style.visibility = "visible";
    requestAnimationFrame(tick);
  });
  return () => { stopped = true; delete box.dataset.key; };
}
"""
_PLAYBACK_CSS = """
.hp-playback { display: grid }
.hp-frame { grid-area: 1 / 1; visibility: hidden }
"""


@functools.cache
def _playback_component():
    return st.components.v2.component("hierpoly_playback", html='<div class="hp-playback"></div>',
                                      css=_PLAYBACK_CSS, js=_PLAYBACK_JS, isolate_styles=False)


def play_back(result, prefix: str) -> bool:
    """For a run this session waited for that trained in under PLAYBACK_BELOW_SECONDS, or that it sent fewer than
    LIVE_FRAMES live frames of: its stored snapshots played back by the browser, then the page reruns to the result.
    False, at once, when there is nothing to play (not watched, seen moving live for longer, under two snapshots,
    or played already).
    """
    watching, played = st.session_state.get("watching", {}), st.session_state.setdefault("played", {})
    frames = monitor.replay_frames(result)
    trained = result.meta.get("seconds")
    brief = trained is not None and trained < PLAYBACK_BELOW_SECONDS
    playing = result.key in watching and (brief or len(watching[result.key]) < LIVE_FRAMES) and len(frames) >= 2
    # drawn again by a rerun soon after (one that cut this run short, say); a later one shows the result
    if not playing or time.monotonic() - played.setdefault(result.key, time.monotonic()) > PLAYING_SECONDS:
        _done_playing(result.key)
        return False
    chosen = sorted({round(i * (len(frames) - 1) / (REPLAY_FRAMES - 1)) for i in range(REPLAY_FRAMES)})
    st.success(f"Done{f' in {monitor.format_seconds(trained)}' if trained else ''}, too quick to watch live: "
               "here is its training again, from its stored snapshots.")
    st.markdown(DONE_PHASES)
    data = {"key": result.key, "seconds": FRAME_SECONDS,
            "frames": [_frame_html(result.key, frames[i].step, frames[i]) for i in chosen]}
    _playback_component()(data=data, key=f"{prefix}_playback", on_played_change=lambda: _done_playing(result.key))
    return True


def _done_playing(key: str) -> None:
    st.session_state.get("watching", {}).pop(key, None)
    st.session_state.get("played", {}).pop(key, None)


def last_frame(result) -> bool:
    """The learned feature against p at the run's last snapshot, as the playback's picture; False if it has none."""
    frames = monitor.replay_frames(result)
    if frames:
        st.html(_frame_html(result.key, frames[-1].step, frames[-1]))
    return bool(frames)


@st.cache_resource(max_entries=64, show_spinner=False)
def _frame_html(key: str, step: int, _frame) -> str:
    """One frame of a run's playback, built once for every page; keyed by the run and the frame's step."""
    return plots.frame_html(_frame)


def replay(result, prefix: str) -> bool:
    """A slider over a stored run's feature snapshots and the scatter at the chosen step; False if it has none."""
    frames = monitor.replay_frames(result)
    if not frames:
        return False
    steps = [frame.step for frame in frames]
    step = st.select_slider("replay: training step", steps, value=steps[-1], key=f"{prefix}_replay",
                            help="Drag to watch the cloud of (p, g) straighten into a line as the correlation rises.")
    frame = frames[steps.index(step)]
    st.plotly_chart(plots.snapshot_figure(frame), key=f"{prefix}_replay_scatter", config=plots.CHART_CONFIG)
    return True


def server_ip() -> str | None:
    """This machine's address on its network (no packet is sent), or None."""
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.connect(("10.255.255.255", 1))  # a route lookup only: UDP connect sends nothing
            return sock.getsockname()[0]
    except OSError:
        return None


def locked_params(cfg, store) -> dict | None:
    """The URL parameters of a locked link to cfg (signed with the store's secret), or None with the reason
    in one line on the page when the secret cannot be made or read (a full disk, say)."""
    try:
        signature = policy.sign(cfg, store)
    except policy.PolicyError as err:
        st.warning(f"No locked link can be made here: {literal(err)}", icon=":material/warning:")
        return None
    return {**forms.params_from_config(cfg), forms.LOCK_PARAM: "1", policy.SIGNATURE_PARAM: signature}


def classroom_link(params: dict, prefix: str, page: str = "Explore") -> str | None:
    """The whole classroom link, shown wrapped and as a QR code, from the address this server serves.

    A server that listens on loopback only cannot be reached by a class: the page says so and
    gives the command that serves one, and shows no QR code (it would lead nowhere).
    """
    teacher_base = st.text_input(
        "base URL your students open (empty: the address this server listens on)", key=f"{prefix}_base",
        placeholder="http://10.0.0.5:8501",
        help="The address of this app as the class reaches it, e.g. behind a proxy or by a name.")
    port = int(st.get_option("server.port") or 8501)
    address = str(st.get_option("server.address") or "")
    try:
        found = forms.classroom_base(teacher_base, st.context.url or "", address, server_ip(), port)
    except ValueError as err:
        st.error(literal(err), icon=":material/error:")
        return None
    url = forms.share_url(found.base, page, params)
    if forms.listens_on_loopback_only(address):
        st.warning(f"This server listens on {address} only: no other machine can open this link. "
                   "Stop it and serve the class with:", icon=":material/wifi_off:")
        st.code(forms.serve_command(port), language="bash", wrap_lines=True)
    elif policy.current_mode() == "local":
        st.warning("This server runs in local mode: every visitor could delete and import results and cancel any "
                   "run. Serve a class in classroom mode:", icon=":material/shield:")
        st.code(forms.serve_command(port), language="bash", wrap_lines=True)
    left, right = st.columns([3, 1])
    left.code(url, language=None, wrap_lines=True)
    left.caption(f"Base from {found.source}.")
    if found.reachable:
        right.image(qr_png(url), caption="scan to open", width=180)
    else:
        right.caption("No QR code: students could not reach this address.")
    return url


def qr_png(text: str) -> bytes:
    """A QR code of `text` as PNG bytes (segno: pure Python)."""
    import segno

    buffer = io.BytesIO()
    segno.make(text, error="m").save(buffer, kind="png", scale=6, border=2)
    return buffer.getvalue()


# ------------------------------------------------------------------ transfer
TRANSFER_LINKS = ("quadratic", "std:h1+h2", "linear", "std:h1+h4")  # the transfer preset's first (study/presets.py)
TRANSFER_NS = (16, 64, 256, 1024)
TAIL_SAYS = 0.25  # from this share of the test loss on, the tail is what the transfer's loss measures


def transfer_panel(result, store, prefix: str, n_index: int = 1) -> None:
    """Use a finished run's feature for a new target: the frozen g fitted to a new link from N samples, beside
    the network from scratch and the kernel at the same N (nothing for a run that cannot lend its first block)."""
    if source_problem(result.config) is not None:  # only a three-layer joint run with σ1 = cube lends its feature
        return
    st.subheader("Use this feature for a new target")
    corr = result.metrics.get("feature_corr")
    if not (corr is not None and corr >= monitor.FOUND):
        st.caption(f"Offered only from a run that found p: this one's feature correlation is "
                   f"{monitor.format_corr(corr)} (from {monitor.FOUND} on it counts as found), so a new link fitted on "
                   "its feature would measure a feature that is not p. Train it on more samples first.")
        return
    st.caption("Freeze the learned feature g and fit only the second block to a new link g′ on the same p, "
               "h′ = g′ ∘ p, from N fresh samples. A learned feature needs only enough samples for a "
               "one-dimensional fit; the network from scratch and the kernel must find p again.")
    choice = _transfer_choice(result, store, prefix, n_index)
    if choice is None:
        return
    runs = transfer_runs(result.config, *choice, result.config.seed)
    stored = {role: store.get(c.key()) for role, c in runs.items()}
    waiting = [c for role, c in runs.items() if stored[role] is None]
    if waiting and policy.can_launch() and st.button("▶ Fit the new link", key=f"{prefix}_tr_run"):
        for c in waiting:
            launch_or_stop(c, store, f" ({forms.run_label(c)})")
        st.rerun()
    live = {role: records.for_key(c.key(), store) for role, c in runs.items() if stored[role] is None}
    rows = []
    for role in ROLES:
        done, job = stored[role], live.get(role)
        loss = (f"{monitor.format_loss(done.metrics['test_loss'])} ± "
                f"{monitor.format_loss(done.metrics['test_loss_se'])}") if done else None
        rows.append({"model": role, "test loss ± SE": loss or (job.status if job else "not run"),
                     "wall time": monitor.format_duration(done.meta.get("seconds")) if done else "–"})
    st.table(pd.DataFrame(rows).set_index("model"))  # three rows, static: readable from the back of a room
    transfer = stored["transfer"]
    if transfer is not None:
        tail, heavy = tail_sentence(transfer.metrics)
        if tail:
            (st.warning if heavy else st.caption)(tail)
        if transfer.samples:
            st.plotly_chart(plots.prediction_scatter(transfer.samples, transfer.metrics["test_loss"]),
                            key=f"{prefix}_chart_transfer", config=plots.CHART_CONFIG)
    pending = [runs[role].key() for role, job in live.items() if job is not None and job.status in records.LIVE]
    if pending:
        _rerun_when_done(pending, store)


def _transfer_choice(result, store, prefix: str, n_index: int) -> tuple[str, int] | None:
    """The new link and N picked; where nothing can be trained (a gallery), only pairs whose runs are stored,
    and None with a line saying so when there are none."""
    pairs = [(link, n) for link in TRANSFER_LINKS for n in TRANSFER_NS]
    if not policy.can_launch():
        pairs = [(link, n) for link, n in pairs
                 if all(store.has(c.key()) for c in transfer_runs(result.config, link, n, result.config.seed).values())]
        if not pairs:
            st.caption("No new link has been fitted on this run's feature here, and the gallery fits none.")
            return None
    links = list(dict.fromkeys(link for link, _ in pairs))
    left, right = st.columns(2)
    link = left.selectbox("new link g′", links, key=f"{prefix}_tr_link")
    ns = [n for pair_link, n in pairs if pair_link == link]
    n = right.selectbox("samples N", ns, index=min(n_index, len(ns) - 1), key=f"{prefix}_tr_n")
    return link, n


def _rerun_when_done(keys: list[str], store, every: float = 1.0) -> None:
    """Rerun the page once none of these keys has a live job (they run in the background)."""

    @st.fragment(run_every=every)
    def watch() -> None:
        if not any((job := records.for_key(key, store)) is not None and job.status in records.LIVE for key in keys):
            st.rerun()
        st.caption("Fitting in the background: the table fills in when the runs finish.")

    watch()


def tail_sentence(metrics: dict) -> tuple[str | None, bool]:
    """What the tail does to a transfer's test loss, from its measured shares (None when not measured), and
    whether the tail is most of what the loss measures (a share of at least TAIL_SAYS)."""
    share, points = metrics.get("outside_loss_share"), metrics.get("outside_points")
    if share is None or points is None:
        return None, False
    heavy = share >= TAIL_SAYS
    said = (f"{share:.0%} of this test loss comes from the {points:.2%} of test points where g leaves the range "
            "it took on the N training points; there the ReLU link only extrapolates linearly.")
    return said + (" The loss here measures the link's heavy tail more than the feature." if heavy else ""), heavy


@st.cache_data(ttl=30, show_spinner=False, max_entries=4)
def _transfer_report(_store, stored: int) -> dict:
    """The transfer preset's report, read once per store size (`stored`) rather than on every rerun."""
    return report(presets.transfer(), _store)


def transfer_evidence(store) -> None:
    """The transfer preset's stored runs: test loss against N for each d (median over seeds, min–max bars),
    and what they say (nothing if none)."""
    rep = _transfer_report(store, len(store))
    cells = pd.DataFrame(rep["cells"])
    if cells.empty or cells["test_loss"].isna().all():
        st.caption("The transfer preset's runs are not stored here (`python -m hierpoly transfer --preset "
                   "transfer --run` makes them).")
        return
    links = [link for link in rep["claims"] if cells[(cells["link"] == link)]["test_loss"].notna().any()]
    link = st.selectbox("the stored transfer grid, for the new link", links, key="transfer_evidence_link")
    st.plotly_chart(plots.transfer_figure(cells, link), key="transfer_evidence_chart", config=plots.CHART_CONFIG)
    claim = rep["claims"][link]
    half = ", ".join(f"N = {n:,} at d = {d}" if n else f"not reached at d = {d}" for d, n in claim["half_n"].items())
    st.markdown(f"Half of E[h′²] explained by the transfer: {half}"
                + (f" (largest over smallest: {claim['half_n_spread']:g}×)." if claim["half_n_spread"] else "."))
    if claim["beats_everywhere"] is not None:
        wins = sum(claim["beats"].values())
        every = " Even its worst seed beats the best seed of both in every one." if claim["beats_every_seed"] else ""
        st.markdown(f"The transfer's median test loss over seeds is below both scratch's "
                    f"and the kernel's in {wins} of {len(claim['beats'])} stored cells.{every}")
    shares = cells[(cells["link"] == link) & (cells["role"] == "transfer")]["outside_loss_share"].dropna()
    if len(shares):
        st.caption(f"The tail: over these cells, {shares.min():.0%}–{shares.max():.0%} of the transfer's test "
                   "loss comes from points where g leaves its training range (the ReLU link is linear there).")
    missing = len(rep["missing"])
    if missing:
        st.caption(f"{missing} of the grid's runs are not stored yet; their points are missing from the figure.")
