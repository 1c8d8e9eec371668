"""The real `metaapi-cloud-sdk`'s source, read from its wheel without installing it (the extra is optional
and the tests never run the SDK: it would reach the cloud).

`pip download --no-deps metaapi-cloud-sdk` fetches the pure-Python wheel, and `ast` reads the classes,
method signatures, model docstrings and exception names the source and the fake rely on. The wheel is
cached in the temp dir (or $METAAPI_WHEEL_CACHE). Without network the check is skipped loudly, and fails
when CI=true: CI must not silently stop checking the fake against the real SDK.
"""

from __future__ import annotations

import ast
import functools
import os
import subprocess
import sys
import tempfile
import zipfile
from itertools import pairwise
from pathlib import Path

import pytest

PACKAGE = "metaapi-cloud-sdk"
ROOT = "metaapi_cloud_sdk/"


def _cache_dir() -> Path:
    return Path(os.environ.get("METAAPI_WHEEL_CACHE") or tempfile.gettempdir()) / "mt5-monitor-metaapi-wheel"


def _download(dest: Path) -> Path:
    wheels = sorted(dest.glob("*.whl"))
    if wheels:
        return wheels[-1]
    dest.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=dest) as tmp:  # then rename: a concurrent run never sees half a file
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:"]
        cmd += ["--disable-pip-version-check", "-q", PACKAGE, "-d", tmp]
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=180, check=False)
        got = sorted(Path(tmp).glob("*.whl"))
        if done.returncode != 0 or not got:
            raise RuntimeError(
                f"pip download {PACKAGE} failed ({done.returncode}): {done.stderr.strip()[-500:]}"
            )
        target = dest / got[-1].name
        os.replace(got[-1], target)
        return target


@functools.cache
def _sources_or_error() -> dict[str, ast.Module] | str:
    try:
        wheel = _download(_cache_dir())
        with zipfile.ZipFile(wheel) as z:
            names = [n for n in z.namelist() if n.startswith(ROOT) and n.endswith(".py") and "test" not in n]
            return {n[len(ROOT) :]: ast.parse(z.read(n).decode("utf-8")) for n in names}
    except (OSError, RuntimeError, subprocess.SubprocessError, zipfile.BadZipFile, SyntaxError) as e:
        return f"{type(e).__name__}: {e}"


def sdk_modules() -> dict[str, ast.Module]:
    """Every module of the real SDK by its path under `metaapi_cloud_sdk/`; skips (fails when CI=true)."""
    got = _sources_or_error()
    if isinstance(got, str):
        reason = f"cannot read the real {PACKAGE} package, the fake SDK left UNCHECKED: {got}"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(reason)
        print(f"\nWARNING: {reason}", file=sys.stderr)
        pytest.skip(reason)
    return got


def sdk_class(path: str, name: str) -> ast.ClassDef:
    module = sdk_modules()[path]
    for node in module.body:
        if isinstance(node, ast.ClassDef) and node.name == name:
            return node
    raise AssertionError(f"{name} is no longer in {ROOT}{path}")


def methods(cls: ast.ClassDef) -> dict[str, ast.FunctionDef | ast.AsyncFunctionDef]:
    return {n.name: n for n in cls.body if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef)}


def field_docs(cls: ast.ClassDef) -> dict[str, str]:
    """A TypedDict's fields and the docstring under each."""
    out: dict[str, str] = {}
    body = cls.body
    for field, doc in pairwise(body):
        if isinstance(field, ast.AnnAssign) and isinstance(field.target, ast.Name):
            if (
                isinstance(doc, ast.Expr)
                and isinstance(doc.value, ast.Constant)
                and type(doc.value.value) is str
            ):
                out[field.target.id] = doc.value.value
            else:
                out[field.target.id] = ""
    return out
