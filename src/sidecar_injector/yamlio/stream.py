"""Input streams as kubectl takes them (``-f`` files, ``-``, directories), and their documents.

- ``-f DIR`` reads the directory's ``*.yaml``, ``*.yml`` and ``*.json`` files in name order
  (``-R``: and its subdirectories, walked as kubectl walks them: each directory's entries in
  name order); ``-`` is stdin. Bytes are decoded as UTF-8 and never newline-translated, so
  CRLF files keep their CRLFs.
- Each source is parsed once by libyaml (:mod:`.read`); a document is converted to Python
  only when it is needed (a pod-bearing kind, or ``-o json``): the others are passed through
  as text, which is both faithful and fast.
- :class:`Rewrite` collects per-document replacements of a source and writes the source with
  them, everything else byte for byte.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from yaml.nodes import Node

from sidecar_injector.core.errors import InputError
from sidecar_injector.yamlio import emit
from sidecar_injector.yamlio.read import YAMLInputError, head, parse, to_python
from sidecar_injector.yamlio.splice import TextEdit, Unsupported, apply_edits, check

EXTENSIONS = (".yaml", ".yml", ".json")


@dataclass(slots=True)
class Source:
    label: str
    text: str


@dataclass(slots=True)
class Doc:
    source: Source
    index: int
    root: Node
    api_version: str
    kind: str
    label: str
    _value: Any = field(default=None)

    @property
    def start(self) -> int:
        return int(self.root.start_mark.index)

    @property
    def end(self) -> int:
        return int(self.root.end_mark.index)

    def value(self) -> Any:
        if self._value is None:
            try:
                self._value = to_python(self.root)
            except ValueError as e:
                raise InputError(f"{self.label}: {e}") from None
        return self._value


def _decode(data: bytes, label: str) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise InputError(f"{label}: cannot read: not UTF-8: {e}") from None


def _walk(directory: Path, recursive: bool) -> list[Path]:
    out: list[Path] = []
    for entry in sorted(directory.iterdir(), key=lambda p: p.name):
        if entry.is_dir():
            if recursive:
                out.extend(_walk(entry, recursive))
        elif entry.suffix in EXTENSIONS and entry.is_file():
            out.append(entry)
    return out


def read_sources(names: list[str], recursive: bool = False) -> list[Source]:
    sources: list[Source] = []
    for name in names:
        if name == "-":
            sources.append(Source("stdin", _decode(sys.stdin.buffer.read(), "stdin")))
            continue
        path = Path(name)
        try:
            if path.is_dir():
                files = _walk(path, recursive)
                if not files:
                    raise InputError(f"{name}: no {', '.join('*' + e for e in EXTENSIONS)} files in the directory"
                                     + ("" if recursive else " (-R reads its subdirectories too)"))
                sources.extend(Source(str(f), _decode(f.read_bytes(), str(f))) for f in files)
            else:
                sources.append(Source(name, _decode(path.read_bytes(), name)))
        except OSError as e:
            raise InputError(f"{name}: cannot read: {e}") from None
    return sources


def documents(source: Source) -> list[Doc]:
    """The non-empty documents of a source; each must be a Kubernetes object."""
    try:
        parsed = parse(source.text, source.label)
    except YAMLInputError as e:
        raise InputError(str(e)) from None
    out: list[Doc] = []
    for d in parsed:
        if d.root is None:
            continue
        label = f"{source.label}, document {d.index}"
        api, kind = head(d.root)
        if api is None or kind is None:
            raise InputError(f"{label}: not a Kubernetes object (a mapping with apiVersion and kind)")
        out.append(Doc(source, d.index, d.root, api, kind, label))
    return out


class Rewrite:
    """A source's text with some documents edited in place (or, failing that, rewritten whole)."""

    def __init__(self, source: Source) -> None:
        self.source = source
        self.parts: list[tuple[int, int, str]] = []
        self.notes: list[str] = []

    def edit(self, doc: Doc, edits: list[TextEdit] | None, expected: Any, why: str = "") -> None:
        """Replace ``doc`` by its text with ``edits``, checked to read back as ``expected``."""
        text = self.source.text
        start, end = doc.start, doc.end
        new: str | None = None
        if edits is not None:
            try:
                new = apply_edits(text[start:end], edits, start)
            except Unsupported as e:
                why, new = str(e), None
            if new is not None and not check(new, expected):
                why, new = "the edited text did not read back as the injected object", None
        if new is None:
            nl = "\r\n" if "\r\n" in text[start:end] else "\n"
            new = emit.document(expected, emit.Style(newline=nl))
            if not text[start:end].endswith(("\n", "\r")):
                new = new.rstrip("\r\n")
            self.notes.append(f"{doc.label}: written whole, comments and layout not kept ({why})")
        self.parts.append((start, end, new))

    def text(self) -> str:
        if not self.parts:
            return self.source.text
        out: list[str] = []
        pos = 0
        text = self.source.text
        for start, end, new in sorted(self.parts):
            out.append(text[pos:start])
            out.append(new)
            pos = end
        out.append(text[pos:])
        return "".join(out)


def join(texts: list[str]) -> str:
    """Several sources as one stream: ``---`` between them (as kubectl would read them)."""
    out: list[str] = []
    for i, t in enumerate(texts):
        if i and out:
            prev = out[-1]
            if prev and not prev.endswith("\n"):
                out.append("\n")
            if not t.lstrip().startswith("---"):
                out.append("---\n")
        out.append(t)
    return "".join(out)
