"""What a cluster check found: its rows, one per worker and need, and the error `px.train`
raises when one fails."""
from __future__ import annotations

import dataclasses
import textwrap
from typing import List

from ..errors import ClusterError

CHECKS = ("python", "tensorflow", "keras", "horovod", "horovod tensorflow ops",
          "horovod gloo", "parallax_nb", "gpus", "ranks", "address", "interface", "tcp")
COLUMNS = ("host", "worker", "check", "status", "value", "fix")
OK, WARN, FAIL, SKIP = "ok", "warn", "FAIL", "skip"


class ClusterNotReady(ClusterError):
    """The cluster fails the check `px.train` runs before launching; ``.result`` holds it."""

    def __init__(self, result: "CheckResult"):
        super().__init__(result)
        self.result = result

    def __str__(self):
        return (f"this cluster cannot run the job; {len(self.result.failures)} check(s) "
                f"failed (nothing was started):\n{self.result}")



@dataclasses.dataclass(frozen=True)
class CheckRow:
    host: str
    worker: str               # a worker address, or "*" for the cluster as a whole
    check: str
    status: str               # ok | warn | FAIL | skip
    value: str
    fix: str = ""



@dataclasses.dataclass(frozen=True)
class CheckResult:
    """What `check` found: ``ok``, ``rows`` (``to_frame()``), ``failures``, and ``ranks``
    (the rank assignment with each rank's ``CUDA_VISIBLE_DEVICES``)."""

    scheduler: str
    rows: tuple
    ranks: tuple
    client: dict
    quick: bool
    seconds: float
    machines: int

    @property
    def ok(self) -> bool:
        return not self.failures

    @property
    def failures(self) -> List[CheckRow]:
        return [r for r in self.rows if r.status == FAIL]

    @property
    def workers(self) -> List[str]:
        return list(dict.fromkeys(r.worker for r in self.rows if r.worker != "*"))

    @property
    def hosts(self) -> List[str]:
        return list(dict.fromkeys(r.host for r in self.rows if r.worker != "*"))

    def row(self, worker: str, check: str) -> CheckRow:
        return next(r for r in self.rows if r.worker == worker and r.check == check)

    def to_frame(self):
        import pandas as pd

        return pd.DataFrame([dataclasses.asdict(r) for r in self.rows], columns=list(COLUMNS))

    def headline(self) -> str:
        verdict = "OK" if self.ok else f"{len(self.failures)} problem(s)"
        return (f"Parallax check of {self.scheduler}: {len(self.workers)} worker(s) on "
                f"{len(self.hosts)} host(s), {self.machines} machine(s); "
                f"{'quick' if self.quick else 'full'}, {self.seconds:.1f} s: {verdict}")

    def client_line(self) -> str:
        return "client: " + ", ".join(f"{name} {self.client.get(key) or 'missing'}" for name, key in
                                      (("Python", "python"), ("TensorFlow", "tensorflow"),
                                       ("Horovod", "horovod"), ("parallax_nb", "parallax_nb")))

    def __str__(self) -> str:
        lines = [self.headline(), self.client_line()]
        group = None
        for row in self.rows:
            if (row.host, row.worker) != group:
                group = (row.host, row.worker)
                lines.append("cluster" if row.worker == "*" else
                             f"worker {row.worker} (host {row.host})")
            lines.append(f"  {row.status:<5} {row.check:<23} {row.value}")
            if row.fix:
                lines += textwrap.wrap(f"fix: {row.fix}", 100, initial_indent=" " * 8,
                                       subsequent_indent=" " * 13)
        return "\n".join(lines)

    __repr__ = __str__

    def _repr_html_(self) -> str:
        from ...render import _environment

        return _environment().from_string(HTML).render(result=self, columns=COLUMNS,
                                                       rows=self.rows, FAIL=FAIL, WARN=WARN)


HTML = """\
<div class="parallax-check">
  <strong>{{ result.headline() }}</strong><br>
  <small>{{ result.client_line() }}</small>
  <table style="border-collapse: collapse">
    <thead><tr>
      {% for column in columns %}<th style="text-align: left; padding: 2px 8px">{{ column }}</th>{% endfor %}
    </tr></thead>
    <tbody>
    {% for row in rows %}
      <tr{% if row.status == FAIL %} style="background: #f8d7da"{% elif row.status == WARN %} style="background: #fff3cd"{% endif %}>
        {% for column in columns %}<td style="padding: 2px 8px{% if column == 'status' %}; font-weight: bold{% endif %}">{{ row[column] }}</td>{% endfor %}
      </tr>
    {% endfor %}
    </tbody>
  </table>
</div>"""
