"""The app's pages in the sidebar, each under its own name.

Streamlit names a multipage app's main page after its file, so its own menu listed the home page as "app"
(issue 21). That menu is turned off (`client.showSidebarNavigation` in `.streamlit/config.toml`) and every
page draws this one instead: the same pages and addresses (the files in `pages/` keep theirs), the home page
called Home.
"""

from __future__ import annotations

import streamlit as st

# (script, label, icon), in the menu's order
PAGES = (
    ("app.py", "Home", ":material/home:"),
    ("pages/1_Answers_and_tokens.py", "Answers and tokens", ":material/text_fields:"),
    ("pages/2_Gradient_angles.py", "Gradient angles", ":material/architecture:"),
    ("pages/3_Distill_and_compare.py", "Distill and compare", ":material/model_training:"),
    ("pages/4_Paper_check.py", "Paper check", ":material/fact_check:"),
)


def sidebar_menu() -> None:
    """The pages as links at the top of the sidebar (the page shown is highlighted by Streamlit)."""
    menu = st.sidebar.container(key="vlod_menu")
    for script, label, icon in PAGES:
        menu.page_link(script, label=label, icon=icon)
