"""Run one training on K processes with ``torchrun`` and hand the result back to the calling process.

``robustlib.experiment.train`` uses this when ``ROBUSTLIB_GPUS`` = K > 1 (``python -m robustlib reproduce --gpus K`` sets it for
every notebook): the model, method, data and configuration are saved to ``<out_dir>/spec.pt``, K worker processes
(``python -m robustlib.launch <spec>``) train data-parallel and rank 0 writes the checkpoint, and the caller then
opens the finished checkpoint with an ordinary Trainer whose configuration says ``data_shards=K`` — the
single-process equivalent of the K-process run (see :mod:`robustlib.distributed`).

**The spec file runs no code when it is read.** It is not a pickle of the objects: :func:`save_spec` writes a tree
of plain data — ``None``/bool/int/float/str, lists of them, tensors — that ``torch.load(path, weights_only=True)``
reads, and :func:`load_spec` rebuilds the objects from that tree. An object is stored as the import path of its
class (``module:qualname``) and its attributes (``__getstate__``); it is rebuilt with ``object.__new__(cls)`` and
``__setstate__`` (or its ``__dict__``), so no constructor and nothing named in the file is ever called. Classes and
functions may only come from the packages in :data:`TRUSTED_PACKAGES` (robustlib, torch, torchvision); tensors,
parameters, dtypes, devices, numpy arrays, paths, enums, ``functools.partial`` and bound methods have their own
entries. :func:`save_spec` refuses, naming the attribute, what it cannot store this way (a lambda, a class defined
in a notebook, an object with a custom ``__reduce__``); :func:`load_spec` refuses a file holding any pickled object
(``weights_only`` loading fails on it) or naming a class outside the trusted packages.
"""
from __future__ import annotations

import collections
import dataclasses
import enum
import functools
import importlib
import os
import pathlib
import pickle
import subprocess
import sys
import types
from collections import OrderedDict
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn as nn

from .errors import RobustlibError

SPEC_FORMAT = "robustlib.launch.spec/1"
#: Top-level packages whose classes and functions a spec may name.
TRUSTED_PACKAGES = ("robustlib", "torch", "torchvision")

_PRIMITIVES = (type(None), bool, int, float, str)
_PATHS = {c.__name__: c for c in (pathlib.Path, pathlib.PosixPath, pathlib.WindowsPath, pathlib.PurePath,
                                   pathlib.PurePosixPath, pathlib.PureWindowsPath)}
_FUNCTIONS = (types.FunctionType, types.BuiltinFunctionType, types.MethodDescriptorType, types.WrapperDescriptorType)


class LaunchError(RobustlibError):
    """The multi-process training failed, or its spec file could not be written or read safely."""


def spawn(model, method, data, config, out_dir: str | Path, nproc: int, device: str = "auto", selector=None,
          name: str | None = None, timeout: float | None = None):
    """Train on ``nproc`` processes; returns the config to reopen the result with (``data_shards=nproc``)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    config = dataclasses.replace(config, data_shards=nproc)
    spec = out_dir / "spec.pt"
    save_spec(spec, {"model": model, "method": method, "data": data, "config": config, "selector": selector,
                     "device": str(device), "name": name, "out_dir": str(out_dir)})
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}",
           "-m", "robustlib.launch", str(spec)]
    env = {**os.environ, "ROBUSTLIB_GPUS": "1", "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        raise LaunchError(f"{nproc}-process training failed (exit {proc.returncode}):\n{proc.stderr[-4000:]}")
    return config


# ------------------------------------------------------------------------------------------------ the spec file


def save_spec(path: str | Path, spec: dict[str, Any]) -> None:
    """Write ``spec`` (a dict of objects) to ``path`` as plain data and tensors (see the module docstring)."""
    enc = _Encoder()
    tree = {k: enc(v, k) for k, v in spec.items()}
    torch.save({"format": SPEC_FORMAT, "spec": tree}, path)


def load_spec(path: str | Path) -> dict[str, Any]:
    """Read a spec written by :func:`save_spec` with ``torch.load(weights_only=True)`` and rebuild its objects.

    Raises :class:`LaunchError` for a file holding pickled objects (refused by ``weights_only``), for a file of
    another format, and for a spec naming a class or function outside :data:`TRUSTED_PACKAGES`."""
    try:
        raw = torch.load(path, weights_only=True)
    except pickle.UnpicklingError as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise LaunchError(f"refusing to load the launch spec {path}: it holds pickled objects, which could run code "
                          f"when loaded; a spec holds only plain data and tensors (written by "
                          f"robustlib.launch.save_spec). torch: {first}") from None
    if not isinstance(raw, dict) or raw.get("format") != SPEC_FORMAT or not isinstance(raw.get("spec"), dict):
        raise LaunchError(f"{path} is not a launch spec of format {SPEC_FORMAT!r} (written by "
                          f"robustlib.launch.save_spec)")
    dec = _Decoder()
    try:
        return {k: dec(v, k) for k, v in raw["spec"].items()}
    except (KeyError, TypeError, ValueError) as e:
        raise LaunchError(f"{path}: malformed launch spec ({type(e).__name__}: {e})") from None


def _trusted(module: str | None) -> bool:
    return bool(module) and module.split(".")[0] in TRUSTED_PACKAGES


def _resolve(ref: str, what: str):
    """The object at ``module:qualname`` (a trusted module only)."""
    module, _, qual = ref.partition(":")
    if not _trusted(module) or not qual or "<" in qual:
        raise LaunchError(f"launch spec: {what} names {ref!r}; only classes and functions of the packages "
                          f"{', '.join(TRUSTED_PACKAGES)} may be named")
    try:
        obj = importlib.import_module(module)
        for part in qual.split("."):
            obj = getattr(obj, part)
    except (ImportError, AttributeError) as e:
        raise LaunchError(f"launch spec: {what} names {ref!r}, which does not exist here ({e})") from None
    if not _trusted(getattr(obj, "__module__", None)):  # e.g. "torch:os.system" reaches os through torch
        raise LaunchError(f"launch spec: {what} names {ref!r}, which is defined in "
                          f"{getattr(obj, '__module__', None)!r}; only classes and functions of the packages "
                          f"{', '.join(TRUSTED_PACKAGES)} may be named")
    return obj


class _Encoder:
    """Object → plain-data tree. Every non-primitive gets a number so that shared objects stay shared."""

    def __init__(self):
        self.memo: dict[int, int] = {}
        self.keep: list = []  # the originals stay alive while encoding, so their ids stay unique

    def _new(self, obj, node: dict) -> dict:
        self.memo[id(obj)] = node["n"] = len(self.keep)
        self.keep.append(obj)
        return node

    def _ref(self, obj, where: str, what: str | None = None) -> str:
        module = getattr(obj, "__module__", None)
        names = [q for q in (getattr(obj, "__qualname__", None), getattr(obj, "__name__", None)) if q]
        if not _trusted(module) or not names or "<" in names[0]:
            raise LaunchError(
                f"cannot send {where} = {what or repr(obj)} to the worker processes: only classes and functions of "
                f"the packages "
                f"{', '.join(TRUSTED_PACKAGES)}, defined at module level, can travel (not lambdas, local functions "
                f"or classes defined in a notebook); define it in robustlib or keep ROBUSTLIB_GPUS=1")
        for q in names:  # torch's C functions (torch.relu) import back by __name__, not by __qualname__
            ref = f"{module}:{q}"
            try:
                if _resolve(ref, where) is obj:
                    return ref
            except LaunchError:
                pass
        raise LaunchError(f"cannot send {where} = {obj!r} to the worker processes: {module}:{names[0]} does not "
                          f"import back to the same object")

    def __call__(self, obj, where: str):
        t = type(obj)
        if t in _PRIMITIVES:
            return obj
        if id(obj) in self.memo:
            return {"~": "ref", "n": self.memo[id(obj)]}
        if t in (torch.Tensor, nn.Parameter):
            return self._new(obj, {"~": "tensor", "v": obj})
        if t in (list, tuple, set, frozenset):
            node = self._new(obj, {"~": t.__name__})
            node["items"] = [self(v, f"{where}[{i}]") for i, v in enumerate(obj)]
            return node
        if t in (dict, OrderedDict):
            node = self._new(obj, {"~": "dict", "ordered": t is OrderedDict})
            node["items"] = [[self(k, f"{where} key"), self(v, f"{where}[{k!r}]")] for k, v in obj.items()]
            return node
        if t is collections.deque:
            node = self._new(obj, {"~": "deque", "maxlen": obj.maxlen})
            node["items"] = [self(v, f"{where}[{i}]") for i, v in enumerate(obj)]
            return node
        if t is complex:
            return {"~": "complex", "re": obj.real, "im": obj.imag}
        if t is bytes:
            return {"~": "bytes", "v": list(obj)}
        if t is torch.dtype:
            return {"~": "dtype", "v": str(obj).removeprefix("torch.")}
        if t is torch.device:
            return {"~": "device", "v": str(obj)}
        if t is torch.Size:
            return {"~": "size", "v": list(obj)}
        if t is slice:
            return {"~": "slice", "v": [self(obj.start, where), self(obj.stop, where), self(obj.step, where)]}
        if t is range:
            return {"~": "range", "v": [obj.start, obj.stop, obj.step]}
        if t is np.ndarray:
            if obj.dtype.kind in "biufc":
                return self._new(obj, {"~": "ndarray", "dtype": obj.dtype.str,
                                       "v": torch.from_numpy(np.ascontiguousarray(obj))})
            if obj.dtype.kind in "US":
                return self._new(obj, {"~": "ndarray", "dtype": obj.dtype.str, "shape": list(obj.shape),
                                       "items": obj.ravel().tolist()})
            raise LaunchError(f"cannot send {where}: a numpy array of dtype {obj.dtype} (numeric, bool and string "
                              f"arrays can travel)")
        if isinstance(obj, np.generic) and obj.dtype.kind in "biufc":
            return {"~": "npscalar", "dtype": obj.dtype.str, "v": obj.item()}
        if t.__name__ in _PATHS and _PATHS[t.__name__] is t:
            return {"~": "path", "cls": t.__name__, "v": str(obj)}
        if isinstance(obj, type) or isinstance(obj, _FUNCTIONS):
            return {"~": "global", "ref": self._ref(obj, where)}
        if isinstance(obj, enum.Enum):
            return {"~": "enum", "cls": self._ref(t, where), "name": obj.name}
        if t is functools.partial:
            node = self._new(obj, {"~": "partial"})
            node.update(func=self(obj.func, f"{where}.func"), args=self(list(obj.args), f"{where}.args"),
                        keywords=self(dict(obj.keywords), f"{where}.keywords"))
            return node
        if t is types.MethodType:
            return {"~": "method", "self": self(obj.__self__, f"{where}.__self__"), "name": obj.__func__.__name__}
        return self._object(obj, where)

    def _object(self, obj, where: str) -> dict:
        t = type(obj)
        cls = self._ref(t, where, f"an instance of {t.__module__}.{t.__qualname__}")
        custom = [m for m in ("__reduce_ex__", "__reduce__") if getattr(t, m) is not getattr(object, m)]
        custom += [m for m in ("__getnewargs_ex__", "__getnewargs__") if hasattr(t, m)]
        if custom or t.__new__ is not object.__new__:
            raise LaunchError(f"cannot send {where} (a {cls}) to the worker processes: its class defines "
                              f"{', '.join(custom) or '__new__'}, so it cannot be rebuilt from its attributes alone")
        node = self._new(obj, {"~": "object", "cls": cls})
        state = obj.__getstate__()
        if isinstance(state, tuple) and len(state) == 2:  # (__dict__ or None, {slot: value})
            node["slots"] = self(state[1] or {}, f"{where} slots")
            state = state[0]
        state = state if state is not None else {}
        if type(state) is dict:  # attributes: name them obj.attr in errors
            node["state"] = self._new(state, {"~": "dict", "ordered": False, "items": [
                [k, self(v, f"{where}.{k}")] for k, v in state.items()]})
        else:
            node["state"] = self(state, where)
        return node


class _Decoder:
    """Plain-data tree → objects; imports trusted modules only and calls no constructor."""

    def __init__(self):
        self.memo: dict[int, Any] = {}

    def __call__(self, node, where: str):
        if type(node) in _PRIMITIVES:
            return node
        if type(node) is not dict or not isinstance(node.get("~"), str):
            raise LaunchError(f"launch spec: unexpected entry at {where}: {type(node).__name__}")
        tag, n = node["~"], node.get("n")
        if tag == "ref":
            if n not in self.memo:
                raise LaunchError(f"launch spec: {where} refers to object #{n}, which is not (yet) defined")
            return self.memo[n]
        if tag == "tensor":
            return self._keep(n, node["v"])
        if tag in ("list", "set"):
            out = self._keep(n, list() if tag == "list" else set())
            for i, v in enumerate(node["items"]):
                (out.append if tag == "list" else out.add)(self(v, f"{where}[{i}]"))
            return out
        if tag in ("tuple", "frozenset"):
            items = [self(v, f"{where}[{i}]") for i, v in enumerate(node["items"])]
            return self._keep(n, tuple(items) if tag == "tuple" else frozenset(items))
        if tag == "dict":
            out = self._keep(n, OrderedDict() if node["ordered"] else {})
            for k, v in node["items"]:
                key = self(k, f"{where} key")
                out[key] = self(v, f"{where}[{key!r}]")
            return out
        if tag == "deque":
            out = self._keep(n, collections.deque(maxlen=node["maxlen"]))
            out.extend(self(v, f"{where}[{i}]") for i, v in enumerate(node["items"]))
            return out
        if tag == "complex":
            return complex(node["re"], node["im"])
        if tag == "bytes":
            return bytes(node["v"])
        if tag == "dtype":
            dt = getattr(torch, node["v"], None)
            if not isinstance(dt, torch.dtype):
                raise LaunchError(f"launch spec: {where}: unknown torch dtype {node['v']!r}")
            return dt
        if tag == "device":
            return torch.device(node["v"])
        if tag == "size":
            return torch.Size(node["v"])
        if tag == "slice":
            return slice(*(self(v, where) for v in node["v"]))
        if tag == "range":
            return range(*node["v"])
        if tag == "ndarray":
            dtype = np.dtype(node["dtype"])
            if "v" in node:
                return self._keep(n, node["v"].numpy().astype(dtype, copy=False))
            return self._keep(n, np.array(node["items"], dtype=dtype).reshape(node["shape"]))
        if tag == "npscalar":
            return np.dtype(node["dtype"]).type(node["v"])
        if tag == "path":
            if node["cls"] not in _PATHS:
                raise LaunchError(f"launch spec: {where}: unknown path class {node['cls']!r}")
            return _PATHS[node["cls"]](node["v"])
        if tag == "global":
            obj = _resolve(node["ref"], where)
            if not (isinstance(obj, type) or isinstance(obj, _FUNCTIONS)):
                raise LaunchError(f"launch spec: {where} names {node['ref']!r}, which is not a class or function")
            return obj
        if tag == "enum":
            cls = _resolve(node["cls"], where)
            if not (isinstance(cls, type) and issubclass(cls, enum.Enum)):
                raise LaunchError(f"launch spec: {where} names {node['cls']!r}, which is not an Enum")
            return cls[node["name"]]
        if tag == "partial":
            func = self(node["func"], f"{where}.func")
            if not callable(func):
                raise LaunchError(f"launch spec: {where}: partial of a non-callable")
            out = functools.partial(func, *self(node["args"], f"{where}.args"),
                                    **self(node["keywords"], f"{where}.keywords"))
            return self._keep(n, out)
        if tag == "method":
            return getattr(self(node["self"], f"{where}.__self__"), node["name"])
        if tag == "object":
            return self._object(node, where)
        raise LaunchError(f"launch spec: unknown entry kind {tag!r} at {where}")

    def _keep(self, n, obj):
        if n is not None:
            self.memo[n] = obj
        return obj

    def _object(self, node: dict, where: str):
        cls = _resolve(node["cls"], where)
        if not isinstance(cls, type) or cls.__new__ is not object.__new__:
            raise LaunchError(f"launch spec: {where} names {node['cls']!r}, which is not a plain class")
        obj = self._keep(node.get("n"), object.__new__(cls))
        state = self(node["state"], where)
        slots = self(node["slots"], f"{where} slots") if "slots" in node else {}
        if hasattr(cls, "__setstate__"):                    # as pickle does
            obj.__setstate__((state or None, slots) if "slots" in node else state)
        elif not isinstance(state, dict) or not isinstance(slots, dict):
            raise LaunchError(f"launch spec: {where}: the attributes of a {node['cls']} must be a dict")
        else:
            if state:
                obj.__dict__.update(state)
            for k, v in slots.items():
                object.__setattr__(obj, k, v)
        return obj


def main(argv: list[str] | None = None) -> int:
    from .training import Trainer
    argv = sys.argv[1:] if argv is None else argv
    spec = load_spec(argv[0])
    trainer = Trainer(spec["model"], spec["method"], spec["data"], spec["config"], out_dir=spec["out_dir"],
                      device=spec["device"], selector=spec["selector"], name=spec["name"], progress_bar=False)
    res = trainer.fit()
    if trainer.rank == 0:
        print(f"[launch] {trainer.world} processes, {res.epochs} epochs, {res.train_seconds:.1f} s, "
              f"{res.passes_per_sample:.1f} N per sample")
    torch.distributed.destroy_process_group()
    return 0


if __name__ == "__main__":
    sys.exit(main())
