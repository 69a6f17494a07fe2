"""The one mistake every script that starts a LocalCluster can make: no main guard.

Dask starts the embedded cluster's workers with multiprocessing's "spawn", which re-imports
the script that started them. Without ``if __name__ == "__main__":`` around its code, every
worker runs the script again, tries to start a cluster of its own, and dies; the user sees
hundreds of lines of "Nanny failed to start" tracebacks. `require_main_guard` sees the
mistake before anything starts and says, in one line, what to add and where.
"""
from __future__ import annotations

import ast
import functools
import sys
from typing import Optional, Tuple

from ..errors import ConfigError


def require_main_guard(what: str) -> None:
    """Raise if the running script calls us from its top level outside a main guard."""
    call = _script_call_site()
    if call is None:
        return
    path, line = call
    if not _inside_main_guard(path, line):
        raise ConfigError(
            f"{what} starts Dask worker processes, which re-import {path}: put the script's "
            f"code (line {line} and what follows) under `if __name__ == \"__main__\":`, "
            f"or every worker will run it again and fail to start")


def _script_call_site() -> Optional[Tuple[str, int]]:
    """(script path, line) of the call, when it comes from the top level of a script run as
    ``python script.py`` (not a notebook, a REPL, ``python -c`` or a function)."""
    main = sys.modules.get("__main__")
    path = getattr(main, "__file__", None)
    if not path or not path.endswith(".py"):
        return None
    frame = sys._getframe(1)
    while frame is not None:
        if frame.f_code.co_name == "<module>" and frame.f_globals.get("__name__") in (
                "__main__", "__mp_main__") and frame.f_code.co_filename == path:
            return path, frame.f_lineno
        frame = frame.f_back
    return None


@functools.lru_cache(maxsize=8)
def _guarded_lines(path: str) -> Tuple[Tuple[int, int], ...]:
    """Line ranges of the script's ``if __name__ == "__main__":`` blocks."""
    try:
        with open(path, encoding="utf-8") as f:
            tree = ast.parse(f.read(), filename=path)
    except (OSError, SyntaxError, ValueError):
        return ((0, sys.maxsize),)    # cannot tell: assume guarded, never a false alarm
    ranges = []
    for node in tree.body:
        if isinstance(node, ast.If) and _is_main_test(node.test):
            ranges.append((node.body[0].lineno, node.body[-1].end_lineno or node.lineno))
    return tuple(ranges)


def _is_main_test(test) -> bool:
    if not (isinstance(test, ast.Compare) and len(test.ops) == 1
            and isinstance(test.ops[0], ast.Eq)):
        return False
    sides = [test.left, test.comparators[0]]
    names = [s.id for s in sides if isinstance(s, ast.Name)]
    values = [s.value for s in sides if isinstance(s, ast.Constant)]
    return names == ["__name__"] and values == ["__main__"]


def _inside_main_guard(path: str, line: int) -> bool:
    return any(start <= line <= stop for start, stop in _guarded_lines(path))
