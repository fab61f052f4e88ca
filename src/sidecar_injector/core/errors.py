"""The project's errors.

- InjectorError: base; the CLI prints its message as one line, never a traceback.
  - ConfigError: a SidecarConfig is malformed; the message names file, document and field.
  - InputError: an input file for the offline CLI is not YAML or not a Kubernetes object.
  - InvalidReview: a webhook request is not a usable AdmissionReview (the server answers 400).
  - InjectionError: injection failed for one pod (a template did not render, a bug); the
    server answers per ``--on-error``.
"""

from __future__ import annotations


class InjectorError(Exception):
    """Base class of every error this project raises on purpose."""


class ConfigError(InjectorError):
    """A configuration is malformed. The message names the file, document and field."""


class InputError(InjectorError):
    """An input document for the offline CLI is unusable."""


class InvalidReview(InjectorError):
    """The request body is not a usable AdmissionReview: the client's fault (HTTP 400)."""


class InjectionError(InjectorError):
    """Injection failed for one request: our side (a template, a bug)."""
