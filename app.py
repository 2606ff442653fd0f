"""The explorer's entry point: `streamlit run app.py`.

Registers the pages so the sidebar reads Home, Explore, Figure 2, Results, Learn;
each page keeps the URL its file name gave it (/Explore, /Figure_2, ...), so shared
links stay valid.
"""
import streamlit as st

st.set_page_config(page_title="hierpoly explorer", page_icon=":material/functions:", layout="wide")
PAGES = [
    st.Page("pages/0_Home.py", title="Home", icon=":material/home:", default=True),
    st.Page("pages/1_Explore.py", title="Explore", icon=":material/explore:", url_path="Explore"),
    st.Page("pages/2_Figure_2.py", title="Figure 2", icon=":material/show_chart:", url_path="Figure_2"),
    st.Page("pages/3_Results.py", title="Results", icon=":material/table_view:", url_path="Results"),
    st.Page("pages/4_Learn.py", title="Learn", icon=":material/school:", url_path="Learn"),
]
st.navigation(PAGES).run()
