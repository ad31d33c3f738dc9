"""The ``fastnn`` command (also ``python -m fastnn``): train one network, sweep many, or run the tutorial."""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import tempfile
import time
from typing import Sequence

HIDDEN = (1, 2, 3, 4, 5, 20, 50)  # the tutorial's hidden sizes

# Library arguments that a command sets from a flag of another name; every other flag names its own
# argument (--batch-size is batch_size). Errors name the flag the user typed.
ALIASES = {"train": {"random_state": "--seed", "n_samples": "--samples"},
           "sweep": {"random_state": "--data-seed", "n_samples": "--samples", "test": "--test-size"}}


class _Parser(argparse.ArgumentParser):
    """Usage errors on one line, as every other error of the command."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {' '.join(message.split())} (see {self.prog} --help)\n")


def _data_args(p):
    p.add_argument("--samples", type=int, metavar="N", default=200, help="make_moons samples (default 200)")
    p.add_argument("--noise", type=float, metavar="F", default=0.20, help="make_moons noise (default 0.20)")


def _model_args(p):
    p.add_argument("--lr", type=float, metavar="F", default=0.01, help="learning rate (default 0.01)")
    p.add_argument("--activation", default="tanh", help="tanh, sigmoid or relu (default tanh)")
    # make_moons is a classification: identity outputs (regression) are for fastnn.train and the estimators
    p.add_argument("--output", default="softmax", choices=("softmax", "sigmoid"),
                   help="softmax or sigmoid (default softmax)")
    p.add_argument("--reduction", default="sum", help="sum (the tutorial's) or mean (default sum)")
    p.add_argument("--batch-size", type=int, metavar="N", default=None, help="mini-batch size (default: full batch)")
    p.add_argument("--dtype", default="float64", help="float64 or float32 (default float64)")
    p.add_argument("--backend", default="numba", help="numba or numpy (default numba)")
    p.add_argument("--solver", default="sgd", help="sgd (the tutorial's) or adam (default sgd)")
    p.add_argument("--momentum", type=float, metavar="F", default=0.0,
                   help="sgd's momentum, in [0, 1) (default 0: the tutorial's plain steps)")
    p.add_argument("--nesterov", action="store_true", help="Nesterov's momentum")


def _model_settings(args):
    return dict(lr=args.lr, activation=args.activation, output=args.output, reduction=args.reduction,
                batch_size=args.batch_size, dtype=args.dtype, backend=args.backend, solver=args.solver,
                momentum=args.momentum, nesterov=args.nesterov)


def _train_parser(sub):
    p = sub.add_parser("train", help="train one network on make_moons (default: the tutorial's run)")
    p.add_argument("--hidden", type=int, default=3, metavar="H", help="hidden units (default 3)")
    p.add_argument("--passes", type=int, metavar="N", default=20000, help="passes of gradient descent (default 20000)")
    p.add_argument("--reg", type=float, default=0.01, metavar="F", help="L2 strength (default 0.01)")
    p.add_argument("--seed", type=int, metavar="S", default=0, help="seed of data and initialisation (default 0)")
    _data_args(p)
    _model_args(p)
    p.add_argument("--loss-every", type=int, metavar="N", default=1000, help="print the loss every N passes")
    p.add_argument("--save", metavar="PATH", help="write the trained model to PATH (.npz)")
    p.add_argument("--plot", metavar="PATH", help="draw the decision boundary to PATH (.png)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(run=_train)


def _sweep_parser(sub):
    p = sub.add_parser("sweep", help="train every combination of hidden sizes, L2 strengths and seeds")
    p.add_argument("--hidden", type=int, nargs="+", default=list(HIDDEN), metavar="H",
                   help="hidden sizes (default: the tutorial's 1 2 3 4 5 20 50)")
    p.add_argument("--reg", type=float, nargs="+", default=[0.01], metavar="R", help="L2 strengths (default 0.01)")
    p.add_argument("--seeds", type=int, nargs="+", default=[0], metavar="S",
                   help="initialisation seeds (default 0); the first also seeds the test split")
    p.add_argument("--passes", type=int, metavar="N", default=20000, help="passes of every run (default 20000)")
    p.add_argument("--test-size", type=float, metavar="F", default=0.3,
                   help="fraction held out, stratified, to test on (default 0.3; 0 for none)")
    _data_args(p)
    p.add_argument("--data-seed", type=int, metavar="S", default=0,
                   help="make_moons seed (default 0, the tutorial's data)")
    _model_args(p)
    p.add_argument("--out", default="fastnn-sweep", metavar="DIR",
                   help="folder for sweep.csv, sweep.json and the figures (default ./fastnn-sweep)")
    p.add_argument("--scheduler", metavar="tcp://HOST:PORT", help="run on this Dask scheduler instead of local threads")
    p.add_argument("--n-jobs", type=int, metavar="N", default=None, help="local threads (default: all cores)")
    p.add_argument("--json", action="store_true", help="print the rows as JSON instead of a table")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(run=_sweep)


def _demo_parser(sub):
    p = sub.add_parser("demo", help="the tutorial end to end: data, H = 3, the tutorial's hidden-size figure, "
                                    "the overfitting study")
    p.add_argument("--out", default="fastnn-demo", metavar="DIR", help="folder for the figures (default ./fastnn-demo)")
    p.add_argument("--passes", type=int, metavar="N", default=20000, help="passes of every training (default 20000)")
    p.add_argument("--n-jobs", type=int, metavar="N", default=None, help="threads of the sweep (default: all cores)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(run=_demo)


def _compile_parser(sub):
    p = sub.add_parser("compile", help="compile kernels ahead of use into the on-disk cache (for Docker images and "
                                       "cluster workers)")
    p.add_argument("--dtype", nargs="+", default=["float64", "float32"], metavar="D",
                   help="float64 and/or float32 (default both)")
    p.add_argument("--inputs", type=int, nargs="+", default=[2], metavar="D",
                   help="numbers of input features (default 2; every number above 4 shares one compilation)")
    p.add_argument("--classes", type=int, nargs="+", default=[2], metavar="K",
                   help="numbers of classes, or of targets for identity outputs (default 2; every number "
                        "above 4 shares one compilation)")
    p.add_argument("--activation", nargs="+", default=["tanh"], metavar="A", help="hidden activations (default tanh)")
    p.add_argument("--output", nargs="+", default=["softmax"], metavar="O",
                   help="outputs: softmax, sigmoid, identity (default softmax)")
    p.add_argument("--processes", type=int, metavar="N", default=None, help="parallel processes (default: all cores)")
    p.set_defaults(run=_compile)


def _compile(args):
    import fastnn
    from fastnn import _validate as check
    from fastnn import reference

    # Checked before the first line of output: fastnn.compile checks them too, under its argument names.
    for value in args.activation:
        check.choice(value, "--activation", reference.ACTIVATIONS)
    for value in args.output:
        check.choice(value, "--output", reference.OUTPUTS)
    for value in args.inputs:
        check.integer(value, "--inputs")
    for value in args.classes:
        check.integer(value, "--classes")
    if args.processes is not None:
        check.integer(args.processes, "--processes")
    print(f"Compiling into the kernel cache with {args.processes or 'one process per core'}...", flush=True)
    start = time.perf_counter()
    rows = fastnn.compile(activations=args.activation, outputs=args.output, dtypes=args.dtype, inputs=args.inputs,
                          classes=args.classes, processes=args.processes)
    for r in rows:
        print(f"{r['status']:>8} {r['seconds']:6.1f} s  {r['activation']}, {r['output']}, {r['dtype']}, "
              f"{r['inputs']}{'+' if r['inputs'] > 4 else ''} inputs, "
              f"{r['classes']}{'+' if r['classes'] > 4 else ''} class{'es' if r['classes'] > 1 else ''} or targets, "
              f"{r['loop']}{', parallel' if r['parallel'] else ''}{', BLAS' if r['blas'] else ''}")
    print(f"{len(rows)} kernels ready in {time.perf_counter() - start:.1f} s; cache: {fastnn.engine.cache_dir()}")


def _show_progress(args):
    return not args.quiet and sys.stderr.isatty()


def _warm_up(X, y, hidden, settings):
    """Load (or compile) the kernels with one pass; returns the seconds it took."""
    import fastnn

    start = time.perf_counter()
    try:
        fastnn.train(X, y, hidden, passes=1, **settings)
    except fastnn.DivergenceError:  # one pass says nothing about the run; the run itself will tell
        pass
    return time.perf_counter() - start


def _save(fig, path, log=print):
    import matplotlib.pyplot as plt

    fig.savefig(path, dpi=100)
    plt.close(fig)
    log(f"Wrote: {path}")


def _outdir(path):
    try:
        os.makedirs(path, exist_ok=True)
    except OSError as e:  # a file of that name, a folder that cannot be made
        raise OSError(f"--out {path!r}: cannot make the folder: {e.strerror}") from None
    _probe(path, f"--out {path!r}")
    return path


def _probe(folder, flag):
    """Create and delete a file in folder: fails now, not after the runs, where nothing can be written."""
    try:
        fd, probe = tempfile.mkstemp(prefix=".fastnn-probe-", dir=folder)
    except OSError as e:
        raise OSError(f"{flag}: cannot create a file in {folder!r}: {e.strerror}") from None
    os.close(fd)
    os.unlink(probe)


def _writable(path, flag):
    """Check, before any training, that a file can be written at path (its folder exists and takes a new
    file, and path is not a folder or a read-only file)."""
    if os.path.isdir(path):
        raise ValueError(f"{flag} {path!r} is a folder; give a file name")
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise ValueError(f"{flag} {path!r}: the folder {folder!r} does not exist")
    _probe(folder, f"{flag} {path!r}")
    if os.path.exists(path) and not os.access(path, os.W_OK):
        raise ValueError(f"{flag} {path!r} exists and is read-only")


def _image_format(path, flag):
    """Check that matplotlib can write path's format (from its extension; none means PNG)."""
    from matplotlib.backend_bases import FigureCanvasBase

    ext = os.path.splitext(path)[1][1:].lower()
    formats = FigureCanvasBase.get_supported_filetypes()
    if ext and ext not in formats:
        raise ValueError(f"{flag} {path!r}: matplotlib cannot write .{ext} files; use one of "
                         f"{', '.join('.' + f for f in sorted(formats))}")


def _train(args):
    import fastnn

    if args.plot:
        from fastnn import plot  # fail now, not after training, when matplotlib is missing
        plot._pyplot()
        _image_format(args.plot, "--plot")
        _writable(args.plot, "--plot")
    if args.save:
        _writable(args.save, "--save")
    X, y = fastnn.make_moons(args.samples, noise=args.noise, random_state=args.seed, dtype=args.dtype)
    settings = _model_settings(args)
    warmup = _warm_up(X, y, args.hidden, settings)
    start = time.perf_counter()
    model = fastnn.train(X, y, args.hidden, passes=args.passes, reg=args.reg, seed=args.seed,
                         loss_every=args.loss_every, progress=_show_progress(args), **settings)
    seconds = time.perf_counter() - start
    for passes, loss in model.loss_history:
        print(f"Loss after {int(passes):6d} passes: {loss:.6f}")
    print(f"Training accuracy: {model.score(X, y):.4f}")
    print(f"Time: {seconds:.3f} s for {args.passes} passes (hidden={args.hidden}, n={args.samples}, "
          f"{args.dtype}, {args.backend}); loading or compiling the kernels took {warmup:.3f} s")
    if args.save:
        model.save(args.save)
        print(f"Saved: {args.save}")
    if args.plot:
        _save(plot.decision_boundary(model, X, y, title=f"Hidden Layer size {args.hidden}"), args.plot)


def _figures(result, X, y, out, log=print):
    from fastnn import plot

    _save(plot.sweep_grid(result, X, y), os.path.join(out, "sweep_grid.png"), log)
    _save(plot.accuracy_vs_hidden(result), os.path.join(out, "accuracy_vs_hidden.png"), log)
    _save(plot.loss_curves(result), os.path.join(out, "loss_curves.png"), log)


def _executor(address):
    try:
        from dask.distributed import Client
    except ImportError:
        raise ImportError("--scheduler needs dask.distributed: pip install fastnn[dask]") from None
    try:
        return Client(address, timeout="10s")  # a wrong address fails in seconds, not after Dask's 30
    except (OSError, ValueError) as e:
        raise OSError(f"cannot connect to the Dask scheduler at {address!r}: {e}") from None


def _sweep(args):
    import fastnn
    from fastnn import plot

    plot._pyplot()  # fail now, not after the runs, when matplotlib is missing
    if not 0 <= args.test_size < 1:
        raise ValueError(f"--test-size must be a fraction in [0, 1); got {args.test_size}")
    log = (lambda line: print(line, file=sys.stderr)) if args.json else print
    out = _outdir(args.out)
    X, y = fastnn.make_moons(args.samples, noise=args.noise, random_state=args.data_seed, dtype=args.dtype)
    sweep = dict(reg=args.reg, seeds=args.seeds, passes=args.passes, test=args.test_size or None,
                 progress=_show_progress(args), **_model_settings(args))
    client = _executor(args.scheduler) if args.scheduler else None
    start = time.perf_counter()
    try:
        if client is not None:
            result = fastnn.sweep(X, y, args.hidden, executor=client.get_executor(), **sweep)
        else:
            result = fastnn.sweep(X, y, args.hidden, n_jobs=args.n_jobs, **sweep)
    finally:
        if client is not None:
            client.close()
    seconds = time.perf_counter() - start
    if args.json:
        print(json.dumps(result.records(), indent=1))
    else:
        print(result.table())
    metric = "test_accuracy" if result.tested else "train_accuracy"
    best = result.best(metric)
    log(f"Best {metric.replace('_', ' ')}: {best[metric]:.4f} (hidden={best['hidden']}, reg={best['reg']:g}, "
        f"seed={best['seed']}); {len(result)} runs in {seconds:.2f} s")
    result.to_csv(os.path.join(out, "sweep.csv"))
    result.to_json(os.path.join(out, "sweep.json"))
    log(f"Wrote: {os.path.join(out, 'sweep.csv')}, {os.path.join(out, 'sweep.json')}")
    _figures(result, X, y, out, log)


def _demo(args):
    from fastnn import demo

    demo.run(_outdir(args.out), passes=args.passes, n_jobs=args.n_jobs, progress=_show_progress(args))


def _parser():
    from fastnn import __version__

    parser = _Parser(prog="fastnn", description=__doc__)
    parser.add_argument("--version", action="version", version=f"fastnn {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    _train_parser(sub)
    _sweep_parser(sub)
    _demo_parser(sub)
    _compile_parser(sub)
    return parser, sub


def _flag_names(parser, command):
    """{library argument: flag} for a command's parser: each flag's dest, and ALIASES."""
    flags = {a.dest: max(a.option_strings, key=len) for a in parser._actions if a.option_strings}
    return dict(flags, **ALIASES.get(command, {}))


def _message(e, flags):
    """One line for an error, naming the flag where the library named its argument."""
    text = " ".join(str(e).split())  # one line, whatever the library's message holds
    if not isinstance(e, (ValueError, TypeError, ArithmeticError, OSError, ImportError, RuntimeError)) or not text:
        text = f"{type(e).__name__}: {text}" if text else type(e).__name__
    first = re.match(r"[A-Za-z_]\w*", text)
    if first and first.group() in flags and text[first.end():first.end() + 1] in ("", " ", "=", ":", "["):
        text = flags[first.group()] + text[first.end():]
    return text


def _say(line):
    try:
        print(line, file=sys.stderr, flush=True)
    except (OSError, ValueError):  # stderr closed: nowhere left to say it
        pass


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``fastnn`` command; returns its exit code: 0, 2 (an error, one line on stderr) or 130
    (interrupted by Ctrl-C, after every run has stopped)."""
    command = "fastnn"
    try:
        parser, sub = _parser()
        args = parser.parse_args(argv)  # usage errors exit 2 here, on one line (_Parser)
        command = f"fastnn {args.command}"
        flags = _flag_names(sub.choices[args.command], args.command)
        args.run(args)
    except KeyboardInterrupt:
        _say(f"{command}: interrupted")
        return 130
    except Exception as e:  # every failure is one line and exit code 2, never a traceback
        if isinstance(e, BrokenPipeError):  # stdout's reader went away: no flush of it at exit either
            try:
                os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            except (OSError, ValueError):
                pass
        _say(f"{command}: error: {_message(e, locals().get('flags', {}))}")
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
