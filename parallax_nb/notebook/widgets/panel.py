"""The common shape of the panels: one ipywidgets tree plus its readable text form."""
from __future__ import annotations


class Panel:
    """Displayed, a panel is its widget with ``text/plain`` replaced by its text form: the
    widget where a front end can draw it, a readable summary where it cannot (nbval, logs)."""

    widget = None  # the root ipywidgets.Widget, set by subclasses

    def text(self) -> str:
        raise NotImplementedError

    def _repr_mimebundle_(self, include=None, exclude=None):
        bundle = dict(self.widget._repr_mimebundle_(include=include, exclude=exclude) or {})
        bundle["text/plain"] = self.text()
        return bundle

    def __str__(self):
        return self.text()
