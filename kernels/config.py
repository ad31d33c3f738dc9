"""Compilation settings shared by every kernel, the on-disk cache, and how kernel variants are made."""

import functools
import hashlib
import os
import types

import llvmlite
import numba
from llvmlite import binding as llvm
from llvmlite import ir
from numba.core import cgutils, compiler, cpu_options, typed_passes, untyped_passes
from numba.core import types as nbtypes
from numba.core.caching import FunctionCache, NullCache
from numba.core.codegen import JITCodeLibrary
from numba.core.compiler_lock import global_compiler_lock
from numba.core.compiler_machinery import FunctionPass, PassManager, register_pass
from numba.core.errors import TypingError
from numba.extending import intrinsic

try:
    import fcntl
except ImportError:  # not POSIX: saves are not serialised between processes
    fcntl = None

# No 'nnan'/'ninf': a NaN or inf must reach the divergence check instead of being optimised away.
# 'reassoc' lets LLVM vectorise the per-block reductions; 'contract' allows FMA.
FASTMATH = {"nsz", "arcp", "contract", "reassoc"}


class _Pipeline(compiler.CompilerBase):
    """Numba's nopython pipeline without the passes that do nothing for these kernels: the rewrites after
    typing (of array expressions and indexing by string literals, neither used here; the pass analyses the
    variables' lifetimes of every function to find none: 4% of a variant's compile time, measured), the
    inlining of closures, reductions, stencils and list comprehensions (none here: another 4%), lifting of
    with-blocks, type annotations and parallel diagnostics."""

    SKIP = (typed_passes.NopythonRewrites, untyped_passes.WithLifting, typed_passes.AnnotateTypes,
            typed_passes.DumpParforDiagnostics, untyped_passes.InlineClosureLikes)

    def define_pipelines(self):
        full = compiler.DefaultPassBuilder.define_nopython_pipeline(self.state)
        pipeline = PassManager(full.pipeline_name)
        for cls, description in full.passes:
            if cls not in self.SKIP:
                pipeline.add_pass(cls, description)
            if cls is typed_passes.NopythonTypeInference:
                pipeline.add_pass(_Typed, "tell TYPED's callback the subroutines called")
        pipeline.finalize()
        return [pipeline]


# Python functions being compiled whose subroutine calls someone waits for: {py_func: callback}, called with
# the (key, signature) of each subroutine the function calls, in the order it links them, once it is typed
# (the engine's compile helper).
TYPED = {}


@register_pass(mutates_CFG=False, analysis_only=True)
class _Typed(FunctionPass):
    _name = "fastnn_typed"

    def __init__(self):
        FunctionPass.__init__(self)

    def run_pass(self, state):
        callback = TYPED.get(state.func_id.func)
        if callback is not None:
            calls = {}
            for label in sorted(state.func_ir.blocks):  # in the order lowering visits them
                for expr in state.func_ir.blocks[label].find_exprs("call"):
                    for template in getattr(state.typemap[expr.func.name], "templates", ()):
                        if hasattr(template.key, "linked") and expr in state.calltypes:
                            calls[template.key.key, state.calltypes[expr]] = None
            callback(list(calls))
        return False


# error_model='numpy' drops the ZeroDivisionError check that stops loops with a division from vectorising.
# Kernels are called from Python only: no wrapper for C callers (compiling one costs about 0.1 s a kernel).
JIT = dict(nogil=True, error_model="numpy", fastmath=FASTMATH, no_cfunc_wrapper=True, pipeline_class=_Pipeline)

# The elementary functions rely on an exact Cody-Waite reduction, which 'reassoc' or 'arcp' would undo.
MATH_FASTMATH = {"nsz", "contract"}

# Samples per block: the inner loops run over the samples of a block, so they vectorise for any hidden
# size, and a block's buffers ((d + 2h + 3k + 2) rows of BLOCK values) stay in L1/L2.
BLOCK = 256
# ... fewer for wide layers: a block's A1 rows (h x block values) stay within this many bytes. Measured on
# the `large` workload (H = 64, float64): blocks of 128 samples (64 KiB) ran 1.15x faster than 256.
BLOCK_BYTES = 1 << 16

# Up to this many inputs (and classes) the loops over them are compiled with constant trip counts, once per
# number; more share one compilation that reads the number at run time.
UNROLL = 4

# Samples per tile: the unit of parallel work. Each tile's gradient is a separate partial summed in tile
# order, so results never depend on the number of threads. Fixed, never derived from the thread count.
TILE = 32 * BLOCK


def _source_digest():
    """SHA-256 of every source file of the kernels: part of each cache key (see KernelCache)."""
    digest = hashlib.sha256()
    folder = os.path.dirname(os.path.abspath(__file__))
    for name in sorted(os.listdir(folder)):
        if name.endswith(".py"):
            with open(os.path.join(folder, name), "rb") as f:
                digest.update(name.encode() + b"\0" + f.read())
    return digest.hexdigest()


SOURCE = _source_digest()


class KernelCache(FunctionCache):
    """Numba's on-disk cache, made safe for kernels that inline code from other files and for processes
    that compile at the same time.

    Numba keys a cached function by its own bytecode and checks its own file's time stamp only, so a kernel
    that inlines tanh from elementwise.py would keep stale machine code after tanh is edited; and variants
    made from one function by ``specialise`` differ only in their globals, which Numba's key leaves out.
    The key here adds the digest of every kernel source file and the variant's name. Numba's save reads
    the index, adds an entry and writes it back: two processes saving entries of one function at once could
    leave the index naming the other's data file, so saves hold an exclusive lock on the cache folder.
    """

    def __init__(self, py_func, variant=""):
        super().__init__(py_func)
        self._variant = variant

    def _index_key(self, sig, codegen):
        return super()._index_key(sig, codegen) + (SOURCE, self._variant)

    def has(self, sig, codegen):
        """Whether machine code for this signature is on disk (what a call would load instead of compiling)."""
        try:
            return self._index_key(sig, codegen) in self._cache_file._load_index()
        except Exception:  # an unreadable index: the call will compile
            return False

    def save_overload(self, sig, data):
        if fcntl is None:
            return super().save_overload(sig, data)
        try:
            lock = open(os.path.join(self._cache_path, "fastnn.lock"), "a")
        except OSError:  # the folder cannot be written: Numba's save would fail (quietly) as well
            return super().save_overload(sig, data)
        with lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            super().save_overload(sig, data)


def kernel(func, variant="", **options):
    """``numba.njit(func)`` with JIT and ``options``, cached on disk through KernelCache."""
    dispatcher = numba.njit(**dict(JIT, **options))(func)
    try:
        dispatcher._cache = KernelCache(dispatcher.py_func, variant)
    except RuntimeError:  # no writable cache folder (read-only install, no home): compile every process
        dispatcher._cache = NullCache()
    dispatcher.compile = functools.partial(_compile_kernel, dispatcher, dispatcher.compile)
    return dispatcher


def _compile_kernel(dispatcher, compile, sig):
    """A kernel's compile(sig), with the code libraries made meanwhile of _KernelLibrary's class: their
    functions prefer 512-bit vectors (WIDE_VECTORS), and the wrappers of a parallel kernel's loops are linked
    into it only.

    Numba compiles each parallel loop's body, then two wrappers around it, each in a library of its own that
    links the body, is optimised whole and made into machine code, and then the kernel, which links them
    all and is optimised whole again: the body was optimised and compiled to machine code three times before
    the kernel's own time. The kernel calls the wrappers only by linking them, so while it compiles their
    libraries are linked only: a third less compile time for a parallel variant (digits' 16 -> 11 s,
    measured), the same machine code in the end.
    """
    codegen = dispatcher.targetctx.codegen()
    with global_compiler_lock:  # no other compilation while the codegen makes these libraries
        own = codegen.__dict__.get("_library_class")
        codegen._library_class = _KernelLibrary
        try:
            return compile(sig)
        finally:
            if own is None:
                del codegen._library_class  # the codegen's class's own again
            else:
                codegen._library_class = own


def subroutine(func, returns, fastmath=FASTMATH, key=None):
    """``func`` as a function that kernels call, compiled into each caller's machine code.

    A Numba function called from another is compiled as a program of its own (wrappers for Python, machine
    code) and then again inside its caller; a subroutine is compiled once per signature, into LLVM code
    that its callers link and inline, which about halves the time a kernel takes to compile. It cannot be
    called from Python (``kernel(func)`` can). returns: the Numba type it returns, or a function of the
    argument types that gives it. key: what its code depends on besides the sources of the kernels and
    its argument types (for a variant's stage: the constants it reads; by default its qualified name and
    the values its closure holds).
    A caller's code calls it by a name that the key and signature give (Subroutine), and its code is made
    only when the caller is linked: once per key and signature in a process, whichever variant calls it,
    and kept on disk for the next process (SubroutineCache), where another process may have made it
    meanwhile (prepare).
    """
    flags = compiler.Flags()
    flags.nrt = False  # subroutines take arrays, never allocate: no reference counting
    flags.error_model = "numpy"
    flags.no_compile = flags.no_cpython_wrapper = flags.no_cfunc_wrapper = True  # called from kernels only
    flags.fastmath = cpu_options.FastMathOptions(set(fastmath))
    if key is None:  # its name, and what a closure holds (the dtype's constants of the elementary functions)
        key = (func.__module__, func.__qualname__, tuple(_describe(c.cell_contents) for c in func.__closure__ or ()))
    key = (key, tuple(sorted(fastmath)))

    def linked(context, sig):
        """The Subroutine of this signature, one per process (and target context)."""
        table = context.cached_internal_func
        if (Subroutine, key, sig) not in table:
            table[Subroutine, key, sig] = Subroutine(context, func, sig, flags, key)
        return table[Subroutine, key, sig]

    def codegen(context, builder, sig, args):
        called = linked(context, sig)
        context.active_code_library.add_linking_library(called)
        return context.call_internal(builder, called.fndesc, sig, args)

    def typer(typingctx, *args):
        result = returns(*args) if callable(returns) and not isinstance(returns, nbtypes.Type) else returns
        return result(*args), codegen

    names = func.__code__.co_varnames[:func.__code__.co_argcount]
    scope = {"typer": typer}
    exec(f"def {func.__name__}(typingctx, {', '.join(names)}):\n    return typer(typingctx, {', '.join(names)})",
         scope)
    compiled = intrinsic(scope[func.__name__])
    compiled.key = key  # for the keys of the stages that call it (specialise)
    compiled.linked = linked  # for prepare
    return compiled


class Subroutine:
    """A subroutine's code library for one signature, as its callers link it, made when first linked.

    Its function's name in the machine code comes from a digest of everything its code depends on (see
    SubroutineCache), not from Numba's count of the functions compiled in a process, so a caller's code is
    made before the subroutine's, and code made in another process is linked by the same name: one name,
    one code, which is what LLVM assumes of the linked functions it merges (linkonce_odr).
    """

    def __init__(self, context, func, sig, flags, key):
        self._context, self._func, self._sig, self._flags = context, func, sig, flags
        codegen = context.codegen()
        self._path, digest = SUBROUTINES.path(codegen, func, key, sig)
        self.name = f"fastnn.{func.__name__}.{digest[:32]}"
        self.fndesc = types.SimpleNamespace(mangled_name=self.name, argtypes=sig.args, restype=sig.return_type,
                                            args=func.__code__.co_varnames[:func.__code__.co_argcount],
                                            noalias=False, inline=False)
        self._library = None

    def _ensure_finalized(self):
        """Called when a caller adds it to its links: its code is made when the caller is linked."""

    @property
    def _reload_init(self):
        return self.library._reload_init

    def _get_module_for_linking(self):
        return self.library._get_module_for_linking()

    @property
    def library(self):
        """Its _LinkedOnly library: from SubroutineCache, else compiled (and saved there)."""
        if self._library is None:
            with global_compiler_lock:
                codegen = self._context.codegen()
                library = SUBROUTINES.load(codegen, self._path, self.name)
                if library is None:
                    library = _LinkedOnly(codegen, self.name)
                    cres = _Pipeline(self._context.typing_context, self._context, library, self._sig.args,
                                     self._sig.return_type, self._flags.copy(), {}).compile_extra(self._func)
                    library._final_module.get_function(cres.fndesc.mangled_name).name = self.name
                    SUBROUTINES.save(self._path, self.name, library)
                self._library = library
        return self._library


def _link(library):
    """Finalise a code library by linking what it links (as CPUCodeLibrary.finalize does), no more."""
    for linked in dict.fromkeys(library._linking_libraries):
        library._reload_init.update(linked._reload_init)
        library._final_module.link_in(linked._get_module_for_linking(), preserve=True)
    library._finalized = True


# LLVM's tuning for Intel's AVX-512 server CPUs prefers 256-bit vectors (against the lower clock of 512-bit
# code on the early ones); for AMD's Zen 4 it takes 512. fastnn's loops are long runs of floating-point work,
# which 512-bit vectors did 1.2-1.3x faster on both: on a Zen 4, `large`'s pass, `seed` and an evaluation, with
# 256-bit code forced; on a Sapphire Rapids-class Xeon, the tanh of the kernels (docs/DESIGN.md, facts). So
# every function fastnn compiles prefers 512-bit vectors itself (LLVM's function attribute, as clang's
# -mprefer-vector-width=512 sets it), and Numba's settings, and the code of everyone else's Numba functions,
# stay as they are. Where the CPU has no AVX-512 its widest vectors remain the limit.
WIDE_VECTORS = '"prefer-vector-width"="512"'


class _WideVectorLibrary(JITCodeLibrary):
    """A code library whose functions prefer 512-bit vectors (WIDE_VECTORS): fastnn's own libraries."""

    def add_ir_module(self, ir_module):
        for function in ir_module.functions:
            if not function.is_declaration:
                set.add(function.attributes, WIDE_VECTORS)  # llvmlite's add() takes only attributes it knows
        super().add_ir_module(ir_module)


class _LinkedOnly(_WideVectorLibrary):
    """The code library of a subroutine: its LLVM code, linked into its callers and optimised there, never
    on its own. Numba's own subroutine libraries are optimised as whole modules and made into machine code
    when their first caller links them, work that the caller's optimisation then does again after inlining
    (a tenth of a kernel's compile time, and the machine code is never run)."""

    finalize = _link


# How Numba names the libraries of a parallel loop's two wrappers (the second is the repr of its builder).
WRAPPER_LIBRARIES = ("parallelgufuncwrapper", "<numba.np.ufunc.wrappers._GufuncWrapper")


class _KernelLibrary(_WideVectorLibrary):
    """The code libraries made while a kernel compiles: their functions prefer 512-bit vectors; the wrappers of
    a parallel kernel's loops (WRAPPER_LIBRARIES) are linked only, every other library is finalised as Numba's
    own are."""

    def finalize(self):
        if self.name.startswith(WRAPPER_LIBRARIES):
            _link(self)
        else:
            super().finalize()


def prepare(dispatcher, calls):
    """Make the code of these subroutines of a kernel ((key, signature) pairs, as TYPED's callbacks get them)
    into SubroutineCache, the last called first: what a helper process does while another compiles the
    kernel and links them, the first called first (fastnn.engine._start_helper)."""
    called = {value.key: value for value in dispatcher.py_func.__globals__.values() if hasattr(value, "linked")}
    for key, sig in reversed(calls):
        if key in called:
            called[key].linked(dispatcher.targetctx, sig)._get_module_for_linking()


class SubroutineCache:
    """The LLVM code of compiled subroutines, on disk beside the kernels' cache (its ``subroutines``
    folder): a variant met for the first time compiles only the subroutines that no variant compiled
    before on this machine (a stage reads few of a variant's constants: update, the loss, the output
    delta and the elementary functions are the same in most variants).

    An entry is one file, named by a digest of all its code depends on: the sources of the kernels, the
    subroutine's key and signature, Numba's and llvmlite's versions, the CPU (its name and features), and
    Numba's optimisation level and bounds checking (NUMBA_OPT, NUMBA_BOUNDSCHECK); the digest also names the
    function (Subroutine). It holds that name and the module's bitcode, with everything it links linked in.
    Files are written whole under another name, then renamed: a reader never sees a part of one.
    """

    def __init__(self):
        self._folder = {}

    def path(self, codegen, func, key, sig):
        """The file of func's entry for this key and signature (None: no cache folder can be written), and
        the digest that names it."""
        folder = self._folder.get(func.__code__.co_filename)
        if folder is None:
            try:
                folder = os.path.join(FunctionCache(func)._cache_path, "subroutines")
            except RuntimeError:  # no writable cache folder: compile every process
                folder = ""
            self._folder[func.__code__.co_filename] = folder
        what = repr((SOURCE, numba.__version__, llvmlite.__version__, codegen._get_host_cpu_name(),
                     codegen._tm_features, numba.config.OPT, numba.config.BOUNDSCHECK, key, str(sig)))
        digest = hashlib.sha256(what.encode()).hexdigest()
        return (os.path.join(folder, digest + ".bc") if folder else None), digest

    def load(self, codegen, path, name):
        if path is None:
            return None
        try:
            with open(path, "rb") as f:
                header, bitcode = f.read().split(b"\n", 1)
            module = llvm.parse_bitcode(bitcode)
            if header.decode() != name or module.get_function(name).is_declaration:
                return None
        except Exception:  # no entry (or an unreadable one): compile
            return None
        library = _LinkedOnly(codegen, name)
        library._final_module = module  # its functions are linked lazily (linkonce_odr), as callers need them
        return library

    def save(self, path, name, library):
        if path is None:
            return
        module = library._get_module_for_linking()  # with what it links, whose code to run when loaded...
        if library._reload_init:  # ... load would not know of
            return
        bitcode = module.as_bitcode()
        try:
            os.makedirs(os.path.dirname(path), exist_ok=True)
            partial = f"{path}.{os.getpid()}.tmp"
            try:
                with open(partial, "wb") as f:
                    f.write(name.encode() + b"\n" + bitcode)
                os.replace(partial, path)
            finally:  # a process stopped while writing (the helper, see prepare) leaves nothing behind
                if os.path.exists(partial):
                    os.remove(partial)
        except OSError:  # a folder that cannot be written: the next process compiles it again
            pass


SUBROUTINES = SubroutineCache()


@intrinsic
def blas_gemm(typingctx, ta, tb, m, n, k, a, b, beta, c):
    """C[:m, :n] = op(A) op(B) + beta C[:m, :n] by BLAS's gemm: op(A) (m, k), op(B) (k, n), op: transposed if ta,
    tb. A and B are row-major views ('C') or column-major ones ('F', a row-major matrix's transpose), C is
    row-major, of one float dtype; m, n, k fit them. The stride of each one's other axis is BLAS's leading
    dimension, so it must be at least that axis's extent used, as in the views the kernels make (NumPy may
    give an axis of length 1 any stride: such an array from Python could be refused by BLAS).

    BLAS takes column-major matrices and reads a row-major one as its transpose: it is asked for C^T =
    op(B)^T op(A)^T, with a column-major operand's transposition flipped. Calls the gemm of SciPy's BLAS
    through the helper that Numba's own np.dot uses (which finds it by name at run time, so kernels that call
    it can be cached on disk), with no array allocated and C written in place. Called from kernels that
    release the GIL: the helper takes it once, to look the function up.
    """
    dtype = c.dtype
    if a.dtype != dtype or b.dtype != dtype or dtype not in (nbtypes.float32, nbtypes.float64):
        raise TypingError(f"blas_gemm takes float32 or float64 arrays of one dtype; got {a}, {b}, {c}")
    if a.ndim != 2 or b.ndim != 2 or c.ndim != 2 or a.layout not in "CF" or b.layout not in "CF" or c.layout != "C":
        raise TypingError(f"blas_gemm takes row- or column-major matrices and a row-major C; got {a}, {b}, {c}")
    signature = nbtypes.void(ta, tb, m, n, k, a, b, beta, c)

    def codegen(context, builder, sig, args):
        char, size, pointer = ir.IntType(8), context.get_value_type(nbtypes.intp), cgutils.voidptr_t
        helper = cgutils.get_or_insert_function(builder.module, ir.FunctionType(ir.IntType(32), [
            char, char, char, size, size, size, pointer, pointer, size, pointer, size, pointer, pointer, size]),
            "numba_xxgemm")
        ta, tb, m, n, k, a, b, beta, c = args
        types = sig.args

        def matrix(i, value):
            """The data pointer and leading dimension (elements between columns, as BLAS reads it)."""
            array = context.make_array(types[i])(context, builder, value)
            stride = cgutils.unpack_tuple(builder, array.strides, 2)[1 if types[i].layout == "F" else 0]
            leading = builder.sdiv(stride, ir.Constant(size, context.get_abi_sizeof(context.get_data_type(dtype))))
            return builder.bitcast(array.data, pointer), leading

        def integer(i, value):
            return context.cast(builder, value, types[i], nbtypes.intp)

        def trans(i, value, matrix_type):
            flag = context.cast(builder, value, types[i], nbtypes.boolean)
            if matrix_type.layout == "F":
                flag = builder.not_(flag)
            return builder.select(flag, ir.Constant(char, ord("t")), ir.Constant(char, ord("n")))

        (pa, lda), (pb, ldb), (pc, ldc) = matrix(5, a), matrix(6, b), matrix(8, c)
        alpha = cgutils.alloca_once_value(builder, context.get_constant(dtype, 1.0))
        scale = cgutils.alloca_once_value(builder, context.cast(builder, beta, types[7], dtype))
        kind = ir.Constant(char, ord("d" if dtype == nbtypes.float64 else "s"))
        builder.call(helper, [kind, trans(1, tb, types[6]), trans(0, ta, types[5]), integer(3, n), integer(2, m),
                              integer(4, k), builder.bitcast(alpha, pointer), pb, ldb, pa, lda,
                              builder.bitcast(scale, pointer), pc, ldc])
        return context.get_dummy_value()

    return signature, codegen


def stage(returns=nbtypes.none, **options):
    """Mark a function of a kernel module as one that ``specialise`` compiles per variant: as a subroutine
    that returns ``returns`` (with ``fastmath``: its fast-math flags, default FASTMATH), or, with njit
    ``options`` (inline="always"), as a Numba function."""
    def mark(func):
        func.jit_options = dict(options, returns=returns)
        return func
    return mark


def specialise(module_globals, names, constants, tag, entries=(), options=None):
    """Compile the functions ``names`` of a kernel module again, with ``constants`` as their globals.

    Numba takes a global as a compile-time constant and prunes a branch such as ``if OUT == "softmax"``
    before typing, so each variant compiles only its own activation, output and loop. The clones call one
    another (a shared globals dict; constants may also hold kernels compiled before), and each has a name of
    its own (``train__tanh_softmax_float64_d2_k2_block``), so each variant has cache files of its own.
    entries: the names compiled as kernels that Python calls (cached on disk); the others become
    subroutines, or Numba functions when marked inline="always"; a subroutine is keyed by the constants that
    it reads (_reads), so that variants that differ in others share it. options: extra njit options by name
    (parallel=True). Returns {name: compiled function} and {name: the clone, a plain Python function}.
    """
    scope = dict(module_globals, **constants)
    compiled, clones = {}, {}
    for name in names:
        func = module_globals[name]
        clone = types.FunctionType(func.__code__, scope, name, func.__defaults__, func.__closure__)
        clone.__qualname__ = f"{func.__qualname__}__{tag}"
        clone.__doc__ = func.__doc__
        jit = dict(func.jit_options)
        returns, fastmath = jit.pop("returns"), jit.pop("fastmath", FASTMATH)
        if name in entries:
            compiled[name] = kernel(clone, tag, **dict(jit, **(options or {}).get(name, {})))
        elif jit:
            compiled[name] = numba.njit(**dict(JIT, **jit))(clone)
        else:
            key = (name, _reads(func, module_globals, constants))
            compiled[name] = subroutine(clone, returns, fastmath, key=key)
        clones[name] = clone
    scope.update(compiled)
    return compiled, clones


def _reads(func, module_globals, constants, seen=None):
    """The constants of a variant that ``func`` reads, directly or through the stages it calls, as sorted
    (name, value) pairs (a subroutine stands for its key): what a stage's code depends on besides the
    sources and its argument types."""
    seen = set() if seen is None else seen
    names = set()
    codes = [func.__code__]
    while codes:  # the function's code and the code of the functions defined in it
        code = codes.pop()
        names.update(code.co_names)
        codes.extend(c for c in code.co_consts if isinstance(c, types.CodeType))
    found = {(name, _describe(constants[name])) for name in names if name in constants}
    for name in sorted(names - seen):
        called = module_globals.get(name)
        if hasattr(called, "jit_options"):  # another stage
            seen.add(name)
            found.update(_reads(called, module_globals, constants, seen))
    return tuple(sorted(found))


def _describe(value):
    """A value as a part of a subroutine's key: another subroutine by its key, anything else by its repr."""
    return repr(getattr(value, "key", value))
