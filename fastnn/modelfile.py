"""The model file: an .npz archive of three plain arrays, never a pickle, read within bounds.

An archive holds ``theta`` (the flat parameters), ``loss_history`` ((m, 2) float64 rows of pass and loss)
and ``meta`` (a 0-d string of JSON: format, n_features, n_classes, dtype, settings, and a SHA-256 of all
of it). Reading trusts nothing before it is checked: the metadata is read first (its size capped by its
.npy header), then the .npy headers of the two arrays are compared with it and the memory they need is
checked, and only then is any array read.

Saving writes a temporary sibling, ``.<name>.fastnn-<12 hex digits>.tmp``, and renames it over the target:
an interrupted save leaves the previous file (or none). The temporary file is removed on any failure,
Ctrl-C included; one left by a killed process is removed by a later save into the same folder once it
is an hour old (a younger one may belong to a save still running in another process).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import secrets
import stat
import time
from typing import IO, Any, Union

import numpy as np

from . import _validate as check
from . import reference

FORMAT = "fastnn-model-1"
META = ("format", "n_features", "n_classes", "dtype", "settings", "sha256")
ARRAYS = ("loss_history", "meta", "theta")
_MAX_META = 1 << 16  # characters of the metadata string; a saved one is a few hundred
# Rows of loss_history a file may hold: passes + 1 (one per pass and the initial loss) and this many more,
# so that a history put together by hand still saves, while a crafted header cannot claim gigabytes.
_HISTORY_ROWS = 1 << 20
_CHUNK = 1 << 20  # bytes read from the archive at a time: no array is ever read twice into memory

# Temporary files of a save: a dot file (hidden from ls while it is written) named for its target. Files
# of the form <name>.<12 hex digits>.tmp are the same, as earlier versions named them.
_TMP = re.compile(r"\.(?P<name>.+)\.fastnn-[0-9a-f]{12}\.tmp")
_OLD_TMP = re.compile(r"(?P<name>.+)\.[0-9a-f]{12}\.tmp")
STALE_SECONDS = 3600

Path = Union[str, bytes, os.PathLike]


def save(model: Any, path: Path | IO[bytes]) -> None:
    """Write a Model to a file name (atomically, keeping an existing file's permissions) or an open file."""
    theta, history, meta = _contents(model)
    arrays = dict(theta=theta, loss_history=history, meta=np.array(meta))
    if hasattr(path, "write"):
        np.savez(path, **arrays)
        return
    path = os.fsdecode(os.fspath(path))
    target = os.path.realpath(path) if os.path.islink(path) else path  # a link keeps pointing at the model
    folder, name = os.path.split(os.path.abspath(target))
    _remove_stale(folder, name)
    mode = _mode(target)
    # At most 200 characters of the name, so that the temporary one fits where the name itself fits (255).
    tmp = os.path.join(folder, f".{name[:200]}.fastnn-{secrets.token_hex(6)}.tmp")
    try:
        # Created with the existing file's permissions (the umask may remove some: restored below), so a
        # private model is never readable by others, not even under the temporary name.
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0),
                     0o666 if mode is None else mode)
        with open(fd, "wb") as f:  # an open file: np.savez would otherwise append .npz to the name
            if mode is not None:
                os.chmod(tmp, mode)
            np.savez(f, **arrays)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, target)
    except BaseException as e:  # Ctrl-C and SystemExit too: no temporary file is left behind
        try:
            os.unlink(tmp)
        except OSError:
            pass
        if isinstance(e, OSError) and e.errno is not None:  # named by the user's path, not the temporary one
            raise OSError(e.errno, e.strerror, path) from None
        raise
    _sync(folder)


def _contents(model):
    """theta, loss_history and the metadata JSON of a model, refused if they could not be read back."""
    try:
        check.settings(model.settings)
    except (TypeError, ValueError) as e:
        raise ValueError(f"settings cannot be saved: {e}") from None
    theta = np.ascontiguousarray(model.theta)
    history = np.ascontiguousarray(model.loss_history, dtype=np.float64)
    if not np.isfinite(theta).all():
        bad = int(np.flatnonzero(~np.isfinite(theta))[0])
        raise ValueError(f"model has non-finite parameters (theta[{bad}] is {theta[bad]}): a model file must "
                         "load back as a usable model, so it is not written; save a model from before the "
                         "failure, or retrain with a smaller lr")
    if history.ndim != 2 or history.shape[1] != 2:
        raise ValueError(f"loss_history must have shape (m, 2) (pass, loss); got {history.shape}")
    if history.shape[0] > _history_rows(model.settings["passes"]):
        raise ValueError(f"loss_history has {history.shape[0]} rows, more than a model file holds "
                         f"({_history_rows(model.settings['passes'])} for {model.settings['passes']} passes)")
    if not np.isfinite(history).all():
        raise ValueError("loss_history is not finite: a model file must load back, so it is not written")
    meta = dict(format=FORMAT, n_features=model.n_features, n_classes=model.n_classes, dtype=theta.dtype.name,
                settings=model.settings)
    return theta, history, json.dumps(dict(meta, sha256=_digest(meta, theta, history)), default=_plain)


def _history_rows(passes):
    return min(check.MAX_PARAMETERS, passes + 1 + _HISTORY_ROWS)


def _mode(path):
    """The permission bits of an existing regular file at path, or None."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return stat.S_IMODE(st.st_mode) & 0o777 if stat.S_ISREG(st.st_mode) else None


def _remove_stale(folder, name):
    """Delete temporary files that a killed save left in folder, once they are STALE_SECONDS old."""
    now = time.time()
    try:
        entries = os.scandir(folder)
    except OSError:
        return  # the save itself will report the folder
    with entries:
        for entry in entries:
            old = _OLD_TMP.fullmatch(entry.name)
            if not (_TMP.fullmatch(entry.name) or (old and old["name"] == name)):
                continue
            try:
                info = entry.stat(follow_symlinks=False)
                if stat.S_ISREG(info.st_mode) and now - info.st_mtime > STALE_SECONDS:
                    os.unlink(entry.path)
            except OSError:
                pass  # gone already, or not ours to remove


def _sync(folder):
    """Make the rename durable (POSIX: fsync the folder); best effort."""
    if os.name != "posix":
        return
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _plain(value):
    """JSON for NumPy scalars in settings (an estimator may pass np.float64(0.01))."""
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"settings hold {type(value).__name__}, which a model file cannot store")


def _digest(meta, theta, history):
    """SHA-256 of the metadata (canonical JSON, without the digest), theta and loss_history bytes."""
    h = hashlib.sha256(json.dumps(meta, sort_keys=True, default=_plain).encode())
    for a in (theta, history):
        h.update(f"{a.dtype.str}{a.shape}".encode())
        h.update(_bytes(a))  # the array's own memory: no copy of a large theta
    return h.hexdigest()


def _bytes(a):
    return np.ascontiguousarray(a).reshape(-1).view(np.uint8)


def read(path: Path | IO[bytes]) -> tuple[np.ndarray, int, int, dict, np.ndarray]:
    """(theta, n_features, hidden, settings, loss_history) of a model file, every part checked.

    ValueError for a file that is not a valid model file (named by its path) or that holds a model too
    large for the memory available; FileNotFoundError and other OSErrors as open() raises them.
    """
    if isinstance(path, (str, bytes, os.PathLike)):
        with open(path, "rb") as file:  # a missing or unreadable file raises its own OSError here
            return _read(file, repr(os.fspath(path)))
    if not hasattr(path, "read"):
        raise TypeError(f"path must be a file name or an open binary file; got {type(path).__name__}")
    return _read(path, repr(path))


def _read(file, name):
    import zipfile

    try:
        start = file.read(4)
        file.seek(-len(start), os.SEEK_CUR)
        if start != b"PK\x03\x04":  # an .npz is a zip archive; anything else is not a model file
            raise ValueError(f"not an .npz archive (it starts with {start!r})")
        archive = zipfile.ZipFile(file)
    except Exception as e:
        raise _invalid(name, e) from None
    with archive:
        try:
            names = sorted(archive.namelist())
            if names != sorted(f"{a}.npy" for a in ARRAYS):
                raise ValueError(f"arrays {names}, expected {', '.join(a + '.npy' for a in ARRAYS)}")
            meta = _meta(archive)
            s = meta["settings"]
            d, h, k = meta["n_features"], s["hidden"], meta["n_classes"]
            size = reference.size(d, h, k)
            if size > check.MAX_PARAMETERS:
                raise ValueError(f"{size} parameters ({d} inputs, {h} hidden, {k} classes), more than "
                                 f"{check.MAX_PARAMETERS}")
            dtype = np.dtype(check.DTYPES[meta["dtype"]])
            theta_shape, _ = _header(archive, "theta", lambda shape, t: shape == (size,) and t == dtype,
                                  f"{meta['dtype']} and shape ({size},) ({d} inputs, {h} hidden, {k} classes)")
            rows = _history_rows(s["passes"])
            history_shape, _ = _header(archive, "loss_history",
                                    lambda shape, t: len(shape) == 2 and shape[1] == 2 and shape[0] <= rows
                                    and t == np.float64, f"float64 and shape (m <= {rows}, 2)")
        except Exception as e:
            raise _invalid(name, e) from None
        itemsize = dtype.itemsize
        check.memory(size * (itemsize + 1) + history_shape[0] * 2 * 9,
                     f"path {name} (a model of {size} parameters)", "load it on a machine with more memory")
        try:
            theta = _array(archive, "theta", theta_shape, dtype)
            history = _array(archive, "loss_history", history_shape, np.dtype(np.float64))
            if not (np.isfinite(theta).all() and np.isfinite(history).all()):
                raise ValueError("theta or loss_history is not finite")
            digest = meta.pop("sha256")
            if digest != _digest(meta, theta, history):
                raise ValueError("its contents do not match their SHA-256 (the file was altered or damaged)")
        except Exception as e:
            raise _invalid(name, e) from None
    return theta, d, h, s, history


def _meta(archive):
    """The metadata dict, read (at most 4 * _MAX_META bytes) and checked key by key."""
    shape, dtype = _header(archive, "meta", lambda shape, t: shape == () and t.kind == "U"
                           and t.itemsize <= 4 * _MAX_META, f"a string of at most {_MAX_META} characters")
    text = str(_array(archive, "meta", shape, dtype)[()])
    meta = json.loads(text)
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise ValueError(f"no {FORMAT} metadata")
    if set(meta) != set(META):
        raise ValueError(f"metadata keys {sorted(meta)}, expected {sorted(META)}")
    check.settings(meta["settings"])
    check.integer(meta["n_features"], "n_features")
    check.integer(meta["n_classes"], "n_classes", minimum=1 if meta["settings"]["output"] == "identity" else 2)
    if not isinstance(meta["dtype"], str) or meta["dtype"] not in check.DTYPES:
        raise ValueError(f"dtype {meta['dtype']!r:.30}, expected one of {list(check.DTYPES)}")
    return meta


def _open_npy(archive, name):
    """The member name.npy, opened, with its (shape, dtype, header length) read from its .npy header."""
    member = archive.open(name + ".npy")
    try:
        version = np.lib.format.read_magic(member)
        read = {(1, 0): np.lib.format.read_array_header_1_0, (2, 0): np.lib.format.read_array_header_2_0}
        if version not in read:
            raise ValueError(f"{name} has .npy version {version}")
        shape, fortran, dtype = read[version](member)
        if fortran and len(shape) > 1:
            raise ValueError(f"{name} is stored in Fortran order")
        return member, shape, dtype, member.tell()
    except BaseException:
        member.close()
        raise


def _header(archive, name, ok, expected):
    """(shape, dtype) from name's .npy header, if ok(shape, dtype) and the member's size is exactly the
    header plus that array's bytes (so a short or padded member is caught before reading it)."""
    member, shape, dtype, header = _open_npy(archive, name)
    member.close()
    if dtype.hasobject or (not dtype.isnative and dtype.kind != "U") or not ok(shape, dtype):
        raise ValueError(f"{name} has dtype {dtype} and shape {shape}; expected {expected}")
    nbytes = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    size = archive.getinfo(name + ".npy").file_size
    if size != header + nbytes:
        raise ValueError(f"{name} holds {size - header} bytes for an array of {nbytes}")
    return shape, dtype


def _array(archive, name, shape, dtype):
    """name's array, read chunk by chunk into its one allocation (shape and dtype checked by _header)."""
    member, _, _, _ = _open_npy(archive, name)
    with member:
        a = np.empty(shape, dtype)
        view = a.reshape(-1).view(np.uint8)
        at = 0
        while at < view.size:
            chunk = member.read(min(_CHUNK, view.size - at))
            if not chunk:
                raise ValueError(f"{name} ends after {at} of {view.size} bytes")
            view[at: at + len(chunk)] = np.frombuffer(chunk, np.uint8)
            at += len(chunk)
    return a


def _invalid(name, e):
    """One ValueError for any failure to parse a foreign file: that file's fault, named by its path."""
    return ValueError(f"path {name} is not a valid fastnn model file: {type(e).__name__}: {_one_line(e)}")


def _one_line(e):
    return " ".join(str(e).split())[:300]
