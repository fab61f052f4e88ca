"""Where SidecarConfigs come from: files and ConfigMap directories (``configload``), the
Kubernetes API's two kinds (``apiconfig``, with their CRDs generated in ``crd``), and the Pod
schema they are validated against (``schema``). The validation itself is the pure core's
(:mod:`sidecar_injector.core.parse`): every source hands it documents and gets a ConfigSet.
"""
