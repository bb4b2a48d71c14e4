"""Host side of the Tri-Level E-ViT accelerator: numpy only (no torch), runs on the board.

- :mod:`trilevel_host.fixedpoint`: the 16-bit fixed-point number format and its rounding.
- :mod:`trilevel_host.luts`: the lookup tables for exp, GELU, reciprocal and rsqrt.
- :mod:`trilevel_host.reference`: the bit-accurate numpy reference of the engine.
- :mod:`trilevel_host.package`: loading and verifying a model package.
- :mod:`trilevel_host.engine`: the engine's ABI, arena and programs built from a package.
- :mod:`trilevel_host.device`: the engine backends (C-sim library, PYNQ board).
- :mod:`trilevel_host.runner`, :mod:`trilevel_host.cli`: per-sample inference (``trilevel-host``).
"""

from .package import PackageError, load_package

__all__ = ["PackageError", "load_package"]
