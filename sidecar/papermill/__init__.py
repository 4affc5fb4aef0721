"""papermill's ``sidecar`` engine: ``papermill in.ipynb out.ipynb --engine sidecar``.

Registered in the ``papermill.engine`` entry point group, so installing
sidecar next to papermill is the only step.  See ``docs/how-to/papermill.md``.
"""

from ._engine import SidecarEngine as SidecarEngine

__all__ = ["SidecarEngine"]
