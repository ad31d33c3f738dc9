"""fastnn's Numba kernels (installed as ``fastnn.kernels``; import as ``from fastnn import kernels``).

Every name in ``__all__`` has a NumPy twin of the same name and signature in ``fastnn.reference``.
"""

from .config import BLOCK, TILE
from .elementwise import exp, exp_array, sigmoid, sigmoid_array, tanh, tanh_array
from .network import (accumulate, backward, dims, forward_parallel, forward_serial, hidden_delta,
                      hidden_forward, load_block, loss_parallel, loss_serial, output_delta, output_forward,
                      split, train_parallel, train_serial, update)

__all__ = [
    "exp", "tanh", "sigmoid", "exp_array", "tanh_array", "sigmoid_array",
    "split", "load_block", "hidden_forward", "output_forward", "output_delta", "hidden_delta",
    "accumulate", "backward", "update", "train_serial", "train_parallel", "loss_serial", "loss_parallel",
    "forward_serial", "forward_parallel",
]
