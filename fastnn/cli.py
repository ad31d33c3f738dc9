"""The ``fastnn`` command (also ``python -m fastnn``): train one network, sweep many, or run the tutorial."""

import argparse
import json
import os
import sys
import time

HIDDEN = (1, 2, 3, 4, 5, 20, 50)  # the tutorial's hidden sizes


def _data_args(p):
    p.add_argument("--samples", type=int, metavar="N", default=200, help="make_moons samples (default 200)")
    p.add_argument("--noise", type=float, metavar="F", default=0.20, help="make_moons noise (default 0.20)")


def _model_args(p):
    p.add_argument("--lr", type=float, metavar="F", default=0.01, help="learning rate (default 0.01)")
    p.add_argument("--activation", default="tanh", help="tanh, sigmoid or relu (default tanh)")
    p.add_argument("--output", default="softmax", help="softmax or sigmoid (default softmax)")
    p.add_argument("--reduction", default="sum", help="sum (the tutorial's) or mean (default sum)")
    p.add_argument("--batch-size", type=int, metavar="N", default=None, help="mini-batch size (default: full batch)")
    p.add_argument("--dtype", default="float64", help="float64 or float32 (default float64)")
    p.add_argument("--backend", default="numba", help="numba or numpy (default numba)")


def _model_settings(args):
    return dict(lr=args.lr, activation=args.activation, output=args.output, reduction=args.reduction,
                batch_size=args.batch_size, dtype=args.dtype, backend=args.backend)


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
    p = sub.add_parser("demo", help="the tutorial end to end: data, H = 3, the hidden-size sweep, figures")
    p.add_argument("--out", default="fastnn-demo", metavar="DIR", help="folder for the figures (default ./fastnn-demo)")
    p.add_argument("--passes", type=int, metavar="N", default=20000, help="passes of every training (default 20000)")
    p.add_argument("--n-jobs", type=int, metavar="N", default=None, help="threads of the sweep (default: all cores)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(run=_demo)


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
    os.makedirs(path, exist_ok=True)
    return path


def _train(args):
    import fastnn

    if args.plot:
        from fastnn import plot  # fail now, not after training, when matplotlib is missing
        plot._pyplot()
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
    import fastnn
    from fastnn import plot

    plot._pyplot()
    out = _outdir(args.out)
    began = time.perf_counter()
    print("1. The data: make_moons(200, noise=0.20) with seed 0, two interleaving half-moons.")
    X, y = fastnn.make_moons()
    warmup = _warm_up(X, y, 3, {})
    print(f"   (loading or compiling the kernels took {warmup:.2f} s)")

    print(f"\n2. A network with 3 hidden tanh units, {args.passes} passes of gradient descent "
          "(lr 0.01, reg 0.01):")
    start = time.perf_counter()
    model = fastnn.train(X, y, 3, passes=args.passes, loss_every=1000, progress=_show_progress(args))
    seconds = time.perf_counter() - start
    for passes, loss in model.loss_history:
        print(f"   Loss after {int(passes):6d} passes: {loss:.6f}")
    print(f"   Training accuracy {model.score(X, y):.4f}, in {seconds:.3f} s")
    _save(plot.decision_boundary(model, X, y, title="Hidden Layer size 3"), os.path.join(out, "hidden_3.png"),
          lambda line: print("   " + line))

    print(f"\n3. Hidden layer sizes {', '.join(map(str, HIDDEN))}, trained on 70% of the data and "
          "tested on the other 30%:")
    start = time.perf_counter()
    result = fastnn.sweep(X, y, HIDDEN, test=0.3, passes=args.passes, n_jobs=args.n_jobs,
                          progress=_show_progress(args))
    seconds = time.perf_counter() - start
    print("   " + result.table().replace("\n", "\n   "))
    print(f"   {len(result)} trainings in {seconds:.2f} s")
    result.to_csv(os.path.join(out, "sweep.csv"))
    _figures(result, X, y, out, lambda line: print("   " + line))
    top, fit = result.best("test_accuracy"), result.best("train_accuracy")
    print(f"\nTraining accuracy reaches {fit['train_accuracy']:.4f} at {fit['hidden']} hidden units; test "
          f"accuracy is best, {top['test_accuracy']:.4f}, at {top['hidden']}. The boundary grows more complex "
          "with the hidden size (sweep_grid.png): larger layers can fit the noise of the training points, "
          "which a held-out set shows (accuracy_vs_hidden.png).")
    print(f"Done in {time.perf_counter() - began:.1f} s; figures in {out}{os.sep}")


def main(argv=None):
    from fastnn.sweep import SweepError

    parser = argparse.ArgumentParser(prog="fastnn", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    _train_parser(sub)
    _sweep_parser(sub)
    _demo_parser(sub)
    args = parser.parse_args(argv)
    try:
        args.run(args)
    except (ValueError, TypeError, ArithmeticError, OSError, ImportError, SweepError) as e:
        message = " ".join(str(e).split("\n"))  # one line, whatever the library's message holds
        print(f"fastnn {args.command}: error: {message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"fastnn {args.command}: interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
