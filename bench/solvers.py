"""NeuralNetClassifier and NeuralNetRegressor beside MLPClassifier and MLPRegressor with scikit-learn's own
optimisers, on its bundled data sets (and Friedman #1, generated, for a smooth non-linear regression).

``python bench/solvers.py [--folds 5]``: each data set in a pipeline with StandardScaler (regressions also
standardise their targets: TransformedTargetRegressor), 5-fold cross-validation (cross_validate, one
process; stratified for classifications), both estimators with the same settings: one tanh hidden layer of
32 units, alpha 1e-4, mini-batches of 32, at most 200 passes, scikit-learn's initialisation
(init_scheme="glorot": for the same seed, the same initial weights where the networks are the same; a binary
MLPClassifier has one logistic output where fastnn has two softmax outputs), and

- adam: solver="adam", lr 0.001 (MLPClassifier's default), early stopping on 10% held out
  (n_iter_no_change 10, tol 1e-4);
- momentum: solver="sgd", lr 0.01, Nesterov's momentum 0.9, stopping on the training loss (tol 1e-4,
  n_iter_no_change 10; MLPClassifier's rule).

Prints the mean held-out accuracy or R^2 (and its spread over the folds), the mean fit time per fold and
the mean passes run.
"""

import argparse
import os
import sys
import warnings

import numpy as np
from sklearn.compose import TransformedTargetRegressor
from sklearn.datasets import (load_breast_cancer, load_diabetes, load_digits, load_iris, load_linnerud, load_wine,
                              make_friedman1)
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import KFold, StratifiedKFold, cross_validate
from sklearn.neural_network import MLPClassifier, MLPRegressor
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from limits import cpu_model  # noqa: E402

from fastnn import NeuralNetClassifier, NeuralNetRegressor  # noqa: E402

# name: (loader, regression)
DATA = {"iris": (load_iris, False), "wine": (load_wine, False), "breast_cancer": (load_breast_cancer, False),
        "digits": (load_digits, False), "diabetes": (load_diabetes, True), "linnerud": (load_linnerud, True),
        "friedman1": (lambda return_X_y: make_friedman1(2000, noise=1.0, random_state=0), True)}
COMMON = dict(batch_size=32, tol=1e-4, n_iter_no_change=10)
SETTINGS = {  # name: (the MLP estimators' parameters, fastnn's)
    "adam": (dict(solver="adam", learning_rate_init=0.001, early_stopping=True),
             dict(solver="adam", lr=0.001, early_stopping=True)),
    "momentum": (dict(solver="sgd", learning_rate_init=0.01, momentum=0.9, nesterovs_momentum=True),
                 dict(solver="sgd", lr=0.01, momentum=0.9, nesterovs_momentum=True)),
}


def estimators(setting, seed, regression):
    """The two estimators in their pipelines: (name, pipeline) for fastnn's and scikit-learn's."""
    theirs, ours = SETTINGS[setting]
    mlp = (MLPRegressor if regression else MLPClassifier)(hidden_layer_sizes=(32,), activation="tanh", alpha=1e-4,
                                                          max_iter=200, random_state=seed, **COMMON, **theirs)
    nn = (NeuralNetRegressor if regression else NeuralNetClassifier)(32, reg=1e-4, passes=200, random_state=seed,
                                                                     init_scheme="glorot", **COMMON, **ours)
    pipes = {}
    for estimator in (nn, mlp):
        pipe = make_pipeline(StandardScaler(), estimator)
        if regression:
            pipe = TransformedTargetRegressor(pipe, transformer=StandardScaler())
        pipes["fastnn" if estimator is nn else type(estimator).__name__] = pipe
    return pipes


def fitted_estimator(pipe):
    return (pipe.regressor_ if isinstance(pipe, TransformedTargetRegressor) else pipe)[-1]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--folds", type=int, default=5)
    args = parser.parse_args(argv)
    print(f"# CPU: {cpu_model()}; numpy {np.__version__}")
    print(f"{'data':<14} {'setting':<9} {'library':<14} {'accuracy/R^2':>15} {'fit ms':>8} {'passes':>7}")
    for name, (load, regression) in DATA.items():
        X, y = load(return_X_y=True)
        folds = (KFold if regression else StratifiedKFold)(args.folds, shuffle=True, random_state=0)
        for setting in SETTINGS:
            for library, pipe in estimators(setting, 0, regression).items():
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", ConvergenceWarning)
                    cross_validate(pipe, X, y, cv=folds)  # compile, warm caches
                    result = cross_validate(pipe, X, y, cv=folds, return_estimator=True)
                passes = np.mean([fitted_estimator(p).n_iter_ for p in result["estimator"]])
                scores = result["test_score"]
                print(f"{name:<14} {setting:<9} {library:<14} {scores.mean():>8.3f} +- {scores.std():.3f} "
                      f"{np.mean(result['fit_time']) * 1e3:>8.0f} {passes:>7.0f}", flush=True)


if __name__ == "__main__":
    main()
