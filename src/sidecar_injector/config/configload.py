"""Loading SidecarConfig documents from disk: a file, or a directory as a ConfigMap mounts it.

A mounted ConfigMap directory holds the visible keys (``envoy.yaml``) as symlinks into a
hidden timestamped folder via ``..data``; we read the visible ``*.yaml``/``*.yml`` entries at
the top only, sorted by name, never the hidden copies. :func:`fingerprint` hashes what would
be read, so a poller sees a ConfigMap update (an atomic ``..data`` symlink swap) that
inotify on the files themselves would miss.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import yaml

from sidecar_injector.config.apiconfig import parse_documents
from sidecar_injector.config.schema import DEFAULT_KUBE_VERSION, pod_schema
from sidecar_injector.core.config import DEFAULT_PREFIX, ConfigSet
from sidecar_injector.core.errors import ConfigError

BUILTIN_EXAMPLE = Path(__file__).parent.parent / "builtin" / "example.yaml"


def config_files(path: str | Path) -> list[Path]:
    """The files a config path stands for, in load order."""
    p = Path(path)
    if p.is_dir():
        files = sorted(
            f for f in p.iterdir()
            if not f.name.startswith(".") and f.suffix in (".yaml", ".yml") and f.is_file()
        )
        if not files:
            raise ConfigError(f"{p}: no *.yaml or *.yml files in this directory")
        return files
    if p.is_file():
        return [p]
    raise ConfigError(f"{p}: no such file or directory")


class _NoAliasLoader(yaml.SafeLoader):
    """SafeLoader refusing YAML aliases (``*name``) in config files.

    An alias bomb (a few lines whose aliases expand to billions of nodes) is shared in memory
    but every walk over the config (validation, template compilation) expands it: seconds of a
    stalled event loop and a log line of hundreds of MB. Configs have no need for aliases.
    """

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()  # type: ignore[no-untyped-call]
            raise yaml.composer.ComposerError(
                None, None, "YAML aliases (*name) are not allowed in SidecarConfig files", event.start_mark
            )
        return super().compose_node(parent, index)


def read_documents(path: str | Path) -> list[tuple[str, Any]]:
    """``(source, document)`` for every YAML document under ``path``; source names file and index."""
    docs: list[tuple[str, Any]] = []
    for f in config_files(path):
        try:
            text = f.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as e:
            raise ConfigError(f"{f}: cannot read: {e}") from None
        try:
            loaded = list(yaml.load_all(text, Loader=_NoAliasLoader))
        except yaml.YAMLError as e:
            mark = getattr(e, "problem_mark", None)
            where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
            problem = getattr(e, "problem", None) or str(e).splitlines()[0]
            raise ConfigError(f"{f}: not valid YAML{where}: {problem}") from None
        for i, doc in enumerate(loaded, start=1):
            docs.append((f"{f}, document {i}", doc))
    return docs


def load_configs(
    path: str | Path,
    *,
    prefix: str = DEFAULT_PREFIX,
    kube_version: str = DEFAULT_KUBE_VERSION,
    validate: bool = True,
) -> ConfigSet:
    """Read and fully validate the configs under ``path``; raises ConfigError on any problem."""
    schema = pod_schema(kube_version) if validate else None
    configs = parse_documents(read_documents(path), prefix=prefix, schema=schema)  # both kinds (apiconfig)
    if not configs.configs:
        raise ConfigError(f"{path}: no SidecarConfig documents")
    return configs


def fingerprint(path: str | Path) -> str:
    """A content hash of what :func:`load_configs` would read (for reload polling)."""
    h = hashlib.sha256()
    try:
        for f in config_files(path):
            h.update(f.name.encode() + b"\0")
            h.update(f.read_bytes())
            h.update(b"\0")
    except (ConfigError, OSError) as e:
        h.update(f"error:{e}".encode())
    return h.hexdigest()
