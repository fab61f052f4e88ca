"""Reload the config and the serving certificate when their files change, by polling.

Mounted ConfigMaps and Secrets change by an atomic swap of a ``..data`` symlink, which
inotify on the files themselves misses; a content hash read every few seconds does not
(controller-runtime's certwatcher also falls back to a 10 s poll). A broken new config or
certificate is logged and counted, and the last good one stays in force; the next poll
tries again only if the content changed once more.

Loading runs in a worker thread so that the event loop keeps answering meanwhile (YAML
parsing and schema validation of a large config take tens of milliseconds).
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from sidecar_injector.config import configload
from sidecar_injector.config.schema import DEFAULT_KUBE_VERSION
from sidecar_injector.core.config import DEFAULT_PREFIX, ConfigSet
from sidecar_injector.core.errors import InjectorError
from sidecar_injector.server.app import State
from sidecar_injector.server.logs import JsonLog
from sidecar_injector.server.metrics import Metrics
from sidecar_injector.server.tls import ServingCert

__all__ = ["ConfigSource", "Reloader"]


class ConfigSource:
    """A config file or directory and the fingerprint of the version in force."""

    def __init__(self, path: str | Path, *, prefix: str = DEFAULT_PREFIX,
                 kube_version: str = DEFAULT_KUBE_VERSION) -> None:
        self.path = path
        self.prefix = prefix
        self.kube_version = kube_version
        self.fingerprint = ""

    def load(self) -> ConfigSet:
        """Load (raises ConfigError) and remember what was loaded."""
        before = configload.fingerprint(self.path)
        configs = configload.load_configs(self.path, prefix=self.prefix, kube_version=self.kube_version)
        # Changed again while loading: keep the result, but make the next poll look again.
        self.fingerprint = before if configload.fingerprint(self.path) == before else ""
        return configs

    def changed(self) -> bool:
        return configload.fingerprint(self.path) != self.fingerprint


class Reloader:
    """Polls ``source`` and ``cert`` every ``interval`` seconds."""

    def __init__(self, state: State, source: ConfigSource | None, cert: ServingCert, metrics: Metrics,
                 log: JsonLog, interval: float) -> None:
        self.state = state
        self.source = source
        self.cert = cert
        self.metrics = metrics
        self.log = log
        self.interval = interval
        self._failed_fingerprint = ""

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(self.interval)
            for check in (self.check_config, self.check_cert):
                try:
                    await loop.run_in_executor(None, check)
                except Exception as e:  # a bug here must not end reloading for good
                    self.log.error("reload check failed", check=check.__name__,
                                   error=f"{type(e).__name__}: {e}")

    def check_config(self) -> bool:
        """Reload the config if it changed; True if a new one is now in force."""
        if self.source is None:
            return False  # configs come from the API (server.apisource), which reloads them itself
        fingerprint = configload.fingerprint(self.source.path)  # never raises: errors are hashed in
        if fingerprint in (self.source.fingerprint, self._failed_fingerprint):
            return False
        try:
            configs = self.source.load()
        except Exception as e:  # ConfigError as a rule; anything else is a loader bug, same effect
            self._failed_fingerprint = fingerprint
            self.metrics.config_failed()
            error = str(e) if isinstance(e, InjectorError) else f"{type(e).__name__}: {e}"
            self.log.error("config reload failed; the previous config stays in force",
                           path=str(self.source.path), error=error)
            return False
        self._failed_fingerprint = ""
        self.state.configs = configs  # one attribute store: atomic for the loop thread
        self.metrics.config_loaded(len(configs.configs))
        self.log.info("config reloaded", path=str(self.source.path),
                      configs=[c.name for c in configs.configs])
        return True

    def check_cert(self) -> bool:
        """Reload the certificate if its files changed; True if a new one is now served."""
        try:
            changed = self.cert.reload()
        except InjectorError as e:
            self.metrics.cert_failed()
            self.log.error("certificate reload failed; the previous certificate stays in force",
                           cert=self.cert.cert_file, error=str(e))
            return False
        if changed:
            self.metrics.cert_loaded(self.cert.not_after)
            self.log.info("certificate reloaded", cert=self.cert.cert_file, not_after=self.cert.not_after)
        return changed
