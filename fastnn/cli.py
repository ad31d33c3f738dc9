"""The ``fastnn`` command (also ``python -m fastnn``)."""

import argparse
import sys
import time

import numpy as np


def _train_parser(sub):
    p = sub.add_parser("train", help="train one network on make_moons (default: the tutorial's run)")
    p.add_argument("--hidden", type=int, default=3, help="hidden units (default 3)")
    p.add_argument("--passes", type=int, default=20000, help="passes of gradient descent (default 20000)")
    p.add_argument("--lr", type=float, default=0.01, help="learning rate (default 0.01)")
    p.add_argument("--reg", type=float, default=0.01, help="L2 strength (default 0.01)")
    p.add_argument("--samples", type=int, default=200, help="make_moons samples (default 200)")
    p.add_argument("--noise", type=float, default=0.20, help="make_moons noise (default 0.20)")
    p.add_argument("--seed", type=int, default=0, help="seed of data and initialisation (default 0)")
    p.add_argument("--activation", default="tanh", help="tanh, sigmoid or relu (default tanh)")
    p.add_argument("--output", default="softmax", help="softmax or sigmoid (default softmax)")
    p.add_argument("--reduction", default="sum", help="sum (the tutorial's) or mean (default sum)")
    p.add_argument("--batch-size", type=int, default=None, help="mini-batch size (default: full batch)")
    p.add_argument("--dtype", default="float64", help="float64 or float32 (default float64)")
    p.add_argument("--backend", default="numba", help="numba or numpy (default numba)")
    p.add_argument("--loss-every", type=int, default=1000, help="print the loss every N passes")
    p.add_argument("--save", metavar="PATH", help="write the trained model to PATH (.npz)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(run=_train)


def _train(args):
    import fastnn

    X, y = fastnn.make_moons(args.samples, noise=args.noise, random_state=args.seed, dtype=args.dtype)
    settings = dict(activation=args.activation, output=args.output, dtype=args.dtype, backend=args.backend)
    start = time.perf_counter()
    fastnn.train(X, y, args.hidden, passes=1, **settings)  # loads (or compiles) the kernels
    warmup = time.perf_counter() - start
    start = time.perf_counter()
    model = fastnn.train(X, y, args.hidden, passes=args.passes, lr=args.lr, reg=args.reg, seed=args.seed,
                         reduction=args.reduction, batch_size=args.batch_size, loss_every=args.loss_every, progress=not args.quiet and sys.stderr.isatty())
    seconds = time.perf_counter() - start
    for passes, loss in model.loss_history:
        print(f"Loss after {int(passes):6d} passes: {loss:.6f}")
    print(f"Training accuracy: {model.score(X, y):.4f}")
    print(f"Time: {seconds:.3f} s for {args.passes} passes (hidden={args.hidden}, n={args.samples}, "
          f"{args.dtype}, {args.backend}); loading or compiling the kernels took {warmup:.3f} s")
    if args.save:
        model.save(args.save)
        print(f"Saved: {args.save}")


def main(argv=None):
    parser = argparse.ArgumentParser(prog="fastnn", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    _train_parser(sub)
    args = parser.parse_args(argv)
    try:
        args.run(args)
    except (ValueError, TypeError, ArithmeticError, OSError) as e:
        print(f"fastnn {args.command}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"fastnn {args.command}: interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
