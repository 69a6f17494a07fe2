"""The notebook layer on top of the core API: ``%parallax`` magics and widget panels.

views/    what each panel shows, as plain objects (tested without a front end)
widgets/  the ipywidgets/Bokeh panels drawing those views
magics.py the ``%parallax`` commands; session.py the state they share in one kernel
"""
from .magics import ParallaxMagics, load_ipython_extension
from .session import current_session

__all__ = ["ParallaxMagics", "load_ipython_extension", "current_session"]
