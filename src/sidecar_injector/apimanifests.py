"""Install objects of the SidecarConfig API: CRDs, the validating webhook, RBAC (pure dicts)."""

from __future__ import annotations
