"""Vectorisable exp, tanh and sigmoid (llvmlite has no SVML here, so libm's would run one at a time).

Each is written once and generated per dtype: the constants must carry the data's dtype, or a float32
kernel would silently compute in float64. ``exp``, ``tanh``, ``sigmoid`` and the activations' derivatives
dispatch on the argument's type at compile time; the accuracy of exp, tanh and sigmoid against NumPy is
bounded in tests/test_kernels.py. ``ACTIVATIONS`` is the table of hidden activations by name.

Both reduce their argument with a shifter (y + 1.5 * 2**52 rounds y to an integer in the low mantissa
bits, whose shifted bits are then 2**k: no float-to-int conversion, no floor) and a two-part ln2 (exact).
tanh, the costliest operation of a pass, then uses e**(2r) = (Q + r) / (Q - r) with Q = r coth r, an even
function that a polynomial of degree 5 in r**2 gives to 1e-18 (float32: degree 2, 2e-9): with the
division tanh needs anyway, that is 12 multiply-adds in all, against 16 for an expm1 polynomial and 21
for a Taylor series (measured 1.3-1.5x slower). exp keeps a polynomial (10 multiply-adds), which is
within 1 ulp where the quotient form is within 2. The two-class softmax takes both of its probabilities
from that quotient with one division (logistic_pair).
"""

import math

import numpy as np
from numba import types
from numba.extending import intrinsic, overload

from .config import MATH_FASTMATH, kernel, subroutine

_INT = {types.float64: types.int64, types.float32: types.int32}
_FLOAT = {v: k for k, v in _INT.items()}


def _bitcast(table):
    @intrinsic
    def cast(typingctx, value):
        result = table[value]

        def codegen(context, builder, signature, args):
            return builder.bitcast(args[0], context.get_value_type(result))

        return result(value), codegen
    return cast


_as_int = _bitcast(_INT)  # the bits of a float64 (float32) as an int64 (int32), and back
_as_float = _bitcast(_FLOAT)

# r coth r = Q(r**2) on |r| <= ln2/4: near-minimax relative-error fits (Lawson's algorithm in 40-digit
# arithmetic), 8e-19 in float64 and 2e-9 in float32 before rounding the coefficients.
_Q64 = (1.0, 0.33333333333333204, -0.022222222221613765, 0.0021164020230102546, -0.00021163395460879907,
        2.118735114098577e-05)
_Q32 = (1.0, 0.33333250880241394, -0.022134099155664444)
# (e**r - 1 - r) / r**2 on |r| <= ln2/2, the same fit weighted for the relative error of e**r - 1: 1e-18
# in float64, 1e-9 in float32.
_E64 = (0.5, 0.1666666666666667, 0.04166666666666659, 0.0083333333333262, 0.001388888888893964,
        0.00019841269874621478, 2.4801587195084696e-05, 2.755725562458409e-06, 2.7557397897660247e-07,
        2.510513276669125e-08, 2.0873276093442343e-09)
_E32 = (0.50000000132715, 0.1666666642092575, 0.04166646624996106, 0.008333397998166013,
        0.0013933537370210245, 0.00019832909930534527)


def _generate(F, I, exponent_bias, mantissa_bits, ln2_hi, ln2_lo, coth_c, expm1_c, tanh_one):
    """exp, tanh, sigmoid for float type F (I: the integer of the same width)."""
    F, I = np.dtype(F).type, np.dtype(I).type
    float_type = types.float64 if F == np.float64 else types.float32

    def scalar(func, returns=float_type):  # compiled into the kernels that call it
        return subroutine(func, returns=returns, fastmath=MATH_FASTMATH)

    zero, one, two, half = F(0), F(1), F(2), F(0.5)
    log2e, two_log2e = F(1.4426950408889634), F(2 * 1.4426950408889634)
    ln2_hi, ln2_lo = F(ln2_hi), F(ln2_lo)  # ln2_hi has few bits: k * ln2_hi is exact for every k used
    half_ln2_hi, half_ln2_lo = ln2_hi * half, ln2_lo * half
    # y + shifter rounds y to an integer held in the low mantissa bits (shifter = 1.5 * 2**mantissa_bits):
    # no float-to-int conversion. The biased shifter adds the exponent bias, so that shifting its bits left
    # by mantissa_bits gives 2**k directly.
    shifter = F(1.5 * 2.0**mantissa_bits)
    biased_shifter = F(1.5 * 2.0**mantissa_bits + exponent_bias)
    shifter_bits, bias, shift = I(np.array(shifter).view(I)), I(exponent_bias), I(mantissa_bits)
    sign_bit = I(np.iinfo(I).min)  # the bits of -0.0
    # Beyond these e**x is inf, or 0 (below the smallest subnormal); the clamps keep k in range.
    exp_hi = F(math.log(np.finfo(F).max) + 1)
    exp_lo = F(math.log(np.finfo(F).tiny) - (mantissa_bits + 2) * math.log(2))
    tanh_one = F(tanh_one)  # |tanh x| rounds to 1 beyond this
    # 2 Q(w / 4), highest degree first (logistic_pair); beyond pair_max, e**-|t| is below the smallest normal number.
    pair_c = tuple(F(2 * c / 4**i) for i, c in reversed(list(enumerate(coth_c))))
    pair_max = F(-math.log(np.finfo(F).tiny))
    coth_c = tuple(F(c) for c in reversed(coth_c))  # highest degree first, for Horner
    expm1_c = tuple(F(c) for c in reversed(expm1_c))

    @scalar
    def coth_poly(w):
        """Q(w) = r coth r for w = r**2, |r| <= ln2/4."""
        p = coth_c[0]
        for c in coth_c[1:]:
            p = p * w + c
        return p

    @scalar
    def exp(x):
        """e**x = 2**k (1 + r + r**2 P(r)), x = k ln2 + r.

        2**k is applied as 2**(k//2) 2**(k - k//2), two normal numbers, so that the product overflows
        to inf and underflows through the subnormals to 0 as np.exp does.
        """
        x = exp_hi if x > exp_hi else x  # comparisons written so that NaN passes through
        x = exp_lo if x < exp_lo else x
        kf = x * log2e + shifter
        k = kf - shifter
        r = (x - k * ln2_hi) - k * ln2_lo
        p = expm1_c[0]
        for c in expm1_c[1:]:
            p = p * r + c
        ki = I(_as_int(kf) - shifter_bits)
        k1 = I(ki >> I(1))
        k2 = I(ki - k1)
        scale1, scale2 = _as_float(I((k1 + bias) << shift)), _as_float(I((k2 + bias) << shift))
        return (one + (r + r * r * p)) * scale1 * scale2

    @scalar
    def tanh(x):
        """tanh|x| = m / (m + 2), m = e**2|x| - 1 = ((s - 1) Q + (s + 1) r) / (Q - r), 2|x| = k ln2 + 2r,
        s = 2**k; the sign of x.

        The common factor 1 / (Q - r) cancels, so one division serves the whole range: exact near 0
        (k = 0: r / Q), and near 1 the error of m does not reach 1 - tanh = 2 / (m + 2).
        """
        a = abs(x)
        a = tanh_one if a > tanh_one else a  # NaN passes through
        kf = a * two_log2e + biased_shifter
        k = kf - biased_shifter
        r = (a - k * half_ln2_hi) - k * half_ln2_lo
        p = coth_poly(r * r)
        s = _as_float(I(_as_int(kf) << shift))
        m = (s - one) * p + (s * r + r)  # (s + 1) r as one multiply-add
        # The quotient is >= 0 (or NaN): x's sign bit ORed into it is copysign, in one operation fewer (copysign
        # also clears the quotient's sign bit).
        return _as_float(I(_as_int(m / (m + two * (p - r))) | I(_as_int(x) & sign_bit)))

    def logistic_pair(t):
        """(1 / (1 + e), e / (1 + e)), e = e**-|t|: the larger and the smaller probability of a two-class
        softmax whose logits are t apart, with one division for both.

        e = 2**-k (R - rho) / (R + rho) for |t| = k ln2 + rho, where R = 2 Q((rho/2)**2) is tanh's quotient
        (e**2r = (Q + r) / (Q - r), r = rho/2) with its coefficients scaled by powers of 2, so both
        probabilities are (R + rho, 2**-k (R - rho)) / ((R + rho) + 2**-k (R - rho)). A smaller probability
        below the smallest normal number is 0 (it would need 2**-k below it: a second scaling, 15% of the
        stage's time, for values no result can tell from 0).
        """
        a = abs(t)
        a = pair_max if a > pair_max else a  # NaN passes through
        kf = biased_shifter - a * log2e  # bias - k in the low bits: shifted up, they are 2**-k
        k = kf - biased_shifter
        rho = (a + k * ln2_hi) + k * ln2_lo
        w = rho * rho
        p = pair_c[0]
        for c in pair_c[1:]:
            p = p * w + c
        v = p + rho
        x = _as_float(I(_as_int(kf) << shift)) * (p - rho)
        r = one / (v + x)
        return v * r, (zero if abs(t) > pair_max else x * r)

    logistic_pair = scalar(logistic_pair, types.UniTuple(float_type, 2))

    # Each activation's derivative beside it, in terms of the activation a = f(z): the backward pass keeps
    # a, not z.
    @scalar
    def tanh_grad(a):
        return one - a * a

    @scalar
    def sigmoid(x):
        """1 / (1 + e**-x), from e**-|x| so that it neither overflows nor loses the small tail."""
        e = exp(-abs(x))
        r = one / (one + e)
        return r if x >= 0 else e * r

    @scalar
    def sigmoid_grad(a):
        return a * (one - a)

    @scalar
    def relu(x):
        return max(x, zero)

    @scalar
    def relu_grad(a):
        return one if a > zero else zero

    return dict(exp=exp, tanh=tanh, sigmoid=sigmoid, logistic_pair=logistic_pair, tanh_grad=tanh_grad,
                sigmoid_grad=sigmoid_grad, relu=relu, relu_grad=relu_grad)


_F64 = _generate(np.float64, np.int64, 1023, 52,
                 6.93147180369123816490e-01, 1.90821492927058770002e-10,  # fdlibm's ln2 split
                 _Q64, _E64, 19.5)
_F32 = _generate(np.float32, np.int32, 127, 23,
                 0.693359375, -2.12194440e-4,  # Cephes' float32 ln2 split
                 _Q32, _E32, 9.5)


# The functions of each dtype by name, for kernels compiled per dtype (network.build).
FUNCTIONS = {"float64": _F64, "float32": _F32}


def _typed(name, doc):
    """A function of one float that runs the float64 or float32 version of ``name`` by its argument's type."""
    def stub(x):
        pass
    stub.__name__, stub.__qualname__, stub.__doc__ = name, name, doc

    def typed(x):
        f = (_F32 if x == types.float32 else _F64)[name]
        return lambda x: f(x)
    overload(stub)(typed)
    return stub


exp = _typed("exp", "e**x, vectorisable; <= 1 ulp from np.exp on the normal range.")
tanh = _typed("tanh", "tanh(x), vectorisable; within a few ulp of np.tanh (bound tested).")
sigmoid = _typed("sigmoid", "1 / (1 + e**-x), vectorisable and overflow-free.")

# The hidden activations: FUNCTIONS[dtype][name] is f and FUNCTIONS[dtype][name + "_grad"] its derivative
# in terms of a = f(z), side by side in _generate. fastnn.reference.ACTIVATIONS is the NumPy twin.
ACTIVATIONS = ("tanh", "sigmoid", "relu")


@kernel
def tanh_array(x, out):
    """out = tanh(x), elementwise.  x, out (n,) of one dtype."""
    for i in range(x.size):
        out[i] = tanh(x[i])


@kernel
def exp_array(x, out):
    """out = exp(x), elementwise.  x, out (n,) of one dtype."""
    for i in range(x.size):
        out[i] = exp(x[i])


@kernel
def sigmoid_array(x, out):
    """out = 1 / (1 + exp(-x)), elementwise.  x, out (n,) of one dtype."""
    for i in range(x.size):
        out[i] = sigmoid(x[i])
