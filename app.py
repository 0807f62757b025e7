"""The ppcore app: `streamlit run app.py`.

Train with the perceptual prior and watch d_per against d_intra live, attack your own images,
compare defended models side by side, evaluate checkpoints against the paper's numbers and sweep
lambda. The pages are thin: every computation is a ``ppcore`` call, long work runs in detached
processes (``ppcore.jobs``), so it survives reloads.

The pages live in ``app_pages/``, not ``pages/``: a ``pages/`` folder beside this script makes
Streamlit run the first session after a start in its legacy multipage mode, where a link to a
page (``/attack-lab``) answers "Page not found".
"""

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent
if str(ROOT) not in sys.path:  # `app_pages.ui` and `ppcore` import from here, whatever the cwd
    sys.path.insert(0, str(ROOT))

import streamlit as st  # noqa: E402

st.set_page_config(page_title="Perceptual prior · ppcore", page_icon="🛡️", layout="wide",
                   initial_sidebar_state="expanded")

PAGES = [
    st.Page("app_pages/home.py", title="Home", icon=":material/home:", default=True),
    st.Page("app_pages/train.py", title="Train", icon=":material/model_training:",
            url_path="train"),
    st.Page("app_pages/attack_lab.py", title="Attack lab", icon=":material/science:",
            url_path="attack-lab"),
    st.Page("app_pages/evaluate.py", title="Evaluate", icon=":material/fact_check:",
            url_path="evaluate"),
    st.Page("app_pages/sweep.py", title="λ sweep", icon=":material/tune:", url_path="sweep"),
]

st.navigation(PAGES).run()
