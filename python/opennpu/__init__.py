"""opennpu: an open Neural Engine (ONNX models on a CPU reference backend and a simulated NPU).

The compiled extension (opennpu._opennpu, pybind11 over the runtime) is re-exported here, so
`opennpu.Model`, `opennpu.hardware_presets()`, `opennpu.Error` and `opennpu.__version__` work as
they always did. `python3 -m opennpu.explore` runs design-space sweeps on a Dask cluster
(docs/explore.md); opennpu.plot draws a sweep's results.
"""
from ._opennpu import *  # noqa: F401,F403
from ._opennpu import Error, __version__  # noqa: F401
from . import _opennpu as _ext  # noqa: F401
