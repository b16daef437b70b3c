"""Streamlit glue for vlod's app: caching, session state, shared widgets and the background training job.

This package and the pages are the only code that imports Streamlit. Everything computed lives in
`vlod_core`; this package decides *when* to call it (cached, in a thread, behind a button) and where the
results go in the session.
"""
