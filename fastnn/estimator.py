"""NeuralNetClassifier and NeuralNetRegressor: scikit-learn's estimator interface on fastnn's kernels."""

from __future__ import annotations

import numbers

import numpy as np
from numpy.typing import ArrayLike, NDArray
from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin
from sklearn.exceptions import NotFittedError
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import LabelEncoder
from sklearn.utils import check_random_state
from sklearn.utils.multiclass import check_classification_targets, unique_labels
from sklearn.utils.validation import check_is_fitted, validate_data

from . import _validate as check
from .model import r2_score
from .train import Session, _settings, train

# The parameters both estimators share, documented once (each class's docstring adds its own).
_PARAMETERS = """
    reg : float, default=1e-4
        L2 strength: the loss is ``(sum of sample losses + reg/2 (|W1|^2 + |W2|^2)) / n``, which is
        scikit-learn's ``alpha`` (same default).
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
        Print ``Iteration %d, loss = %.8f`` (scikit-learn's MLP line) for each recorded loss, when the
        compiled loop returns.
    warm_start : bool, default=False
        ``fit`` continues from the current weights instead of starting afresh.
    loss_every : int or None, default=None
        Record the training loss every this many passes (``loss_curve_``); None: max(1, passes // 100),
        about 100 points per fit (the passes compute their losses; a record ends a kernel call, some
        microseconds).
    n_threads : int or None, default=None
        Threads for large n (None: all of Numba's; 1: the serial kernel).
    solver : {"sgd", "adam"}, default="sgd"
        Plain gradient steps (with ``momentum``) or Adam, stepped inside the compiled loop as scikit-learn's
        MLP optimisers step (``lr`` is ``learning_rate_init``). ``warm_start`` and ``partial_fit`` continue
        with the optimiser's state.
    momentum : float in [0, 1), default=0.0
        "sgd" only; scikit-learn's default is 0.9.
    nesterovs_momentum : bool, default=True
        "sgd" with momentum only: Nesterov's momentum, as scikit-learn's default.
    beta_1, beta_2, epsilon : float, default=0.9, 0.999, 1e-8
        "adam" only, as scikit-learn's.
    learning_rate : {"constant", "invscaling", "adaptive"}, default="constant"
        "sgd" only, as scikit-learn's: after each pass, ``lr / (t + 1) ** power_t`` with t the samples seen
        ("invscaling"), or ``lr / 5`` each time ``n_iter_no_change`` passes fail to improve by ``tol``
        ("adaptive"; it stops when the rate falls below 1e-6).
    power_t : float, default=0.5
    early_stopping : bool, default=False
        Hold out ``validation_fraction`` of the training data (seeded by ``random_state``; stratified for a
        classifier) and stop when its score (accuracy, or R^2 for a regressor) has not improved by ``tol``
        for ``n_iter_no_change`` passes; the model of the best score is kept (``validation_scores_``,
        ``best_validation_score_``).
    validation_fraction : float, default=0.1
    n_iter_no_change : int, default=10
    tol : float or None, default=None
        The improvement that counts (scikit-learn's default is 1e-4). None: without early stopping,
        every pass runs (fastnn's default); with it, 1e-4. A number without early stopping: stop when the
        training loss (``loss_curve_``) has not improved by tol for n_iter_no_change passes, as
        scikit-learn's MLPs do."""

_ATTRIBUTES = """
    n_features_in_ : int
    feature_names_in_ : ndarray (n_features_in_,)
        Only when X has string column names.
    model_ : fastnn.Model
        The trained network (``save``, ``loss_history``, ...).
    coefs_, intercepts_ : list of ndarray
        ``[W1 (d, h), W2 (h, k)]`` and ``[b1 (h,), b2 (k,)]``, views of ``model_``'s parameters.
    loss_curve_ : list of float
        The training loss of every ``loss_every``-th pass and of the last, as scikit-learn's MLPs compute it:
        by the pass itself, each batch's samples' losses and the L2 term at the batch's start, summed over
        the batches, over n (for full batches, the loss of the weights the pass started from).
    n_iter_ : int
        Passes run, summed over warm starts and ``partial_fit`` calls."""


class _NeuralNet(BaseEstimator):
    """What both estimators share: training by fastnn.train (pass by pass for the stopping rules and the
    schedules), their parameters' checks and the fitted attributes. A subclass names its output (_output),
    how its held-out score is taken (_held_out_score) and whether its validation split is stratified."""

    _stratify = False

    def _output(self) -> str:
        raise NotImplementedError

    def _held_out_score(self, outputs, y, weights) -> float:
        """The score of the network's outputs (n, k) on the held-out part against its y (encoded), each sample
        counted by its weight (None: alike), as scikit-learn's MLPs score it."""
        raise NotImplementedError

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

    def _dtypes(self):
        return [np.float64, np.float32] if self.dtype is None else check.dtype_of(self.dtype)

    def _train(self, X, y, n_outputs, passes, warm, sample_weight=None, incremental=False):
        """Train on X and the encoded y (labels 0..k-1, or targets) for `passes` passes (continuing model_ if
        warm), by fastnn.train or, for the stopping rules and schedules, pass by pass; then set model_."""
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
        options = dict(reg=self.reg, seed=seed, activation=self.activation, output=self._output(),
                       reduction=self.reduction, batch_size=self.batch_size, shuffle=self.shuffle, dtype=self.dtype,
                       n_classes=n_outputs, n_threads=self.n_threads, solver=self.solver,
                       momentum=self.momentum, nesterov=self.nesterovs_momentum, beta_1=self.beta_1,
                       beta_2=self.beta_2, epsilon=self.epsilon, init_scheme=self.init_scheme,
                       running_loss=True)  # loss_curve_ as MLPClassifier's, and no forward pass to record it
        if self._by_pass() and not incremental:  # partial_fit: one pass, as scikit-learn's (no stopping rule)
            model = self._train_by_pass(X, y, passes, init, options, sample_weight)
        elif init is None:
            model = train(X, y, self.hidden, passes=passes, lr=self.lr, loss_every=loss_every, init=init,
                          sample_weight=sample_weight, **options)
        else:  # a continuation: judged on its course, not on where it ends (see _session)
            session = self._session(X, y, passes, self.lr, loss_every, init, options, sample_weight)
            session.advance(passes)
            model = session.finish(judge=False)
        self.model_ = model
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
        """One fastnn.train.Session advanced a pass at a time, with scikit-learn's rules between passes: the
        learning-rate schedule, the count of passes without improvement (of the training loss, or of the
        held-out score with early stopping, whose best model is kept)."""
        check.flag(self.early_stopping, "early_stopping")
        tol = 1e-4 if self.tol is None else check.real(self.tol, "tol")
        patience = check.integer(self.n_iter_no_change, "n_iter_no_change")
        power_t = check.real(self.power_t, "power_t")
        X_val = y_val = w_val = None
        if self.early_stopping:
            fraction = check.real(self.validation_fraction, "validation_fraction", strict=True)
            if fraction >= 1:
                raise ValueError(f"validation_fraction must be in (0, 1); got {fraction!r}")
            parts = train_test_split(X, y, *(() if sample_weight is None else (np.asarray(sample_weight),)),
                                     test_size=fraction, stratify=y if self._stratify else None,
                                     random_state=self._seed)
            X, X_val, y, y_val = parts[:4]
            if len(y_val) < 2:  # no score to compare (scikit-learn's MLPs refuse it alike)
                raise ValueError(f"validation_fraction={fraction} of {len(y) + len(y_val)} samples holds out "
                                 f"{len(y_val)}: too few to score; increase validation_fraction or the data")
            if sample_weight is not None:
                sample_weight, w_val = parts[4:6]
        lr, seen = self.lr, 0 if init is None else init.settings["passes"] * len(y)
        best, best_model, stale = -np.inf, None, 0
        self.validation_scores_ = [] if self.early_stopping else None
        session = self._session(X, y, passes, lr, 1, init, options, sample_weight)
        if self.early_stopping:
            X_val = check.features(X_val, session.X.dtype)
            outputs = np.empty((len(X_val), session.k), X_val.dtype)
        for _ in range(passes):
            loss = session.advance(1, lr)
            seen += len(y)
            if self.early_stopping:  # scikit-learn's rule: the score on the held-out part
                score = self._held_out_score(session.outputs(X_val, outputs), y_val, w_val)
                self.validation_scores_.append(score)
            else:  # the training loss, negated so that larger is better in both
                score = -loss
            stale = stale + 1 if score < best + tol else 0
            if score > best:
                best, best_model = score, session.model(copy=True) if self.early_stopping else None
            if self.learning_rate == "invscaling" and self.solver == "sgd":
                lr = self.lr / (seen + 1) ** power_t
            if stale > patience:
                if self.learning_rate == "adaptive" and self.solver == "sgd" and lr > 1e-6:
                    lr, stale = lr / 5, 0
                else:
                    break
        model = session.finish(judge=init is None)
        if self.early_stopping:
            self.best_validation_score_ = best
            history = model.loss_history  # the whole run's losses; the parameters of the best pass
            best_model.loss_history = history
            best_model.settings["passes"] = model.settings["passes"]
            return best_model
        self.best_loss_ = -best
        return model

    def _session(self, X, y, passes, lr, loss_every, init, options, sample_weight):
        """A fastnn.train.Session of these options (fastnn.train's keywords), for a fit that is not one whole
        train() call: pass by pass, or a continuation (warm_start, partial_fit). A continuation is not judged
        on where it ends (Session.finish(judge=False)): a call of one pass, or a few, is a slice of a longer
        run, which ends above the loss it started from by chance when the loss hovers near that of predicting
        the class frequencies (labels with little signal), and scikit-learn's MLPs go on. The rules on its
        course (a loss that stops being finite, or grows 1000x) apply as in any run."""
        options = dict(options)
        data = dict(dtype=options.pop("dtype"), n_classes=options.pop("n_classes"))
        settings = _settings(hidden=self.hidden, passes=passes, lr=lr, backend="numba", loss_every=loss_every,
                             init=init, stop=None, **options)
        return Session(X, y, settings, init=init, sample_weight=sample_weight, **data)

    def _fresh_seed(self):
        rng = check_random_state(self.random_state)  # also rejects what is not a seed
        if isinstance(self.random_state, numbers.Integral):
            return int(self.random_state)
        return int(rng.randint(np.iinfo(np.int32).max))


class NeuralNetClassifier(ClassifierMixin, _NeuralNet):
    __doc__ = """One-hidden-layer network classifier trained by fastnn's fused kernels (gradient descent).

    A drop-in for ``MLPClassifier(hidden_layer_sizes=(hidden,))`` with ``solver="sgd"`` (plain steps by
    default, or momentum) or ``solver="adam"``: same model, same L2 penalty (``reg`` is ``alpha``), the same
    learning-rate schedules and stopping rules, with the whole loop of passes, optimiser included, in
    compiled code. MLPClassifier's defaults: ``solver="adam", lr=0.001, momentum=0.9,
    batch_size=min(200, n), passes=200, tol=1e-4``.

    Parameters
    ----------
    hidden : int, default=3
        Hidden units.
    activation : {"tanh", "sigmoid", "relu"}, default="tanh"
    output : {"softmax", "sigmoid"}, default="softmax"
        Softmax with cross-entropy, or sigmoid outputs with squared error (the article's derivation).
    lr : float, default=0.5
        Learning rate (see Notes).""" + _PARAMETERS + """
    init_scheme : {"tutorial", "glorot"}, default="tutorial"
        The tutorial's initialisation (zero biases), or MLPClassifier's (Glorot-uniform weights and biases;
        see ``fastnn.train.init_params``).

    Attributes
    ----------
    classes_ : ndarray (n_classes,)""" + _ATTRIBUTES + """

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

    _stratify = True

    def __init__(self, hidden: int = 3, activation: str = "tanh", output: str = "softmax", lr: float = 0.5,
                 reg: float = 1e-4, passes: int = 2000, batch_size: int | None = None, reduction: str = "mean",
                 shuffle: bool = True, dtype: str | None = "float64", random_state=None, verbose: bool = False,
                 warm_start: bool = False, loss_every: int | None = None, n_threads: int | None = None,
                 solver: str = "sgd", momentum: float = 0.0, nesterovs_momentum: bool = True, beta_1: float = 0.9,
                 beta_2: float = 0.999, epsilon: float = 1e-8, learning_rate: str = "constant", power_t: float = 0.5,
                 early_stopping: bool = False, validation_fraction: float = 0.1, n_iter_no_change: int = 10,
                 tol: float | None = None, init_scheme: str = "tutorial"):
        _keep(self, locals())

    def fit(self, X: ArrayLike, y: ArrayLike, sample_weight: ArrayLike | None = None) -> NeuralNetClassifier:
        """Train on X (n, d) and labels y (n,), samples weighted by sample_weight (n,) if given (see
        ``fastnn.train``); with ``warm_start``, from the current weights."""
        warm = self.warm_start and hasattr(self, "model_")
        X, y = self._validate_fit(X, y, reset=not warm)
        classes = unique_labels(y)
        if warm and not np.array_equal(classes, self.classes_):
            raise ValueError(f"warm_start needs y with the classes of the previous fit, {self.classes_}; "
                             f"got {classes}. Set warm_start=False to refit from scratch")
        self._fit_labels(X, y, classes, self.passes, warm, sample_weight)
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
        self._fit_labels(X, y, self.classes_ if classes is None else classes, 1, not first, sample_weight,
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

    def _output(self):
        # identity outputs are the regressor's: here they would read the classes as targets
        return check.choice(self.output, "output", ("softmax", "sigmoid"))

    def _held_out_score(self, outputs, y, weights):
        return float(np.average(np.argmax(outputs, axis=1) == y, weights=weights))  # accuracy

    def _validate_fit(self, X, y, reset):
        """X and y checked by scikit-learn, which also records (reset) or checks n_features_in_ and names."""
        X, y = validate_data(self, X, y, reset=reset, dtype=self._dtypes(), order="C")
        check_classification_targets(y)
        return X, y

    def _fit_labels(self, X, y, classes, passes, warm, sample_weight=None, incremental=False):
        """Train on y encoded as 0..len(classes)-1, then set classes_."""
        if len(classes) < 2:
            raise ValueError(f"{type(self).__name__} needs at least two classes; y has only one class: "
                             f"{classes[0]!r}")
        encoder = LabelEncoder()
        encoder.classes_ = classes
        y = encoder.transform(y)  # a label outside classes raises here
        self._train(X, y, len(classes), passes, warm, sample_weight, incremental)
        self.classes_ = classes


class NeuralNetRegressor(RegressorMixin, _NeuralNet):
    __doc__ = """One-hidden-layer network regressor trained by fastnn's fused kernels (gradient descent):
    identity outputs, squared error, one or many targets.

    A drop-in for ``MLPRegressor(hidden_layer_sizes=(hidden,))`` as NeuralNetClassifier is for MLPClassifier
    (the same parameters but ``output``, the same optimisers, schedules and stopping rules). Its loss per
    sample is half the squared error summed over the targets; MLPRegressor's ``loss_`` averages the
    targets' terms instead (the same for one target, and the same gradient steps in every case).
    MLPRegressor's defaults: ``solver="adam", lr=0.001, momentum=0.9, batch_size=min(200, n), passes=200,
    tol=1e-4``.

    Parameters
    ----------
    hidden : int, default=3
        Hidden units.
    activation : {"tanh", "sigmoid", "relu"}, default="tanh"
    lr : float, default=0.1
        Learning rate (see Notes).""" + _PARAMETERS + """
    init_scheme : {"glorot", "tutorial"}, default="glorot"
        MLPRegressor's initialisation (Glorot-uniform weights and biases; see ``fastnn.train.init_params``),
        or the tutorial's (zero biases; see Notes).

    Attributes
    ----------
    n_outputs_ : int
        The number of targets.""" + _ATTRIBUTES + """

    Notes
    -----
    Why ``lr=0.1``, not the classifier's 0.5: an identity output's step grows with the targets' errors and
    with the number of hidden units feeding it. On standardised diabetes and Friedman #1 data (5-fold
    cross-validation, hidden 3 and 32, full batch and mini-batches of 32), 0.1 was stable in every case and
    within 0.03 R^2 of the best rate; 0.5 diverged with 32 units in mini-batches.

    Why Glorot's initialisation: its random biases spread the tanh units' centres over the inputs, where the
    tutorial's zero biases put them all at the origin. On Friedman #1 (8 units, 1000 full-batch passes, 20
    seeds) the held-out R^2 was 0.844 with it and 0.810 with the tutorial's; MLPRegressor's was 0.844.

    Like MLPRegressor, it assumes standardised features and targets of moderate scale: targets in the
    hundreds (load_diabetes's) make the step hundreds of times larger, and the run diverges (a
    DivergenceError says so). Standardise them, e.g. with
    ``TransformedTargetRegressor(make_pipeline(StandardScaler(), NeuralNetRegressor()),
    transformer=StandardScaler())``.
    """

    def __init__(self, hidden: int = 3, activation: str = "tanh", lr: float = 0.1,
                 reg: float = 1e-4, passes: int = 2000, batch_size: int | None = None, reduction: str = "mean",
                 shuffle: bool = True, dtype: str | None = "float64", random_state=None, verbose: bool = False,
                 warm_start: bool = False, loss_every: int | None = None, n_threads: int | None = None,
                 solver: str = "sgd", momentum: float = 0.0, nesterovs_momentum: bool = True, beta_1: float = 0.9,
                 beta_2: float = 0.999, epsilon: float = 1e-8, learning_rate: str = "constant", power_t: float = 0.5,
                 early_stopping: bool = False, validation_fraction: float = 0.1, n_iter_no_change: int = 10,
                 tol: float | None = None, init_scheme: str = "glorot"):
        _keep(self, locals())

    def fit(self, X: ArrayLike, y: ArrayLike, sample_weight: ArrayLike | None = None) -> NeuralNetRegressor:
        """Train on X (n, d) and targets y (n,) or (n, n_targets), samples weighted by sample_weight (n,) if
        given (see ``fastnn.train``); with ``warm_start``, from the current weights."""
        warm = self.warm_start and hasattr(self, "model_")
        X, y = self._validate_fit(X, y, reset=not warm)
        self._train(X, y, None, self.passes, warm, sample_weight)
        self.n_outputs_ = self.model_.n_classes
        return self

    def partial_fit(self, X: ArrayLike, y: ArrayLike, sample_weight: ArrayLike | None = None) -> NeuralNetRegressor:
        """One pass over X (one epoch of mini-batches with ``batch_size``) at the rate ``lr``, with no stopping
        rule (as MLPRegressor's partial_fit); the optimiser's state carries over. Returns self."""
        first = not hasattr(self, "model_")
        X, y = self._validate_fit(X, y, reset=first)
        self._train(X, y, None, 1, not first, sample_weight, incremental=True)
        self.n_outputs_ = self.model_.n_classes
        return self

    def predict(self, X: ArrayLike) -> NDArray[np.floating]:
        """The predicted targets: (n,) for one target, as MLPRegressor's, else (n, n_outputs_)."""
        X = self._validate(X)
        P = self.model_.predict(X)
        return P.ravel() if P.shape[1] == 1 else P

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.multi_output = True  # y may have several columns
        return tags

    def _output(self):
        return "identity"

    def _held_out_score(self, outputs, y, weights):
        return r2_score(y, outputs if y.ndim == 2 else outputs[:, 0], sample_weight=weights)

    def _validate_fit(self, X, y, reset):
        """X and y checked by scikit-learn, which also records (reset) or checks n_features_in_ and names."""
        return validate_data(self, X, y, reset=reset, dtype=self._dtypes(), order="C", multi_output=True,
                             y_numeric=True)


def _keep(estimator, params):
    """Each __init__ argument as an attribute of the same name, unchanged (scikit-learn's convention)."""
    for name, value in params.items():
        if name != "self":
            setattr(estimator, name, value)


def _after_start(history):
    """The losses recorded after some passes (not the pass-0 loss of a fresh start)."""
    return history[history[:, 0] > 0, 1]
