import numpy as np


from thresher.model_tools.ir import Dense, Dequant, InputQuantizer, IntegerNetwork, Thresholds


def tiny_network(seed=0, sizes=(12, 6, 4), name="tiny"):
    """A small dense integer network: 2-bit inputs from 0..255 pixels, ternary weights,
    signed 2-bit (-1, 0, 1) hidden activations with per-channel directions, raw last layer."""
    rng = np.random.default_rng(seed)
    n_in = sizes[0]
    inq = InputQuantizer((1, n_in), (n_in,),
                         Thresholds(np.array([[40.5, 128.0, 200.25]], dtype=np.float32), [1], 0))
    layers, lo, hi = [], 0, 3
    for i, (k, c) in enumerate(zip(sizes[:-1], sizes[1:])):
        w = rng.integers(-1, 2, size=(c, k))
        last = i == len(sizes) - 2
        act = None
        if not last:
            direction = rng.choice([-1, 1], size=c)
            t = np.sort(rng.integers(-4, 5, size=(c, 2)), axis=1)
            act = Thresholds(t, direction, offset=-1)
        layers.append(Dense(f"fc{i}", w, (k,), (c,), (lo, hi), 2, act))
        lo, hi = -1, 1
    return IntegerNetwork(inq, layers, Dequant(np.ones(sizes[-1]), np.zeros(sizes[-1])),
                          (sizes[-1],), name)
