"""Vectorisable exp, tanh and sigmoid (llvmlite has no SVML here, so libm's would run one at a time).

Each is written once and generated per dtype: the constants must carry the data's dtype, or a float32
kernel would silently compute in float64. ``exp``, ``tanh`` and ``sigmoid`` dispatch on the argument's
type at compile time; their accuracy against NumPy is bounded in tests/test_kernels.py.
"""

import math

import numpy as np
from numba import njit, types
from numba.extending import intrinsic, overload

from .config import JIT, MATH_JIT


@intrinsic
def _bits_as_float(typingctx, bits):
    """Reinterpret an int64 (int32) as a float64 (float32): how 2**k is built without a libm call."""
    result = {types.int64: types.float64, types.int32: types.float32}[bits]

    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], context.get_value_type(result))

    return result(bits), codegen


def _generate(F, I, exponent_bias, mantissa_bits, ln2_hi, ln2_lo, exp_degree, expm1_degree, tanh_one):
    """exp, tanh, sigmoid for float type F (I: the integer of the same width)."""
    F, I = np.dtype(F).type, np.dtype(I).type
    log2e, half, one, two = F(1.4426950408889634), F(0.5), F(1), F(2)
    ln2_hi, ln2_lo = F(ln2_hi), F(ln2_lo)
    bias, shift = I(exponent_bias), I(mantissa_bits)
    # Beyond these e**x is inf, or 0 (below the smallest subnormal); the clamps keep k in int range.
    exp_hi = F(math.log(np.finfo(F).max) + 1)
    exp_lo = F(math.log(np.finfo(F).tiny) - (mantissa_bits + 2) * math.log(2))
    exp_taylor = tuple(F(1 / math.factorial(j)) for j in range(exp_degree, -1, -1))
    expm1_taylor = tuple(F(1 / math.factorial(j)) for j in range(expm1_degree, 1, -1))  # down to 1/2!
    tanh_one = F(tanh_one)

    @njit(**MATH_JIT)
    def reduce(x):
        """(r, 2**k) with x = k ln2 + r, |r| <= ln2/2, for 0 <= x < 40 (2**k then is a normal number).

        Cody-Waite: ln2 in two parts, so that r is exact; 2**k from the exponent bits, no libm call.
        """
        k = np.floor(x * log2e + half)  # np.floor keeps float32 (math.floor would return int64)
        r = (x - k * ln2_hi) - k * ln2_lo
        return r, _bits_as_float(I((I(k) + bias) << shift))

    @njit(**MATH_JIT)
    def exp(x):
        """e**x = 2**k e**r, e**r by its Taylor polynomial.

        2**k is applied as 2**(k//2) 2**(k - k//2), two normal numbers, so that the product overflows
        to inf and underflows through the subnormals to 0 as np.exp does.
        """
        x = exp_hi if x > exp_hi else x  # comparisons written so that NaN passes through
        x = exp_lo if x < exp_lo else x
        k = np.floor(x * log2e + half)
        r = (x - k * ln2_hi) - k * ln2_lo
        p = exp_taylor[0]
        for c in exp_taylor[1:]:
            p = p * r + c
        k1 = I(k) >> I(1)
        k2 = I(k) - k1
        return p * _bits_as_float(I((k1 + bias) << shift)) * _bits_as_float(I((k2 + bias) << shift))

    @njit(**MATH_JIT)
    def tanh(x):
        """tanh|x| = m / (m + 2) with m = expm1(2|x|) = 2**k expm1(r) + (2**k - 1), sign of x.

        expm1 rather than exp keeps full precision near 0 (where 1 - 2/(e + 1) cancels), without a second
        approximation for small x: one polynomial and one division for the whole range.
        """
        a = abs(x)
        r, scale = reduce(two * (tanh_one if a > tanh_one else a))  # tanh|x| rounds to 1 beyond tanh_one
        p = expm1_taylor[0]
        for c in expm1_taylor[1:]:
            p = p * r + c
        m = scale * (r + r * r * p) + (scale - one)
        return math.copysign(m / (m + two), x)

    @njit(**MATH_JIT)
    def sigmoid(x):
        """1 / (1 + e**-x), from e**-|x| so that it neither overflows nor loses the small tail."""
        e = exp(-abs(x))
        r = one / (one + e)
        return r if x >= 0 else e * r

    return exp, tanh, sigmoid


_F64 = _generate(np.float64, np.int64, 1023, 52,
                 6.93147180369123816490e-01, 1.90821492927058770002e-10,  # fdlibm's ln2 split
                 13, 14, 19.5)
_F32 = _generate(np.float32, np.int32, 127, 23,
                 0.693359375, -2.12194440e-4,  # Cephes' float32 ln2 split
                 7, 8, 9.5)


def _dispatch(index):
    def typed(x):
        f = (_F32 if x == types.float32 else _F64)[index]
        return lambda x: f(x)
    return typed


def exp(x):
    """e**x, vectorisable; <= 1 ulp from np.exp on the normal range."""


def tanh(x):
    """tanh(x), vectorisable; within a few ulp of np.tanh (bound tested)."""


def sigmoid(x):
    """1 / (1 + e**-x), vectorisable and overflow-free."""


for _i, _f in enumerate((exp, tanh, sigmoid)):
    overload(_f)(_dispatch(_i))


@njit(**JIT)
def tanh_array(x, out):
    """out = tanh(x), elementwise.  x, out (n,) of one dtype."""
    for i in range(x.size):
        out[i] = tanh(x[i])


@njit(**JIT)
def exp_array(x, out):
    """out = exp(x), elementwise.  x, out (n,) of one dtype."""
    for i in range(x.size):
        out[i] = exp(x[i])


@njit(**JIT)
def sigmoid_array(x, out):
    """out = 1 / (1 + exp(-x)), elementwise.  x, out (n,) of one dtype."""
    for i in range(x.size):
        out[i] = sigmoid(x[i])
