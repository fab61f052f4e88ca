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

import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from yaml.nodes import Node

from sidecar_injector.core.errors import InputError
from sidecar_injector.yamlio import emit
from sidecar_injector.yamlio.read import YAMLInputError, _Parser, head, parse, to_python
from sidecar_injector.yamlio.splice import TextEdit, Unsupported, apply_edits, check

EXTENSIONS = (".yaml", ".yml", ".json")


@dataclass(slots=True)
class Source:
    label: str
    text: str


@dataclass(slots=True)
class Doc:
    """One document: ``text`` is the part of the source it was parsed from (its node marks
    count from there), which starts at ``offset`` in the source."""

    source: Source
    index: int
    api_version: str
    kind: str
    label: str
    text: str
    offset: int
    _root: Node | None = None
    _value: Any = field(default=None)

    @property
    def root(self) -> Node:
        if self._root is None:  # a document read on the fast path: compose it now
            parsed = [d for d in parse(self.text, self.label) if d.root is not None]
            assert len(parsed) == 1 and parsed[0].root is not None
            self._root = parsed[0].root
        return self._root

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


#: kubectl's document separator (k8s.io/apimachinery's YAMLReader): a line that is ``---``
#: followed by nothing but blanks or a comment.
_SEPARATOR = re.compile(r"^---[ \t]*(?:#[^\n]*)?\r?$", re.M)
#: The top-level ``apiVersion``/``kind`` lines of a block-mapping document, read without a
#: parse (the fast path for documents that carry no pods).
_TOP_KIND = re.compile(r"^kind:[ \t]*([A-Za-z0-9]+)[ \t]*(?:#[^\n]*)?\r?$", re.M)
_TOP_API = re.compile(r"^apiVersion:[ \t]*([A-Za-z0-9./-]+)[ \t]*(?:#[^\n]*)?\r?$", re.M)
_KIND_LINES = re.compile(r"^kind:", re.M)
_BLOCK_START = re.compile(r"\A(?:[ \t]*(?:#[^\n]*)?\r?\n)*[A-Za-z]")


def chunks(text: str) -> list[tuple[int, int]]:
    """``(start, end)`` of the parts of ``text`` between kubectl's document separators."""
    out: list[tuple[int, int]] = []
    pos = 0
    for m in _SEPARATOR.finditer(text):
        out.append((pos, m.start()))
        pos = m.end() + 1 if m.end() < len(text) else m.end()
    out.append((pos, len(text)))
    return out


def _fast_head(part: str) -> tuple[str, str] | None:
    """``(apiVersion, kind)`` when the part is plainly one block-mapping document of a kind
    without pods, so that only a syntax check is needed; ``None``: parse it fully."""
    if not _BLOCK_START.match(part):
        return None
    kinds = _KIND_LINES.findall(part)
    if len(kinds) != 1:
        return None
    k = _TOP_KIND.search(part)
    a = _TOP_API.search(part)
    if k is None or a is None or len(_TOP_API.findall(part)) != 1:
        return None
    kind = k.group(1)
    if kind in POD_KINDS or kind.endswith("List"):
        return None
    return a.group(1), kind


#: Kinds that carry pods (the fast path never skips them).
POD_KINDS = frozenset({"Pod", "Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "ReplicationController",
                       "Job", "CronJob"})


def documents(source: Source, convert_all: bool = False) -> list[Doc]:
    """The non-empty documents of a source; each must be a Kubernetes object.

    The source is cut at kubectl's separators first; a part that is plainly a document of a
    kind without pods is only checked for YAML syntax (libyaml, without building nodes),
    unless ``convert_all``; the others are parsed into nodes with their positions.
    """
    out: list[Doc] = []
    text = source.text
    index = 0
    for start, end in chunks(text):
        part = text[start:end]
        if not part.strip():
            index += 1
            continue
        fast = None if convert_all else _fast_head(part)
        if fast is not None:
            index += 1
            try:
                _Parser(part).raw_parse()
            except yaml.YAMLError as e:
                mark = getattr(e, "problem_mark", None)
                line = text.count("\n", 0, start) + (mark.line if mark else 0)
                where = f" (line {line + 1}, column {mark.column + 1})" if mark else ""
                raise InputError(f"{source.label}: not valid YAML{where}: {getattr(e, 'problem', None) or e}") from None
            out.append(Doc(source, index, fast[0], fast[1], f"{source.label}, document {index}", part, start))
            continue
        try:
            parsed = parse(part, source.label)
        except YAMLInputError as e:
            raise InputError(_shift_lines(str(e), text.count("\n", 0, start))) from None
        for d in parsed:
            index += 1
            if d.root is None:
                continue
            label = f"{source.label}, document {index}"
            api, kind = head(d.root)
            if api is None or kind is None:
                raise InputError(f"{label}: not a Kubernetes object (a mapping with apiVersion and kind)")
            out.append(Doc(source, index, api, kind, label, part, start, d.root))
    return out


def _shift_lines(message: str, lines: int) -> str:
    """A parse error's line number counted from the start of the source, not of the part."""
    if not lines:
        return message
    return re.sub(r"\(line (\d+),", lambda m: f"(line {int(m.group(1)) + lines},", message, count=1)


class Rewrite:
    """A source's text with some documents edited in place (or, failing that, rewritten whole)."""

    def __init__(self, source: Source) -> None:
        self.source = source
        self.parts: list[tuple[int, int, str]] = []
        self.notes: list[str] = []

    def edit(self, doc: Doc, edits: list[TextEdit] | None, expected: Any, why: str = "") -> None:
        """Replace ``doc`` by its text with ``edits``, checked to read back as ``expected``."""
        text = doc.text
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
        self.parts.append((doc.offset + start, doc.offset + end, new))

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
