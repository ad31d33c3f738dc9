"""fastnn.engine and the kernel cache: which variant a call compiles, the notice before compiling, read-only
and memory-mapped inputs on the same machine code, cache keys that follow every kernel source, and
``fastnn.compile``."""

import logging
import os
import signal
import subprocess
import sys

import numba
import numpy as np
import pytest
from helpers import child_env
from numba.core.caching import NullCache

import fastnn
from fastnn import engine, kernels
from fastnn.kernels import config


def tutorial_kernel():
    return kernels.build("tanh", "softmax", "float64", 2, 2, "block").run


def test_read_only_and_memory_mapped_inputs_use_the_compiled_kernel(moons, tmp_path):
    X, y = moons
    run = tutorial_kernel()
    before = set(run.overloads)  # other tests in this process may have called run with other arguments
    fastnn.train(np.array(X), np.array(y), 3, passes=5)  # writable copies
    compiled = set(run.overloads)
    fastnn.train(X, y, 3, passes=5)  # the read-only fixture
    path = tmp_path / "X.npy"
    np.save(path, X)
    mapped = np.load(path, mmap_mode="r")
    model = fastnn.train(mapped, y, 3, passes=5)
    model.predict(mapped)
    assert set(run.overloads) == compiled and len(compiled - before) <= 1


def test_an_evaluation_uses_the_loop_that_is_compiled(moons):
    X, y = moons
    plan = engine.plan("numba", "tanh", "softmax", "float64", 2, 3, 2, 1000)
    assert plan.run is tutorial_kernel() and plan.alternate is not None and plan.slots == 1
    training = engine.plan("numba", "tanh", "softmax", "float64", 2, 3, 2, 1000, 1000)
    assert training.alternate is None and training.run is not plan.run  # tiles: batches of more than a block


@pytest.mark.parametrize("d, h", [(64, 17), (5, 205), (16, 32), (5, 204), (4, 500)])
def test_heavy_samples_get_the_blas_variant(d, h):
    """Wide inputs with at least 1024 input weights run the variant whose input layer calls BLAS (with BLAS on
    one thread), lighter ones the loops: both compute the same, so only this test tells a swap."""
    heavy = d > kernels.UNROLL and d * h >= 1024
    assert kernels.heavy(d, h) == heavy
    for batch in (None, 1000):
        plan = engine.plan("numba", "tanh", "softmax", "float64", d, h, 10, 1000, batch, n_threads=1)
        loop = "block" if batch is None else "tiles"
        assert plan.run is kernels.build("tanh", "softmax", "float64", d, 10, loop, False, blas=heavy).run
        assert plan.blas == heavy
        if batch is None:
            assert plan.alternate is kernels.build("tanh", "softmax", "float64", d, 10, "tiles", False,
                                                   blas=heavy).run


def test_evaluations_run_in_parallel_only_on_many_rows():
    small = engine.plan("numba", "tanh", "softmax", "float64", 2, 3, 2, engine.EVALUATE_PARALLEL - 1,
                        n_threads=2)
    assert small.slots == 1
    if kernels.TILE * 2 <= engine.EVALUATE_PARALLEL - 1:
        training = engine.plan("numba", "tanh", "softmax", "float64", 2, 3, 2, engine.EVALUATE_PARALLEL - 1,
                               engine.EVALUATE_PARALLEL - 1, n_threads=2)
        assert training.slots == min(2, engine.numba.get_num_threads())


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("targets", [False, True])
def test_the_buffers_the_kernels_stream_over_start_on_a_cache_line(dtype, targets):
    """Each row of the work slots and of the labels starts on a 64-byte line, whatever NumPy's allocator gives
    (16 bytes), for every shape: a misaligned buffer made the tutorial's pass 10-18% slower."""
    from fastnn import reference
    for trial in range(20):  # allocations in between move where the next buffer lands
        d, h, k, n = 1 + trial % 5, 1 + 3 * trial, 1 + trial % 4, 7 + 13 * trial
        X = np.zeros((n, d), dtype)
        y = np.zeros((n, k), dtype) if targets else np.zeros(n, np.int64)
        theta = np.zeros(reference.size(d, h, k), dtype)
        work, labels = engine.make_buffers(X, y, theta, reference.split(theta, d, h, k), n, 1 + trial % 3)[3:5]
        assert work.dtype == dtype and work.shape[1:] == (kernels.work_rows(d, h, k), kernels.BLOCK)
        assert labels.dtype == (dtype if targets else np.int64) and not labels.any()
        for buffer in (work, labels):
            assert buffer.flags.c_contiguous and buffer.flags.writeable
            assert buffer.ctypes.data % engine.ALIGN == 0 and buffer.strides[-2] % engine.ALIGN == 0
        np.empty(8 * trial + 1, np.uint8)


def test_the_cache_key_follows_every_kernel_source(moons, monkeypatch):
    fastnn.train(*moons, 3, passes=5)
    run = tutorial_kernel()
    types = next(iter(run.overloads))
    codegen = run.targetctx.codegen()
    assert run._cache.has(types, codegen)
    # An edit to any file of kernels/ changes SOURCE: the entry no longer matches and would compile afresh.
    monkeypatch.setattr(config, "SOURCE", config.SOURCE + "edited")
    assert not run._cache.has(types, codegen)


def test_a_stage_is_keyed_by_the_constants_it_reads():
    """A subroutine's key (what its code depends on besides the sources and its argument types) holds the
    constants that it reads and those read by the stages it calls, and no others, so that variants that
    differ only in others share it."""
    from fastnn.kernels import network
    constants = dict(ACT="tanh", OUT="softmax", D=2, WIDE=False, K=2, SOLVER="sgd", WEIGHTED=False,
                     BLAS=False)
    reads = dict(config._reads(network.update, vars(network), constants))
    assert reads == {"SOLVER": "'sgd'"}
    reads = dict(config._reads(network.backward, vars(network), constants))  # and hidden_delta, _combine, ...
    assert {"D", "K", "BLAS", "OUT"} <= reads.keys() and "SOLVER" not in reads  # OUT: two-class softmax's rows
    assert "OUT" not in dict(config._reads(network.hidden_delta, vars(network), constants))

    def stages(d, k, solver="sgd"):
        inputs = d if d <= kernels.UNROLL else 0  # as build() passes it
        classes = k if k <= kernels.UNROLL else 0
        return network._stages("tanh", "softmax", "float64", inputs, classes, solver, False, False)[1][0]

    two, four, adam = stages(2, 2), stages(4, 3), stages(2, 2, "adam")
    assert two["update"].key == four["update"].key != adam["update"].key
    assert two["output_delta"].key == stages(4, 2)["output_delta"].key != four["output_delta"].key
    assert two["hidden_forward"].key != four["hidden_forward"].key
    assert two["hidden_forward"].key == adam["hidden_forward"].key
    # Stages that only tell wide inputs from narrow ones serve every narrow width.
    assert "D" not in dict(config._reads(network.hidden_delta, vars(network), constants))
    assert stages(3, 3)["hidden_delta"].key == four["hidden_delta"].key != stages(5, 3)["hidden_delta"].key
    # The elementary functions are closures of one code per dtype: their keys hold the closures' constants.
    from fastnn.kernels.elementwise import FUNCTIONS
    assert FUNCTIONS["float64"]["tanh"].key != FUNCTIONS["float32"]["tanh"].key
    assert "0x" not in repr(FUNCTIONS["float64"]["tanh"].key)  # no address: the same key in every process


def test_a_subroutine_entry_on_disk_follows_the_sources_and_numba_settings(monkeypatch):
    """An entry of the subroutine cache is named by a digest of all its code depends on: what was compiled
    with other kernel sources, or without the bounds checks that NUMBA_BOUNDSCHECK=1 asks for, is not loaded."""
    from numba.core.registry import cpu_target
    from fastnn.kernels import network
    codegen = cpu_target.target_context.codegen()
    sig = numba.types.none(numba.types.int64)

    def path(key=("update", ())):
        return config.SUBROUTINES.path(codegen, network.update, key, sig)[0]

    first = path()
    assert first is not None and first == path() != path(("update", (("SOLVER", "'adam'"),)))
    monkeypatch.setattr(numba.config, "BOUNDSCHECK", 1)
    checked = path()
    monkeypatch.setattr(config, "SOURCE", config.SOURCE + "edited")
    assert len({first, checked, path()}) == 3


def test_the_compile_helper_starts_where_a_core_is_free_or_where_it_is_asked_for(monkeypatch):
    """FASTNN_COMPILE_HELPER: "0" never, "1" wherever a second core is there, by default not on a busy machine
    (a load average of at least the number of cores)."""
    run = kernels.build("tanh", "softmax", "float64", 2, 2, "block").run

    def started(setting, load, cores=2):
        monkeypatch.setenv("FASTNN_COMPILE_HELPER", setting)
        monkeypatch.setattr(os, "getloadavg", lambda: (load, load, load))
        monkeypatch.setattr(os, "cpu_count", lambda: 2)
        monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(cores)), raising=False)
        helper = engine._start_helper(run)
        if helper is None:
            return False
        assert config.TYPED.pop(run.py_func) is not None  # run tells the helper once it is typed
        engine._stop_helper(helper)
        return True

    assert started("", 0.5) and not started("", 2.0)
    assert started("1", 2.0) and not started("0", 0.5)
    assert not started("1", 0.0, cores=1)
    with pytest.warns(RuntimeWarning, match="FASTNN_COMPILE_HELPER='yes' is neither 0"):
        assert started("yes", 0.5) and not started("yes", 2.0)  # the default, said to be


def test_a_parallel_kernel_links_the_wrappers_of_its_loops_only(monkeypatch):
    """The compile-time saving of config._compile_kernel relies on how Numba names the libraries of a
    parallel loop's wrappers: if a Numba release renames them, this fails instead of the saving vanishing."""
    linked = []
    link = config._link
    monkeypatch.setattr(config, "_link", lambda library: (linked.append(library.name), link(library)))

    def fill(out):
        for i in numba.prange(out.size):
            out[i] = 2 * i

    run = config.kernel(fill, "test", parallel=True)
    run._cache = NullCache()  # compiled here, never loaded from an earlier run's cache
    out = np.zeros(1000)
    run(out)
    assert np.array_equal(out, 2 * np.arange(1000))
    for wrapper in config.WRAPPER_LIBRARIES:  # both wrappers were made, and linked only
        assert any(name.startswith(wrapper) for name in linked), (wrapper, linked)
    assert "_library_class" not in vars(run.targetctx.codegen())  # the codegen's own libraries again


def test_every_function_of_a_kernel_prefers_512_bit_vectors():
    """Its own functions, its parallel loop's and a subroutine's it links (tanh): all carry the attribute that
    makes LLVM vectorise them 512 bits wide where the CPU has AVX-512, whatever its tuning prefers."""
    tanh = kernels.elementwise.FUNCTIONS["float64"]["tanh"]

    def fill(out):
        for i in numba.prange(out.size):
            out[i] = tanh(i / out.size)

    run = config.kernel(fill, "test", parallel=True)
    run._cache = NullCache()
    out = np.zeros(1000)
    run(out)
    np.testing.assert_allclose(out, np.tanh(np.arange(1000) / 1000), rtol=1e-15)
    module = run.overloads[run.signatures[0]].library._final_module
    defined = [f for f in module.functions if not f.is_declaration]
    assert len(defined) >= 3  # the kernel, its loop's body and wrapper at least
    for function in defined:
        assert config.WIDE_VECTORS.encode() in b" ".join(bytes(a) for a in function.attributes), function.name


def _has_avx512():
    try:
        with open("/proc/cpuinfo") as f:
            return " avx512f" in f.read()
    except OSError:
        return False


@pytest.mark.skipif(not _has_avx512(), reason="512-bit vectors need AVX-512")
def test_kernels_use_512_bit_vectors_where_the_cpu_tuning_prefers_256(tmp_path):
    """LLVM's tuning for Intel's AVX-512 server CPUs prefers 256-bit vectors; here it is imposed on this CPU
    (NUMBA_CPU_FEATURES with +prefer-256-bit), and a kernel compiled afresh still runs its loop on zmm
    registers, where Numba's own functions in the same process get ymm ones."""
    script = """
import re, numba, numpy as np
from fastnn import kernels
x = np.linspace(-5, 5, 4096); out = np.empty_like(x)
kernels.tanh_array(x, out)
@numba.njit(fastmath=True, error_model="numpy")
def scale(x, out):
    for i in range(x.size):
        out[i] = 2.5 * x[i] + 1.0
scale(x, out)
for f in (kernels.tanh_array, scale):
    asm = f.inspect_asm(f.signatures[0])
    print(len(re.findall("zmm", asm)), len(re.findall("ymm", asm)))
"""
    import llvmlite.binding as llvm

    features = llvm.get_host_cpu_features().flatten() + ",+prefer-256-bit"
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300,
                         env=child_env(NUMBA_CPU_FEATURES=features, NUMBA_CACHE_DIR=str(tmp_path),
                                       FASTNN_COMPILE_HELPER="0"))
    assert out.returncode == 0, out.stderr
    (kernel_zmm, _), (numba_zmm, numba_ymm) = [tuple(map(int, line.split())) for line in out.stdout.split("\n")[:2]]
    assert kernel_zmm > 0
    assert numba_zmm == 0 and numba_ymm > 0  # the tuning held for the rest of the process


def test_the_notice_goes_to_the_fastnn_logger_when_logging_is_configured(caplog, capsys):
    with caplog.at_level(logging.INFO, logger="fastnn"):
        engine.notice("fastnn: compiling kernels for a test")
    assert "compiling kernels for a test" in caplog.text
    assert capsys.readouterr().err == ""


def test_the_notice_can_be_silenced(capsys, monkeypatch):
    monkeypatch.setattr(engine.log, "level", logging.WARNING)
    engine.notice("fastnn: compiling kernels for a test")
    assert capsys.readouterr().err == ""


def test_compile_checks_its_arguments_before_starting_processes():
    with pytest.raises(ValueError, match="activations"):
        fastnn.compile(activations=("softplus",))
    with pytest.raises(ValueError, match="classes"):
        fastnn.compile(classes=(0,))
    with pytest.raises(ValueError, match="dtype"):
        fastnn.compile(dtypes=("float16",))


def test_compile_fills_the_cache_for_a_regressor(tmp_path):
    """identity outputs with one target compile the variant of k = 3 (only k = 2 has loops of its own): after
    fastnn.compile(outputs=("identity",), classes=(1,)), fitting a one-target regression compiles nothing."""
    fill = ("import fastnn; fastnn.compile(outputs=('identity',), dtypes=('float64',), inputs=(3,), classes=(1,), "
            "processes=1)")
    use = ("import fastnn, numpy as np; X = np.random.default_rng(0).standard_normal((50, 3)); "
           "fastnn.train(X, X[:, 0], 2, passes=5, output='identity', reduction='mean', lr=0.1).predict(X)")
    # (A first use says that it compiles: test_a_first_call_says_it_compiles_and_fastnn_compile_spares_it.)
    for code in (fill, use):
        run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600,
                             env=child_env(NUMBA_CACHE_DIR=str(tmp_path)))
        assert run.returncode == 0, run.stderr
        assert "compiling" not in run.stderr, run.stderr


TRAIN = "import fastnn; X, y = fastnn.make_moons(); print(fastnn.train(X, y, 3, passes=100).score(X, y))"


@pytest.mark.slow
def test_a_first_call_says_it_compiles_and_fastnn_compile_spares_it(tmp_path):
    cold = subprocess.run([sys.executable, "-c", TRAIN], env=child_env(NUMBA_CACHE_DIR=str(tmp_path / "a")),
                          capture_output=True, text=True, timeout=600)
    assert cold.returncode == 0, cold.stderr
    assert cold.stderr.count("fastnn: compiling kernels for tanh hidden units, softmax outputs, float64") == 1
    env = child_env(NUMBA_CACHE_DIR=str(tmp_path / "b"))
    done = subprocess.run([sys.executable, "-m", "fastnn", "compile", "--dtype", "float64", "--processes", "2"],
                          env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr
    assert "4 kernels ready" in done.stdout and done.stdout.count("compiled") == 4
    warm = subprocess.run([sys.executable, "-c", TRAIN], env=env, capture_output=True, text=True, timeout=600)
    assert warm.returncode == 0 and "compiling" not in warm.stderr
    assert warm.stdout == cold.stdout


def test_ctrl_c_while_a_kernel_compiles_is_held_then_raised():
    """LLVM calls back into Python while Numba compiles or loads, and an exception there is dropped: a Ctrl-C
    during a compile is held to its end, then raised, never lost (nor raised halfway through)."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)  # Python's own, as in a plain process
    try:
        reached = False
        with pytest.raises(KeyboardInterrupt):
            with engine._interrupt_deferred():
                signal.raise_signal(signal.SIGINT)
                reached = True
        assert reached
        assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # restored
        with pytest.raises(KeyboardInterrupt):  # and outside the block, Ctrl-C is at once KeyboardInterrupt
            signal.raise_signal(signal.SIGINT)
    finally:
        signal.signal(signal.SIGINT, previous)


FORK = """
import os, numba, fastnn
from fastnn import kernels
X, y = fastnn.make_moons(2 * kernels.TILE + 1)
fastnn.train(X, y, 3, passes=1, reduction="mean", lr=0.1)  # the parallel kernel (two threads)
for _ in range(2):
    pid = os.fork()
    if pid == 0:
        os._exit(0)
    os.waitpid(pid, 0)
print(numba.threading_layer())
"""


@pytest.mark.skipif(not hasattr(__import__("os"), "fork"), reason="POSIX fork")
def test_a_fork_after_parallel_kernels_on_gnu_openmp_warns_once():
    """GNU OpenMP does not survive fork(): the parent is told, once, how to start processes instead."""
    run = subprocess.run([sys.executable, "-W", "always", "-c", FORK], env=child_env(2), capture_output=True,
                         text=True, timeout=600)
    assert run.returncode == 0, run.stderr
    warned = run.stderr.count("does not survive fork()")
    from numba.np.ufunc import omppool
    gnu = run.stdout.strip() == "omp" and getattr(omppool, "openmp_vendor", "") == "GNU"
    assert warned == (1 if gnu else 0), run.stderr
