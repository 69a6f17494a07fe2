"""Which form the notebook layer shows: widgets, or readable text.

Widgets need a Jupyter kernel (a comm channel to a front end). Inside a kernel every panel
is published with both forms, so JupyterLab draws the widget while nbval and other text
consumers read its text. In plain IPython or a script there is no kernel and only the text
is printed. ``PARALLAX_NB_DISPLAY=text`` forces text everywhere.
"""
from __future__ import annotations

import os

DISPLAY_ENV = "PARALLAX_NB_DISPLAY"


def widgets_enabled() -> bool:
    if os.environ.get(DISPLAY_ENV, "").lower() == "text":
        return False
    try:
        from IPython import get_ipython
    except ImportError:
        return False
    shell = get_ipython()
    return shell is not None and getattr(shell, "kernel", None) is not None
