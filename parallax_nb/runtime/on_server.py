"""Work placed on a server as one function call, so that it costs one message each way.

TensorFlow runs a step's ops placed on a server in that server's process, and every tensor
or control edge that crosses between the rank and the server is its own Send/Recv pair, i.e.
its own RPC. Made inline, each op with side effects on the server (a gather, an update, a
dequeue) would get its own control edge to the step's end (tf.function's automatic control
dependencies): one message per table. Inside one function call, they reach the rest of the
step through the call's inputs, its outputs and the call itself.
"""
from __future__ import annotations


def function_on(tf, device: str, fn):
    """``fn`` as a function whose calls run on ``device`` (its ops pinned there), one
    function call each."""
    def pinned(*inputs):
        with tf.device(device):
            return fn(*inputs)

    function = tf.function(pinned, autograph=False)

    def call(*args):
        with tf.device(device):
            return function(*args)

    return call


def call_on(tf, device: str, fn, *args):
    """``fn(*args)`` as one function call placed on ``device`` (its ops pinned there)."""
    return function_on(tf, device, fn)(*args)
