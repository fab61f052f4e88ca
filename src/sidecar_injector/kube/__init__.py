"""Talking to the Kubernetes API (lightkube's connection setup, our own requests): the config
source that lists and watches both SidecarConfig kinds, status conditions, leader election."""
