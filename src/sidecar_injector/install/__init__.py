"""Putting the injector on a cluster: certificates (``certs``, ``rotation``, the in-cluster
``bootstrap`` Job), and the install manifests (``manifests``, with the SidecarConfig API's
objects in ``apimanifests`` and Prometheus objects in ``monitoring``) that ``deploy/`` and the
Helm chart are generated from.
"""
