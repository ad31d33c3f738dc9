"""Vectorisable exp, tanh and sigmoid (llvmlite has no SVML here, so libm's would run one at a time).

Each is written once and generated per dtype: the constants must carry the data's dtype, or a float32
kernel would silently compute in float64. ``exp``, ``tanh`` and ``sigmoid`` dispatch on the argument's
type at compile time; the accuracy against NumPy is measured in tests/test_elementwise.py.
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


def _generate(F, I, exponent_bias, mantissa_bits, ln2_hi, ln2_lo, exp_degree, tanh_p, tanh_q, tanh_one):
    """exp, tanh, sigmoid for float type F (I: the integer of the same width)."""
    F, I = np.dtype(F).type, np.dtype(I).type
    log2e, half, one, two = F(1.4426950408889634), F(0.5), F(1), F(2)
    ln2_hi, ln2_lo = F(ln2_hi), F(ln2_lo)
    bias, shift = I(exponent_bias), I(mantissa_bits)
    # exp(x) overflows above log(max) and turns subnormal below log(tiny): clamp to the normal range.
    exp_hi = F(math.log(np.finfo(F).max) - 0.5)
    exp_lo = F(math.log(np.finfo(F).tiny) + 0.5)
    taylor = tuple(F(1 / math.factorial(k)) for k in range(exp_degree, -1, -1))
    tanh_p = tuple(F(c) for c in tanh_p)
    tanh_q = tuple(F(c) for c in tanh_q)
    small, tanh_one = F(0.625), F(tanh_one)

    @njit(**MATH_JIT)
    def exp(x):
        """e**x: x = k ln2 + r (Cody-Waite), Taylor polynomial in r, times 2**k from the exponent bits."""
        x = exp_hi if x > exp_hi else x  # comparisons written so that NaN passes through
        x = exp_lo if x < exp_lo else x
        k = np.floor(x * log2e + half)  # np.floor keeps float32 (math.floor would return int64)
        r = (x - k * ln2_hi) - k * ln2_lo
        p = taylor[0]
        for c in taylor[1:]:
            p = p * r + c
        return p * _bits_as_float(I((I(k) + bias) << shift))

    @njit(**MATH_JIT)
    def tanh(x):
        """tanh(x): x + x z P(z)/Q(z) with z = x*x below 0.625 (Cephes), else 1 - 2/(e**2|x| + 1)."""
        z = x * x
        p = tanh_p[0]
        for c in tanh_p[1:]:
            p = p * z + c
        q = tanh_q[0]
        for c in tanh_q[1:]:
            q = q * z + c
        a = abs(x)
        e = exp(two * (tanh_one if a > tanh_one else a))  # tanh is 1.0 in this precision beyond tanh_one
        # One division serves both branches (divisions are the slowest vector instruction here).
        near0 = a < small
        d = (x * z * p if near0 else two) / (q if near0 else e + one)
        return x + d if near0 else math.copysign(one - d, x)

    @njit(**MATH_JIT)
    def sigmoid(x):
        """1 / (1 + e**-x), from e**-|x| so that it neither overflows nor loses the small tail."""
        e = exp(-abs(x))
        r = one / (one + e)
        return r if x >= 0 else e * r

    return exp, tanh, sigmoid


_F64 = _generate(
    np.float64, np.int64, 1023, 52,
    6.93147180369123816490e-01, 1.90821492927058770002e-10,  # fdlibm's ln2 split
    13,
    (-9.64399179425052238628e-1, -9.92877231001918586564e1, -1.61468768441708447952e3),
    (1.0, 1.12811678491632931402e2, 2.23548839060100448583e3, 4.84406305325125486048e3),
    19.5,
)
_F32 = _generate(
    np.float32, np.int32, 127, 23,
    0.693359375, -2.12194440e-4,  # Cephes' float32 ln2 split
    7,
    (-5.70498872745e-3, 2.06390887954e-2, -5.37397155531e-2, 1.33314422036e-1, -3.33332819422e-1),
    (0.0, 1.0),  # Q = 1: Cephes' float32 tanh is a plain polynomial
    9.5,
)


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
