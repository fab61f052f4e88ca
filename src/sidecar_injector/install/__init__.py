"""Putting the injector on a cluster: certificates (``certs``, ``rotation``, the in-cluster
``bootstrap`` Job), and the install manifests that ``deploy/`` and the Helm chart are generated
from: ``manifests`` puts them in order, from ``options`` (what every object shares), ``workload``
(the server's objects), ``certmanifests`` (the certificate Job or cert-manager) and
``webhookconfig`` (the MutatingWebhookConfiguration), with the SidecarConfig API's objects in
``apimanifests`` and Prometheus objects in ``monitoring``.
"""
