"""The sidecar itself: one kernel served to many frontends (``sidecar serve``).

Internal: the public API is what :mod:`sidecar` re-exports.
"""
