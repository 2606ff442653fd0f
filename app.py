"""Home page of the explorer (the full app lands with the Streamlit issue)."""
import streamlit as st

from hierpoly.targets import LINK_PRESETS, normalisation

st.set_page_config(page_title="hierpoly explorer", layout="wide")
st.title("Three-layer networks learn hierarchical polynomials")
st.markdown(r"Targets $h = g \circ p$; a three-layer network learns them from about $d^k$ samples.")
d = st.number_input("input dimension d", min_value=1, max_value=256, value=16)
st.metric("normalisation C (k = 3, cubic link)", f"{normalisation(int(d), 3, LINK_PRESETS['cubic']).C:.6e}")
