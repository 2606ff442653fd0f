"""Results: every stored run (and unfinished job); filter, compare, open, delete, export and import bundles."""
import streamlit as st

from hierpoly.jobs import policy
from hierpoly.jobs import records as jobs
from hierpoly.results import bundles
from hierpoly.results.codec import StoreError
from hierpoly.views import catalog, forms, monitor, plots, widgets
from hierpoly.views.markdown import literal
from hierpoly.views.system import format_bytes

st.set_page_config(page_title="Results · hierpoly", page_icon=":material/table_view:", layout="wide")
store = widgets.store_or_stop()
st.title("Results")
where = f" in `{store.directory}`" if policy.current_mode() == "local" else ""  # no server paths for visitors
st.caption(f"{len(store)} stored results, {format_bytes(store.size_bytes())}{where}.")

summaries = store.summaries()
unreadable = summaries.attrs.get("unreadable", [])
if unreadable:
    reasons = summaries.attrs.get("problems", {})
    st.warning(f"{len(unreadable)} stored results cannot be read: made by an older version of hierpoly (their "
               "settings now mean another run), damaged, or their value file is gone. They are not shown or used; "
               "their configs can be run again.")
    st.dataframe([{"key": key[:16], "problem": reasons.get(key, "")} for key in unreadable], hide_index=True)
    if policy.allows("delete") and st.button(f"Delete the {len(unreadable)} unreadable results",
                                             key="res_delete_unreadable"):
        policy.delete_from_web(store, unreadable)
        st.rerun()
table = catalog.runs_table(summaries, jobs.list_jobs(store))
if table.empty:
    st.info("No runs yet. Start one on the Explore page, queue a grid on the Figure 2 page, or import a bundle below."
            if policy.allows("import") else "No runs are stored here yet.")
else:
    options = catalog.filter_options(table)
    cols = st.columns(len(options))
    chosen = {name: cols[i].multiselect(name, values, key=f"res_filter_{name}") for i, (name, values) in
              enumerate(options.items())}
    shown = catalog.filter_runs(table, chosen)
    # losses span 1 to 1e-17: scientific format keeps them readable and comparable
    st.dataframe(shown.drop(columns=["key", "arch", "mode"]), hide_index=True, width="stretch",
                 column_config={"test_loss": st.column_config.NumberColumn(format="%.3e"),
                                "train_loss": st.column_config.NumberColumn(format="%.3e"),
                                "feature_corr": st.column_config.NumberColumn(format="%.3f"),
                                "seconds": st.column_config.NumberColumn(format="%.1f")})
    labels = {row["key"]: catalog.label(row) for row in shown.to_dict("records")}
    stored_keys = [k for k in labels if bool(shown.loc[shown["key"] == k, "stored"].iloc[0])]
    doing = "open, compare, delete or export" if policy.allows("delete") else "open, compare or export"
    selection = st.multiselect(f"Select runs to {doing}", stored_keys, format_func=labels.get, key="res_selection")
    st.caption(f"{len(shown)} of {len(table)} runs shown; only stored results can be selected.")

    if selection:
        results = [r for r in (store.get(k) for k in selection) if r is not None]
        st.subheader("Open in Explore")
        for result in results:
            st.page_link("pages/1_Explore.py", label=labels[result.key], icon=":material/explore:",
                         query_params=forms.params_from_config(result.config))
        st.subheader("Compare")
        metric = st.radio("curve", ["test_loss", "train_loss", "feature_corr"], horizontal=True, key="res_metric")
        histories = {labels[r.key]: monitor.history_frame(r.history) for r in results}
        st.plotly_chart(plots.overlay_figure(histories, metric), key="res_overlay", config=plots.CHART_CONFIG)
        cols = st.columns(3)
        cols[0].download_button("Export selection as a bundle", bundles.export_bundle(store, selection),
                                file_name=f"hierpoly_{len(selection)}_results.zip", mime="application/zip",
                                key="res_export")
        cols[1].download_button("Histories (CSV)", monitor.histories_csv(results), file_name="histories.csv",
                                mime="text/csv", key="res_csv")
        confirm = policy.allows("delete") and cols[2].checkbox(f"yes, delete {len(selection)} result(s)",
                                                               key="res_confirm")
        if policy.allows("delete") and cols[2].button("Delete selection", disabled=not confirm, key="res_delete"):
            deleted = policy.delete_from_web(store, selection)
            st.session_state.pop("res_selection", None)
            st.session_state.pop("res_confirm", None)
            st.toast(f"Deleted {deleted} result(s).")
            st.rerun()

if not policy.allows("import"):  # classroom and gallery: what the class sees is not changed from the web
    st.stop()
st.subheader("Import a bundle")
st.caption("A bundle is a zip exported from this app or `python -m hierpoly export`. It is checked member by "
           "member (hashes, configs, array types) and refused whole if anything is wrong, or if it holds a "
           "result already stored with different contents (delete that one first to replace it).")
upload = st.file_uploader("bundle (.zip)", type=["zip"], key="res_upload")
if st.button("Import", disabled=upload is None, key="res_import"):
    try:
        added = policy.import_from_web(store, upload.getvalue())
    except (bundles.BundleError, StoreError, policy.PolicyError) as err:
        st.error(f"Bundle refused: {literal(err)}")
    else:
        st.success(f"Imported {len(added)} result(s)" + ("." if added else ": all were already stored."))
