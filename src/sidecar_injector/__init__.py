"""sidecar-injector: a Kubernetes mutating admission webhook that injects sidecars.

Layers (outer may import inner, never the reverse):

    cli            argparse front end; the only place that prints and exits
    server         HTTPS webhook, metrics, reload (calls core.admission.review)
    certs, manifests, configload, schema      tooling around the core; do I/O
    core           pure: pod dict + configs in, patch + decision + reasons out
"""

__version__ = "0.1.0"
