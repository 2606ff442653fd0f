"""Home: what the paper shows, the state of this machine, and where to go next.

Run with `streamlit run app.py`; pages are auto-discovered from pages/.
"""
import streamlit as st

from hierpoly import __version__
from hierpoly.runs import policy
from hierpoly.views.forms import params_from_config, run_label
from hierpoly.views.system import format_bytes, open_checked, system_status

st.set_page_config(page_title="hierpoly explorer", page_icon="🧮", layout="wide")
st.title("Three-layer networks learn hierarchical polynomials")
st.caption(f"hierpoly explorer {__version__} · Wang, Nichani & Lee, *Learning Hierarchical Polynomials with "
           "Three-Layer Neural Networks*, ICLR 2024")

st.markdown(
    r"""
The targets are **hierarchical**: $h = g \circ p$, a degree-$q$ polynomial link $g$ applied to a degree-$k$
polynomial feature $p(x) = \sum_i \lambda_i h_k(x_i)$ of a Gaussian input $x \in \mathbb{R}^d$.
A three-layer network trained by gradient methods learns $h$ from $n \approx d^k$ samples, because its first
layers extract the feature $p$ itself before fitting the link.
Kernel methods, which cannot learn features, need about $d^{kq}$ samples: for the paper's cubic $p$ and
cubic $g$ that is $d^3$ against $d^9$.
"""
)

st.subheader("Where to go")
cols = st.columns(4)
cols[0].page_link("pages/1_Explore.py", label="Explore one run", icon="🔭")
cols[0].caption("Train a network live and watch it find p.")
cols[1].page_link("pages/2_Figure_2.py", label="Figure 2", icon="📈")
cols[1].caption("Test loss and feature correlation against n, and the collapse at n/d^k.")
cols[2].page_link("pages/3_Results.py", label="Results", icon="🗂️")
cols[2].caption("Every stored run: compare, delete, export and import bundles.")
cols[3].page_link("pages/4_Learn.py", label="Learn", icon="🎓")
cols[3].caption("A classroom tour that runs in seconds on a laptop.")

st.subheader("System")
store, problems = open_checked()  # damage and the mode's rules: a banner, never a traceback
for problem in problems:
    st.warning(problem, icon="⚠️")
if store is None:
    st.stop()
st.sidebar.caption(policy.describe())
status = system_status(store)
cols = st.columns(4)
cols[0].metric("JAX device", status.device, help=f"source: {status.device_source}")
cols[1].metric("stored results", status.results)
cols[2].metric("store size", format_bytes(status.size_bytes), help=str(status.store_dir))
cols[3].metric("jobs queued or running", len(status.live_jobs))
if status.device_source == "pending":
    st.caption("The JAX backend is being probed in a separate process (the web app never loads JAX); "
               "reload to see it.")
for job in status.live_jobs:
    last = job.step
    st.page_link("pages/1_Explore.py", icon="⏳", query_params=params_from_config(job.config),
                 label=f"{job.status}: {run_label(job.config)}, step {last} / {job.total_steps}")
