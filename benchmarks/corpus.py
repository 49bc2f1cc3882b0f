"""A larger corpus from documentation already on every machine: the docstrings of Python's
standard library and of NumPy and SciPy (installed with sentence-transformers)."""

import contextlib
import importlib
import inspect
import io
import pkgutil
import sys
import warnings
from collections.abc import Iterator

from services.retrieval.schemas import DocumentIn

SKIP = {"antigravity", "this", "idlelib", "tkinter", "turtle", "turtledemo", "test"}


def _module_text(name: str) -> str:
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            module = importlib.import_module(name)
    except Exception:  # any module that cannot be imported here simply is not in the corpus
        return ""
    parts = [inspect.getdoc(module) or ""]
    for attr, obj in sorted(vars(module).items()):
        if attr.startswith("_") or getattr(obj, "__module__", None) != name:
            continue
        if (inspect.isfunction(obj) or inspect.isclass(obj)) and (doc := inspect.getdoc(obj)):
            parts.append(f"## {attr}\n\n{doc}")
    return "\n\n".join(p for p in parts if p.strip())


def _module_names() -> Iterator[str]:
    yield from (m for m in sorted(sys.stdlib_module_names) if not m.startswith("_") and m not in SKIP)
    for package in ("numpy", "scipy"):
        root = importlib.import_module(package)
        for info in pkgutil.walk_packages(root.__path__, f"{package}."):
            if "._" not in info.name and ".tests" not in info.name:
                yield info.name


def docstring_corpus(min_chars: int = 300) -> list[DocumentIn]:
    documents = []
    for name in _module_names():
        text = _module_text(name)
        if len(text) >= min_chars:
            documents.append(DocumentIn(id=name, text=f"# {name}\n\n{text}", metadata={"module": name}))
    return documents
