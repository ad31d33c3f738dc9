"""NeuralNetClassifier.fit beside MLPClassifier.fit: same data, hidden size, lr, batch size and passes.

``pytest bench/test_estimator_bench.py --benchmark-only``. MLPClassifier runs the same algorithm
(solver="sgd", momentum 0, constant lr, alpha = reg, no early stopping), so the two differ in speed and
in their random initialisation only; ``extra_info`` records the held-out accuracy of each.
"""

import warnings

import pytest
from sklearn.datasets import load_digits, make_moons
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import train_test_split
from sklearn.neural_network import MLPClassifier
from sklearn.preprocessing import StandardScaler

from fastnn import NeuralNetClassifier

DATA = {  # name: (data, hidden); moons is the tutorial's shape (d = 2, k = 2) at 5x its n
    "moons": (lambda: make_moons(1000, noise=0.2, random_state=0), 3),
    "digits": (lambda: load_digits(return_X_y=True), 16),
}
MODES = {"full batch": dict(batch_size=None, passes=1000, lr=0.5),
         "batch 32": dict(batch_size=32, passes=50, lr=0.1)}
LIBRARIES = ("fastnn", "sklearn")


@pytest.fixture(scope="module", params=DATA)
def split(request):
    make, hidden = DATA[request.param]
    X, y = make()
    Xtr, Xte, ytr, yte = train_test_split(X, y, test_size=0.3, random_state=0, stratify=y)
    scaler = StandardScaler().fit(Xtr)
    return request.param, hidden, scaler.transform(Xtr), scaler.transform(Xte), ytr, yte


def classifier(library, hidden, n, batch_size, passes, lr):
    if library == "fastnn":
        return NeuralNetClassifier(hidden, lr=lr, reg=1e-4, passes=passes, batch_size=batch_size,
                                   random_state=0)
    return MLPClassifier((hidden,), activation="tanh", solver="sgd", learning_rate="constant",
                         learning_rate_init=lr, momentum=0.0, alpha=1e-4,
                         batch_size=n if batch_size is None else batch_size, max_iter=passes, tol=0.0,
                         n_iter_no_change=passes + 1, random_state=0)


@pytest.mark.parametrize("library", LIBRARIES)
@pytest.mark.parametrize("mode", MODES)
def test_fit(benchmark, split, mode, library):
    name, hidden, Xtr, Xte, ytr, yte = split
    settings = MODES[mode]
    benchmark.group = (f"fit {name} (n={len(ytr)}, d={Xtr.shape[1]}), H={hidden}, {mode}, "
                       f"{settings['passes']} passes")
    make = lambda: classifier(library, hidden, len(ytr), **settings)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)  # max_iter reached, as intended
        make().set_params(**{"passes" if library == "fastnn" else "max_iter": 2}).fit(Xtr, ytr)  # compile
        clf = benchmark.pedantic(lambda: make().fit(Xtr, ytr), rounds=5, iterations=1)
    accuracy = clf.score(Xte, yte)
    benchmark.extra_info.update(accuracy=round(accuracy, 4), train_accuracy=round(clf.score(Xtr, ytr), 4))
    assert accuracy > 0.85
