"""The whole study of "Implementing a Neural Network from Scratch" (Denny Britz), computed by fastnn.

Run it top to bottom::

    pip install -e ".[plot]"
    python examples/tutorial.py                   # figures in ./tutorial-figures
    python examples/tutorial.py FOLDER --passes 2000

It follows the article: the data; logistic regression, which cannot separate the moons; a network with 3
hidden units, its loss printed as the article prints it and its decision boundary; the hidden sizes 1 to
50 on one figure; the sigmoid + squared-error network whose gradients the article derives; and, beyond
the article, the overfitting it describes, measured on held-out points.
"""

import argparse
import os
import time
import warnings

import matplotlib

matplotlib.use("Agg")  # the figures are written to files; no window is needed
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import sklearn.linear_model  # noqa: E402

import fastnn  # noqa: E402
from fastnn import plot  # noqa: E402
from fastnn.tutorial import build_model, calculate_loss, plot_decision_boundary, predict  # noqa: E402

HIDDEN = [1, 2, 3, 4, 5, 20, 50]  # the article's hidden layer sizes


def save(name, out):
    path = os.path.join(out, name)
    plt.savefig(path, dpi=80)
    plt.close("all")
    print(f"   Wrote: {path}")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", nargs="?", default="tutorial-figures", help="folder for the figures "
                        "(default ./tutorial-figures)")
    parser.add_argument("--passes", type=int, default=20000, help="passes of every training (default 20000, "
                        "the article's)")
    args = parser.parse_args(argv)
    os.makedirs(args.out, exist_ok=True)
    passes = args.passes
    began = time.perf_counter()

    print("1. The data: make_moons(200, noise=0.20) after np.random.seed(0).")
    X, y = fastnn.make_moons()  # the same points as the article's sklearn.datasets.make_moons
    plt.figure(figsize=(10, 8))
    plt.scatter(X[:, 0], X[:, 1], s=40, c=y, cmap=plt.cm.Spectral)
    save("1_data.png", args.out)

    print("\n2. Logistic regression: a straight line cannot separate the moons.")
    with warnings.catch_warnings():  # scikit-learn's notices of future defaults, not about this study
        warnings.simplefilter("ignore", FutureWarning)
        clf = sklearn.linear_model.LogisticRegressionCV().fit(X, y)
    plt.figure(figsize=(10, 8))
    plot_decision_boundary(lambda x: clf.predict(x), X, y)
    plt.title("Logistic Regression")
    print(f"   Training accuracy {clf.score(X, y):.4f}")
    save("2_logistic_regression.png", args.out)

    print(f"\n3. A network with 3 hidden tanh units, {passes} passes of gradient descent (lr 0.01, reg 0.01):")
    # The article's own calls; fastnn.tutorial runs them on fastnn's kernels.
    model = build_model(X, y, 3, num_passes=passes, print_loss=True)
    print(f"   Loss {calculate_loss(model, X, y):.6f}, training accuracy {np.mean(predict(model, X) == y):.4f}")
    # The same network through fastnn's API: the same initialisation and updates, the same weights.
    net = fastnn.train(X, y, 3, passes=passes)
    same = np.array_equal(net.theta, np.concatenate([np.ravel(model[k]) for k in ("W1", "b1", "W2", "b2")]))
    print(f"   fastnn.train(X, y, 3) gives the same weights: {same}")
    plt.figure(figsize=(10, 8))
    plot_decision_boundary(lambda x: predict(model, x), X, y)
    plt.title("Decision Boundary for hidden layer size 3")
    save("3_hidden_3.png", args.out)

    print("\n4. Varying the hidden layer size (the article's figure):")
    plt.figure(figsize=(16, 32))
    for i, nn_hdim in enumerate(HIDDEN):
        plt.subplot(5, 2, i + 1)
        plt.title("Hidden Layer size %d" % nn_hdim)
        model = build_model(X, y, nn_hdim, num_passes=passes)
        plot_decision_boundary(lambda x: predict(model, x), X, y)
        print(f"   Hidden Layer size {nn_hdim:2d}: training accuracy {np.mean(predict(model, X) == y):.4f}")
    save("4_hidden_sizes.png", args.out)

    print("\n5. Sigmoid hidden units with a squared-error loss on sigmoid outputs, as the article derives it:")
    sig = fastnn.train(X, y, 3, passes=passes, activation="sigmoid", output="sigmoid",
                       loss_every=max(1, passes // 10))
    for done, loss in sig.loss_history:
        print(f"   Loss after {int(done):5d} passes: {loss:.6f}")
    print(f"   Training accuracy {sig.score(X, y):.4f} (tanh + softmax: {net.score(X, y):.4f})")
    plot.decision_boundary(sig, X, y, title="Sigmoid units, squared error, hidden layer size 3")
    save("5_sigmoid_squared_error.png", args.out)

    print("\n6. Overfitting, measured: each size trained on 70% of the points and tested on the other 30%:")
    result = fastnn.sweep(X, y, HIDDEN, test=0.3, passes=passes, progress=False)
    print("   " + result.table().replace("\n", "\n   "))
    plot.accuracy_vs_hidden(result)
    save("6_accuracy_vs_hidden.png", args.out)
    print(f"\nDone in {time.perf_counter() - began:.1f} s.")


if __name__ == "__main__":
    main()
