"""HTML representations from Jinja2 templates (``parallax_nb/templates``), as dask does."""
from __future__ import annotations

import functools

import jinja2


@functools.lru_cache(maxsize=None)
def _environment() -> jinja2.Environment:
    env = jinja2.Environment(loader=jinja2.PackageLoader("parallax_nb", "templates"),
                             autoescape=True, trim_blocks=True, lstrip_blocks=True)
    from .analysis.cost import format_bytes

    env.filters["bytes"] = format_bytes
    return env


def render(template: str, **context) -> str:
    return _environment().get_template(template).render(**context)
