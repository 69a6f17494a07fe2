"""Row rules: a sparse variable's update touches the rows its gradient names, and nothing else,
for every common optimizer of tf.keras (Keras 2) and tf.keras.optimizers.legacy; where the
optimizer's own sparse update is already row-wise the rule equals it exactly."""
import numpy as np
import pytest
import tensorflow as tf

from parallax_nb.row_updates import LocalRowUpdates, RowUpdater, row_rule

ROWS, DIM = 50, 4
STEPS = [[3, 7, 7, 11], [7, 20], [3, 3, 49]]   # duplicates are summed, as Keras does


def optimizers():
    k, legacy = tf.keras.optimizers, tf.keras.optimizers.legacy
    return {
        "sgd": lambda: k.SGD(0.1), "legacy_sgd": lambda: legacy.SGD(0.1),
        "momentum": lambda: k.SGD(0.1, momentum=0.9),
        "nesterov": lambda: legacy.SGD(0.1, momentum=0.9, nesterov=True),
        "adagrad": lambda: k.Adagrad(0.1), "legacy_adagrad": lambda: legacy.Adagrad(0.1),
        "adam": lambda: k.Adam(0.01), "legacy_adam": lambda: legacy.Adam(0.01),
        "rmsprop": lambda: k.RMSprop(0.01), "legacy_rmsprop": lambda: legacy.RMSprop(0.01),
        "centered_momentum_rmsprop": lambda: k.RMSprop(0.01, momentum=0.5, centered=True),
    }


def gradient(step, rows):
    values = np.arange(len(rows) * DIM, dtype=np.float32).reshape(len(rows), DIM) / 10 + step
    return tf.IndexedSlices(tf.constant(values), tf.constant(rows, tf.int64),
                            tf.constant([ROWS, DIM], tf.int64))


def start():
    return np.random.default_rng(0).normal(size=(ROWS, DIM)).astype(np.float32)


def train_with_rule(make_optimizer):
    variable = tf.Variable(start())
    updates = LocalRowUpdates(make_optimizer(), [variable])
    assert updates.covers(variable)
    updater = updates.updaters[id(variable)]
    history = []
    for step, rows in enumerate(STEPS):
        before = variable.numpy(), {k: s.numpy() for k, s in updater.slots.items()}
        tf.function(lambda g: updates.apply(None, [(g, variable)]))(gradient(step, rows))
        history.append((before, rows))
    return variable, updater, history


@pytest.mark.parametrize("name", list(optimizers()))
def test_only_touched_rows_and_their_slots_change(name):
    variable, updater, history = train_with_rule(optimizers()[name])
    after = variable.numpy(), {k: s.numpy() for k, s in updater.slots.items()}
    touched = sorted(set(r for _, rows in history for r in rows))
    untouched = [r for r in range(ROWS) if r not in touched]
    start_values, start_slots = history[0][0]
    np.testing.assert_array_equal(after[0][untouched], start_values[untouched])
    assert not np.allclose(after[0][touched], start_values[touched])
    for key, slot in after[1].items():
        np.testing.assert_array_equal(slot[untouched], start_slots[key][untouched], key)
    assert int(updater.iterations.numpy()) == len(STEPS)


@pytest.mark.parametrize("name", ["sgd", "legacy_sgd", "adagrad", "legacy_adagrad"])
def test_exact_rules_equal_the_optimizers_own_update(name):
    make = optimizers()[name]
    rule, note = row_rule(make())
    assert rule.exact and "exact" in note
    by_rule, _, _ = train_with_rule(make)
    own = tf.Variable(start())
    optimizer = make()
    for step, rows in enumerate(STEPS):
        optimizer.apply_gradients([(gradient(step, rows), own)])
    np.testing.assert_allclose(by_rule.numpy(), own.numpy(), rtol=1e-6, atol=1e-7)


def lazy_reference(name):
    """The lazy rules written out in numpy, row by row."""
    w = start().astype(np.float64)
    m, v, mg = np.zeros_like(w), np.zeros_like(w), np.zeros_like(w)
    for step, rows in enumerate(STEPS):
        g_all = gradient(step, rows)
        idx, g = np.unique(rows), np.zeros((len(np.unique(rows)), DIM))
        for r, value in zip(rows, g_all.values.numpy()):
            g[np.searchsorted(idx, r)] += value
        t = step + 1
        if name == "momentum":
            m[idx] = 0.9 * m[idx] - 0.1 * g
            w[idx] += m[idx]
        elif name == "nesterov":
            m[idx] = 0.9 * m[idx] - 0.1 * g
            w[idx] += 0.9 * m[idx] - 0.1 * g
        elif name in ("adam", "legacy_adam"):
            m[idx] = 0.9 * m[idx] + 0.1 * g
            v[idx] = 0.999 * v[idx] + 0.001 * g * g
            alpha = 0.01 * np.sqrt(1 - 0.999 ** t) / (1 - 0.9 ** t)
            w[idx] -= alpha * m[idx] / (np.sqrt(v[idx]) + 1e-7)
        elif name in ("rmsprop", "legacy_rmsprop"):
            v[idx] = 0.9 * v[idx] + 0.1 * g * g
            w[idx] -= 0.01 * g / np.sqrt(v[idx] + 1e-7)
        else:   # centered RMSprop with momentum
            v[idx] = 0.9 * v[idx] + 0.1 * g * g
            mg[idx] = 0.9 * mg[idx] + 0.1 * g
            m[idx] = 0.5 * m[idx] + 0.01 * g / np.sqrt(v[idx] - mg[idx] ** 2 + 1e-7)
            w[idx] -= m[idx]
    return w


@pytest.mark.parametrize("name", ["momentum", "nesterov", "adam", "legacy_adam", "rmsprop",
                                  "legacy_rmsprop", "centered_momentum_rmsprop"])
def test_lazy_rules_follow_their_formula_and_say_they_are_lazy(name):
    rule, note = row_rule(optimizers()[name]())
    assert not rule.exact and note.split(": ", 1)[1].startswith("lazy ")
    by_rule, _, _ = train_with_rule(optimizers()[name])
    np.testing.assert_allclose(by_rule.numpy(), lazy_reference(name), rtol=2e-5, atol=1e-6)


def test_a_learning_rate_schedule_is_followed_step_by_step():
    schedule = tf.keras.optimizers.schedules.ExponentialDecay(0.1, decay_steps=1, decay_rate=0.5)
    variable, _, _ = train_with_rule(lambda: tf.keras.optimizers.SGD(schedule))
    own = tf.Variable(start())
    optimizer = tf.keras.optimizers.SGD(schedule)
    for step, rows in enumerate(STEPS):
        optimizer.apply_gradients([(gradient(step, rows), own)])
    np.testing.assert_allclose(variable.numpy(), own.numpy(), rtol=1e-6)


@pytest.mark.parametrize("make, reason", [
    (lambda: tf.keras.optimizers.Ftrl(0.1), "row-wise rules exist for SGD, Adagrad, Adam"),
    (lambda: tf.keras.optimizers.Adam(0.1, clipnorm=1.0), "with clipnorm"),
    (lambda: tf.keras.optimizers.Adam(0.1, amsgrad=True), "with amsgrad"),
])
def test_optimizers_without_a_rule_keep_their_own_update_and_the_note_says_why(make, reason):
    rule, note = row_rule(make())
    assert rule is None and reason in note and "every row" in note
    variable = tf.Variable(start())
    assert not LocalRowUpdates(make(), [variable]).covers(variable)


def test_slots_of_a_row_updater_can_be_made_elsewhere():
    made = []

    def make(name, shape, dtype, initial):
        made.append(name)
        return tf.Variable(initial() if callable(initial) else initial, dtype=dtype)

    rule, _ = row_rule(tf.keras.optimizers.Adam(0.01))
    RowUpdater(rule, tf.Variable(start()), make)
    assert made == ["iterations", "m", "v"]
