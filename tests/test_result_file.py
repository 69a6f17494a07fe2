"""The trained weights rank 0 hands over (`runtime.result`): written one variable at a time,
read back whole, and never seen half written."""
import os

import numpy as np
import pytest

from parallax_nb.runtime.result import read_weights, write_weights


def test_weights_written_one_by_one_read_back_whole(tmp_path):
    path = str(tmp_path / "result.pkl")
    produced = []

    def weights():
        for name, rows in (("emb/embeddings:0", 1000), ("dense/kernel:0", 3)):
            value = np.arange(rows * 4, dtype=np.float32).reshape(rows, 4)
            produced.append(name)
            assert not os.path.exists(path)       # only the finished file gets its name
            yield name, value

    write_weights(path, weights())
    assert produced == ["emb/embeddings:0", "dense/kernel:0"]
    read = read_weights(path)
    assert list(read) == produced
    assert read["emb/embeddings:0"].shape == (1000, 4) and read["dense/kernel:0"][2, 3] == 11


def test_a_failure_while_writing_leaves_no_result(tmp_path):
    path = str(tmp_path / "result.pkl")

    def weights():
        yield "a:0", np.zeros(3)
        raise RuntimeError("server gone")

    with pytest.raises(RuntimeError, match="server gone"):
        write_weights(path, weights())
    assert not os.path.exists(path)    # the supervisor finds no result, not half of one
