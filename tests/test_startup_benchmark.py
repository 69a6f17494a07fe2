"""The start-up benchmark's arithmetic (benchmarks/startup.py; its runs take minutes, so the
suite checks what it computes from them: the median run per start kind and the table)."""
from benchmarks import startup


def test_the_median_run_per_start_kind_and_the_table():
    def row(seconds):
        return {"seconds": seconds, "plan": 1.0, "horovod": seconds / 2}

    rounds = [{"cold": row(9.0), "warm": row(3.0), "warm after a pause": row(2.0),
               "changed": row(4.0), "restart": {"seconds": 7.0, "resumed_from": 20}},
              {"cold": row(12.0), "warm": row(2.0), "warm after a pause": row(2.2),
               "changed": row(5.0), "restart": {"seconds": 6.0, "resumed_from": 20}},
              {"cold": row(10.0), "warm": row(2.5), "warm after a pause": row(1.8),
               "changed": row(3.0), "restart": {"seconds": 8.0, "resumed_from": 20}}]
    merged = startup.median_rows(rounds)
    assert [merged[k]["seconds"] for k in startup.STARTS + ("restart",)] == \
        [10.0, 2.5, 2.0, 4.0, 7.0]
    results = {"rounds": 3, "load": 1.5,
               "starts": {"spares at connect": merged, "no spares": merged},
               "sample_cost": {"steps_per_sec_sampled": 98.0, "steps_per_sec_no_stamps": 100.0,
                               "ratio": 0.98}}
    text = "\n".join(startup.markdown(results))
    assert "| cold | spares at connect | 10.0 | 1.00 | 0.00 | 5.00 |" in text
    assert "| warm after a pause | no spares | 2.0 |" in text
    assert "| no spares | 7.0 |" in text and "ratio 0.98" in text
