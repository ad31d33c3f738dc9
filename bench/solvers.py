"""NeuralNetClassifier beside MLPClassifier with scikit-learn's own optimisers, on its bundled data sets.

``python bench/solvers.py [--folds 5]``: each data set in a pipeline with StandardScaler, 5-fold
cross-validation (cross_validate, one process), both estimators with the same settings: one tanh hidden
layer of 32 units, alpha 1e-4, mini-batches of 32, at most 200 passes, and

- adam: solver="adam", lr 0.001 (MLPClassifier's default), early stopping on 10% held out
  (n_iter_no_change 10, tol 1e-4);
- momentum: solver="sgd", lr 0.01, Nesterov's momentum 0.9, stopping on the training loss (tol 1e-4,
  n_iter_no_change 10; MLPClassifier's rule).

Prints the mean held-out accuracy (and its spread over the folds) and the mean fit time per fold.
"""

import argparse
import os
import sys
import warnings

import numpy as np
from sklearn.datasets import load_breast_cancer, load_digits, load_iris, load_wine
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import StratifiedKFold, cross_validate
from sklearn.neural_network import MLPClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from limits import cpu_model  # noqa: E402

from fastnn import NeuralNetClassifier  # noqa: E402

DATA = {"iris": load_iris, "wine": load_wine, "breast_cancer": load_breast_cancer, "digits": load_digits}
COMMON = dict(batch_size=32, tol=1e-4, n_iter_no_change=10)
SETTINGS = {  # name: (MLPClassifier's parameters, NeuralNetClassifier's)
    "adam": (dict(solver="adam", learning_rate_init=0.001, early_stopping=True),
             dict(solver="adam", lr=0.001, early_stopping=True)),
    "momentum": (dict(solver="sgd", learning_rate_init=0.01, momentum=0.9, nesterovs_momentum=True),
                 dict(solver="sgd", lr=0.01, momentum=0.9, nesterovs_momentum=True)),
}


def estimators(setting, seed):
    theirs, ours = SETTINGS[setting]
    mlp = MLPClassifier((32,), activation="tanh", alpha=1e-4, max_iter=200, random_state=seed, **COMMON, **theirs)
    nn = NeuralNetClassifier(32, reg=1e-4, passes=200, random_state=seed, **COMMON, **ours)
    return {"fastnn": nn, "MLPClassifier": mlp}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--folds", type=int, default=5)
    args = parser.parse_args(argv)
    print(f"# CPU: {cpu_model()}; numpy {np.__version__}")
    folds = StratifiedKFold(args.folds, shuffle=True, random_state=0)
    print(f"{'data':<14} {'setting':<9} {'library':<14} {'accuracy':>15} {'fit ms':>8} {'passes':>7}")
    for name, load in DATA.items():
        X, y = load(return_X_y=True)
        for setting in SETTINGS:
            for library, estimator in estimators(setting, 0).items():
                pipe = make_pipeline(StandardScaler(), estimator)
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", ConvergenceWarning)
                    cross_validate(pipe, X[::2], y[::2], cv=2)  # compile, warm caches
                    result = cross_validate(pipe, X, y, cv=folds, return_estimator=True)
                passes = np.mean([p[-1].n_iter_ for p in result["estimator"]])
                scores = result["test_score"]
                print(f"{name:<14} {setting:<9} {library:<14} {scores.mean():>8.3f} +- {scores.std():.3f} "
                      f"{np.mean(result['fit_time']) * 1e3:>8.0f} {passes:>7.0f}", flush=True)


if __name__ == "__main__":
    main()
