"""Small building blocks shared by SPAIR's networks and the baselines."""

from __future__ import annotations

import keras


def mlp(hidden_units, n_outputs, activation="relu", name=None) -> keras.Sequential:
    """An MLP: Dense layers of `hidden_units` with `activation`, then a linear output.

    Every per-cell network of SPAIR (SPAIR_SPEC §1.2, §1.6) and the object networks of AIR
    (§4.2) are of this form; the weights are shared across cells and objects.
    """
    layers = [keras.layers.Dense(units, activation=activation) for units in hidden_units]
    layers.append(keras.layers.Dense(n_outputs))
    return keras.Sequential(layers, name=name)
