"""fastnn's Numba kernels (installed as ``fastnn.kernels``; import as ``from fastnn import kernels``).

``build(act, out, dtype, d, k, loop, parallel)`` returns one variant's kernels (compiled on first call,
cached on disk); each name in it, and each name in ``__all__``, has a NumPy twin of the same name and
signature in ``fastnn.reference``.
"""

from .config import BLOCK, TILE, UNROLL, KernelCache
from .elementwise import ACTIVATIONS, exp_array, sigmoid_array, tanh_array
from .network import LOOPS, OUTPUTS, SOLVERS, build, orders, work_rows
from .network import _heavy as heavy
from .network import _tile_size as tile_size

__all__ = ["exp_array", "tanh_array", "sigmoid_array", "orders", "build"]
