"""NeuralNetClassifier: scikit-learn's classifier interface on fastnn's kernels."""

from __future__ import annotations

import numbers

import numpy as np
from numpy.typing import ArrayLike, NDArray
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.exceptions import NotFittedError
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import LabelEncoder
from sklearn.utils import check_random_state
from sklearn.utils.multiclass import check_classification_targets, unique_labels
from sklearn.utils.validation import check_is_fitted, validate_data

from . import _validate as check
from .train import train


class NeuralNetClassifier(ClassifierMixin, BaseEstimator):
    """One-hidden-layer network classifier trained by fastnn's fused kernels (gradient descent).

    A drop-in for ``MLPClassifier(hidden_layer_sizes=(hidden,), learning_rate="constant")`` with
    ``solver="sgd"`` (plain steps by default, or momentum) or ``solver="adam"``: same model, same L2 penalty
    (``reg`` is ``alpha``), with the whole loop of passes, optimiser included, in compiled code.
    MLPClassifier's defaults: ``solver="adam", lr=0.001, momentum=0.9, batch_size=min(200, n)`` (its
    early stopping on ``tol`` has no counterpart here: ``passes`` are run in full).

    Parameters
    ----------
    hidden : int, default=3
        Hidden units.
    activation : {"tanh", "sigmoid", "relu"}, default="tanh"
    output : {"softmax", "sigmoid"}, default="softmax"
        Softmax with cross-entropy, or sigmoid outputs with squared error (the article's derivation).
    lr : float, default=0.5
        Learning rate.
    reg : float, default=1e-4
        L2 strength: the loss is ``(sum of sample losses + reg/2 (|W1|^2 + |W2|^2)) / n``, which is
        ``MLPClassifier``'s ``alpha`` (same default).
    passes : int, default=2000
        Passes over the data (epochs); with ``batch_size`` each makes ceil(n / batch_size) updates.
    batch_size : int or None, default=None
        Mini-batch size; None for full-batch gradient descent.
    reduction : {"mean", "sum"}, default="mean"
        "mean" divides each gradient by the batch size, so ``lr`` does not depend on n; "sum" is the
        tutorial's summed gradient.
    shuffle : bool, default=True
        Visit the samples in a new seeded order each epoch (mini-batches only).
    dtype : {"float64", "float32", None}, default="float64"
        Precision of the data, weights and kernels; None keeps float32 X in float32.
    random_state : int, RandomState instance or None, default=None
        Seeds the initialisation and the shuffles. An int is used as ``fastnn.train``'s ``seed``, so
        ``random_state=0`` starts from the tutorial's weights; None or a RandomState draws a seed.
    verbose : bool, default=False
        Print ``Iteration %d, loss = %.8f`` (MLPClassifier's line) for each recorded loss, when the
        compiled loop returns.
    warm_start : bool, default=False
        ``fit`` continues from the current weights instead of starting afresh.
    loss_every : int or None, default=None
        Record the training loss every this many passes (``loss_curve_``); None: max(1, passes // 100),
        about 100 points per fit (each costs about a forward pass over the data).
    n_threads : int or None, default=None
        Threads for large n (None: all of Numba's; 1: the serial kernel).
    solver : {"sgd", "adam"}, default="sgd"
        Plain gradient steps (with ``momentum``) or Adam, stepped inside the compiled loop as
        MLPClassifier's optimisers step (``lr`` is ``learning_rate_init``). ``warm_start`` and
        ``partial_fit`` continue with the optimiser's state.
    momentum : float in [0, 1), default=0.0
        "sgd" only; MLPClassifier's default is 0.9.
    nesterovs_momentum : bool, default=True
        "sgd" with momentum only: Nesterov's momentum, as MLPClassifier's default.
    beta_1, beta_2, epsilon : float, default=0.9, 0.999, 1e-8
        "adam" only, as MLPClassifier's.
    learning_rate : {"constant", "invscaling", "adaptive"}, default="constant"
        "sgd" only, as MLPClassifier's: after each pass, ``lr / (t + 1) ** power_t`` with t the samples seen
        ("invscaling"), or ``lr / 5`` each time ``n_iter_no_change`` passes fail to improve by ``tol``
        ("adaptive"; it stops when the rate falls below 1e-6).
    power_t : float, default=0.5
    early_stopping : bool, default=False
        Hold out ``validation_fraction`` of the training data (stratified, seeded by ``random_state``) and
        stop when its accuracy has not improved by ``tol`` for ``n_iter_no_change`` passes; the model of
        the best accuracy is kept (``validation_scores_``, ``best_validation_score_``).
    validation_fraction : float, default=0.1
    n_iter_no_change : int, default=10
    tol : float or None, default=None
        The improvement that counts (MLPClassifier's default is 1e-4). None: without early stopping,
        every pass runs (fastnn's default); with it, 1e-4. A number without early stopping: stop when the
        training loss (after each pass, on all the data) has not improved by tol for n_iter_no_change
        passes, as MLPClassifier does.

    Attributes
    ----------
    classes_ : ndarray (n_classes,)
    n_features_in_ : int
    feature_names_in_ : ndarray (n_features_in_,)
        Only when X has string column names.
    model_ : fastnn.Model
        The trained network (``save``, ``loss_history``, ...).
    coefs_, intercepts_ : list of ndarray
        ``[W1 (d, h), W2 (h, k)]`` and ``[b1 (h,), b2 (k,)]``, views of ``model_``'s parameters.
    loss_curve_ : list of float
        Training loss after every ``loss_every`` passes and after the last.
    n_iter_ : int
        Passes run, summed over warm starts and ``partial_fit`` calls.

    Notes
    -----
    Why these defaults: with the mean reduction the step does not grow with n. On standardised
    moons, circles, blobs, iris and digits, ``lr=0.5`` was stable for hidden from 3 to 100, and after
    2000 full-batch passes the training loss was within 0.02 of its value after 4000; at 1000 passes the
    held-out accuracy already equals MLPClassifier's with the same settings (tests/test_estimator.py).
    Like MLPClassifier, the defaults assume standardised features (``StandardScaler`` in a
    ``Pipeline``). Binary problems use two softmax outputs.

    The first fit for a new number of features and classes (or dtype) compiles the kernels for that
    shape, several seconds; the machine code is cached on disk for later processes.
    """

    def __init__(self, hidden: int = 3, activation: str = "tanh", output: str = "softmax", lr: float = 0.5,
                 reg: float = 1e-4, passes: int = 2000, batch_size: int | None = None, reduction: str = "mean",
                 shuffle: bool = True, dtype: str | None = "float64", random_state=None, verbose: bool = False,
                 warm_start: bool = False, loss_every: int | None = None, n_threads: int | None = None,
                 solver: str = "sgd", momentum: float = 0.0, nesterovs_momentum: bool = True, beta_1: float = 0.9,
                 beta_2: float = 0.999, epsilon: float = 1e-8, learning_rate: str = "constant", power_t: float = 0.5,
                 early_stopping: bool = False, validation_fraction: float = 0.1, n_iter_no_change: int = 10,
                 tol: float | None = None):
        self.hidden = hidden
        self.activation = activation
        self.output = output
        self.lr = lr
        self.reg = reg
        self.passes = passes
        self.batch_size = batch_size
        self.reduction = reduction
        self.shuffle = shuffle
        self.dtype = dtype
        self.random_state = random_state
        self.verbose = verbose
        self.warm_start = warm_start
        self.loss_every = loss_every
        self.n_threads = n_threads
        self.solver = solver
        self.momentum = momentum
        self.nesterovs_momentum = nesterovs_momentum
        self.beta_1 = beta_1
        self.beta_2 = beta_2
        self.epsilon = epsilon
        self.learning_rate = learning_rate
        self.power_t = power_t
        self.early_stopping = early_stopping
        self.validation_fraction = validation_fraction
        self.n_iter_no_change = n_iter_no_change
        self.tol = tol

    def fit(self, X: ArrayLike, y: ArrayLike, sample_weight: ArrayLike | None = None) -> NeuralNetClassifier:
        """Train on X (n, d) and labels y (n,), samples weighted by sample_weight (n,) if given (see
        ``fastnn.train``); with ``warm_start``, from the current weights."""
        warm = self.warm_start and hasattr(self, "model_")
        X, y = self._validate_fit(X, y, reset=not warm)
        classes = unique_labels(y)
        if warm and not np.array_equal(classes, self.classes_):
            raise ValueError(f"warm_start needs y with the classes of the previous fit, {self.classes_}; "
                             f"got {classes}. Set warm_start=False to refit from scratch")
        self._train(X, y, classes, self.passes, warm, sample_weight)
        return self

    def partial_fit(self, X: ArrayLike, y: ArrayLike, classes: ArrayLike | None = None,
                    sample_weight: ArrayLike | None = None) -> NeuralNetClassifier:
        """One pass over X (one epoch of mini-batches with ``batch_size``) at the rate ``lr``, with no stopping
        rule (as MLPClassifier's partial_fit); the optimiser's state carries over. Returns self.

        classes : array, required on the first call: every label that y will ever hold.
        """
        first = not hasattr(self, "model_")
        if first and classes is None:
            raise ValueError("classes must be passed on the first call to partial_fit")
        if classes is not None:
            classes = unique_labels(classes)
            if not first and not np.array_equal(classes, self.classes_):
                raise ValueError(f"classes={classes} differs from classes_={self.classes_} of the "
                                 "previous calls")
        X, y = self._validate_fit(X, y, reset=first)
        self._train(X, y, self.classes_ if classes is None else classes, 1, not first, sample_weight,
                    incremental=True)
        return self

    def predict_proba(self, X: ArrayLike) -> NDArray[np.floating]:
        """Class probabilities (n, n_classes), in the order of ``classes_``; rows sum to 1."""
        X = self._validate(X)
        return self.model_.predict_proba(X)

    def predict_log_proba(self, X: ArrayLike) -> NDArray[np.floating]:
        """log(predict_proba(X)); -inf where a probability underflowed to 0."""
        with np.errstate(divide="ignore"):
            return np.log(self.predict_proba(X))

    def predict(self, X: ArrayLike) -> NDArray:
        """The most probable class per row (n,), a label from ``classes_``."""
        X = self._validate(X)
        return self.classes_[self.model_.predict(X)]

    coefs_ = property(lambda self: [self._model("coefs_").W1, self.model_.W2])
    intercepts_ = property(lambda self: [self._model("intercepts_").b1, self.model_.b2])
    n_iter_ = property(lambda self: int(self._model("n_iter_").settings["passes"]))
    loss_curve_ = property(lambda self: _after_start(self._model("loss_curve_").loss_history).tolist())

    def _model(self, name):
        if "model_" not in self.__dict__:
            raise NotFittedError(f"This {type(self).__name__} instance has no {name} yet: call fit first")
        return self.model_

    def _validate(self, X):
        """X checked by scikit-learn against the fitted n_features_in_ and feature names."""
        check_is_fitted(self, "model_")
        return validate_data(self, X, reset=False, dtype=self.model_.dtype, order="C")

    def _validate_fit(self, X, y, reset):
        """X and y checked by scikit-learn, which also records (reset) or checks n_features_in_ and names."""
        dtype = [np.float64, np.float32] if self.dtype is None else check.dtype_of(self.dtype)
        X, y = validate_data(self, X, y, reset=reset, dtype=dtype, order="C")
        check_classification_targets(y)
        return X, y

    def _train(self, X, y, classes, passes, warm, sample_weight=None, incremental=False):
        """Run fastnn.train for `passes` passes (continuing model_ if warm), then set model_ and classes_."""
        if len(classes) < 2:
            raise ValueError(f"{type(self).__name__} needs at least two classes; y has only one class: "
                             f"{classes[0]!r}")
        encoder = LabelEncoder()
        encoder.classes_ = classes
        y = encoder.transform(y)  # a label outside classes raises here
        init = self.model_ if warm else None
        if init is not None and init.hidden != self.hidden:
            raise ValueError(f"hidden={self.hidden}, but the fitted model has {init.hidden} hidden units: "
                             "set warm_start=False (or fit afresh) to change it")
        if init is None:
            self._seed = self._fresh_seed()
            seed = self._seed
        else:  # another shuffle stream for each continuation, reproducible from random_state
            seed = int(np.random.SeedSequence([self._seed, init.settings["passes"]]).generate_state(1)[0])
        loss_every = self.loss_every if self.loss_every is not None else max(1, passes // 100)
        options = dict(reg=self.reg, seed=seed, activation=self.activation, output=self.output,
                       reduction=self.reduction, batch_size=self.batch_size, shuffle=self.shuffle, dtype=self.dtype,
                       n_classes=len(classes), n_threads=self.n_threads, solver=self.solver,
                       momentum=self.momentum, nesterov=self.nesterovs_momentum, beta_1=self.beta_1,
                       beta_2=self.beta_2, epsilon=self.epsilon)
        if self._by_pass() and not incremental:  # partial_fit: one pass, as MLPClassifier's (no stopping rule)
            model = self._train_by_pass(X, y, passes, init, options, sample_weight)
        else:
            model = train(X, y, self.hidden, passes=passes, lr=self.lr, loss_every=loss_every, init=init,
                          sample_weight=sample_weight, **options)
        self.model_, self.classes_ = model, classes
        if self.verbose:
            start = 0 if init is None else init.settings["passes"]
            for done, loss in model.loss_history:
                if done > start:
                    print("Iteration %d, loss = %.8f" % (done, loss))

    def _by_pass(self):
        """Whether fit runs pass by pass, for early stopping, a stopping tol or a learning-rate schedule."""
        schedule = check.choice(self.learning_rate, "learning_rate", ("constant", "invscaling", "adaptive"))
        return self.early_stopping or self.tol is not None or schedule != "constant"

    def _train_by_pass(self, X, y, passes, init, options, sample_weight):
        """fastnn.train one pass at a time (the optimiser's state carried by init=), with MLPClassifier's
        rules between passes: the learning-rate schedule, the count of passes without improvement, and early
        stopping on a held-out fraction (its best model is kept)."""
        check.flag(self.early_stopping, "early_stopping")
        tol = 1e-4 if self.tol is None else check.real(self.tol, "tol")
        patience = check.integer(self.n_iter_no_change, "n_iter_no_change")
        power_t = check.real(self.power_t, "power_t")
        X_val = y_val = None
        if self.early_stopping:
            fraction = check.real(self.validation_fraction, "validation_fraction", strict=True)
            if fraction >= 1:
                raise ValueError(f"validation_fraction must be in (0, 1); got {fraction!r}")
            parts = train_test_split(X, y, *(() if sample_weight is None else (np.asarray(sample_weight),)),
                                     test_size=fraction, stratify=y, random_state=self._seed)
            X, X_val, y, y_val = parts[:4]
            sample_weight = parts[4] if sample_weight is not None else None
        lr, seen = self.lr, 0 if init is None else init.settings["passes"] * len(y)
        best, best_model, stale = -np.inf, None, 0
        self.validation_scores_ = [] if self.early_stopping else None
        model = init
        for _ in range(passes):
            model = train(X, y, self.hidden, passes=1, lr=lr, loss_every=1, init=model,
                          sample_weight=sample_weight, **options)
            seen += len(y)
            if self.early_stopping:  # MLPClassifier's rule: accuracy on the held-out part
                score = float(np.mean(model.predict(X_val) == y_val))
                self.validation_scores_.append(score)
            else:  # the training loss, negated so that larger is better in both
                score = -float(model.loss_history[-1, 1])
            stale = stale + 1 if score < best + tol else 0
            if score > best:
                best, best_model = score, model
            if self.learning_rate == "invscaling" and self.solver == "sgd":
                lr = self.lr / (seen + 1) ** power_t
            if stale > patience:
                if self.learning_rate == "adaptive" and self.solver == "sgd" and lr > 1e-6:
                    lr, stale = lr / 5, 0
                else:
                    break
        if self.early_stopping:
            self.best_validation_score_ = best
            history = model.loss_history  # the whole run's losses; the parameters of the best pass
            best_model.loss_history = history
            best_model.settings["passes"] = model.settings["passes"]
            return best_model
        self.best_loss_ = -best
        return model

    def _fresh_seed(self):
        rng = check_random_state(self.random_state)  # also rejects what is not a seed
        if isinstance(self.random_state, numbers.Integral):
            return int(self.random_state)
        return int(rng.randint(np.iinfo(np.int32).max))


def _after_start(history):
    """The losses recorded after some passes (not the pass-0 loss of a fresh start)."""
    return history[history[:, 0] > 0, 1]
