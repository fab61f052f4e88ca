"""The pure injection core: no I/O, no server, no YAML.

Pod dicts and a :class:`~sidecar_injector.core.config.ConfigSet` in; the JSON Patch,
the decision and its reasons out. Every caller (webhook, offline CLI, explain) goes
through :func:`sidecar_injector.core.inject.inject` or
:func:`sidecar_injector.core.admission.review`.
"""
