"""Compilation settings shared by every kernel, in one place (as stumpy's config.py)."""

import numba

# No 'nnan'/'ninf': a NaN or inf must reach the divergence check instead of being optimised away.
# 'reassoc' lets LLVM vectorise the per-block reductions; 'contract' allows FMA.
FASTMATH = {"nsz", "arcp", "contract", "reassoc"}

# error_model='numpy' drops the ZeroDivisionError check that stops loops with a division from vectorising.
JIT = dict(cache=True, nogil=True, error_model="numpy", fastmath=FASTMATH)

# The elementary functions rely on an exact Cody-Waite reduction, which 'reassoc' or 'arcp' would undo.
MATH_JIT = dict(JIT, fastmath={"nsz", "contract"})

# Samples per block: the inner loops run over the samples of a block, so they vectorise for any hidden
# size, and a block's buffers ((d + 2h + 3k + 2) rows of BLOCK values) stay in L1/L2.
BLOCK = 256
# ... fewer for wide layers: a block's A1 rows (h x block values) stay within this many bytes. Measured on
# the `large` workload (H = 64, float64): blocks of 128 samples (64 KiB) ran 1.15x faster than 256.
BLOCK_BYTES = 1 << 16

# Up to this many inputs the loop over inputs is compiled with a constant trip count, once per number of
# inputs (each costs a compilation of its own, about 8 s, cached on disk); wider inputs share one.
UNROLL = 4

# Samples per tile: the unit of parallel work. Each tile's gradient is a separate partial summed in tile
# order, so results never depend on the number of threads. Fixed, never derived from the thread count.
TILE = 32 * BLOCK


def variant(func, suffix, calls=None, **options):
    """Compile ``func`` again under another name, so that its on-disk cache entry is its own.

    calls: {global name: replacement} for the clone, e.g. the parallel variant of a helper it calls.
    """
    import types

    clone = types.FunctionType(func.__code__, dict(func.__globals__, **(calls or {})), func.__name__ + suffix,
                               func.__defaults__, func.__closure__)
    clone.__qualname__ = func.__qualname__ + suffix
    clone.__doc__ = func.__doc__
    return numba.njit(**dict(JIT, **options))(clone)
