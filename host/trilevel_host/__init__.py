"""Host side of the Tri-Level E-ViT accelerator: numpy only (no torch), runs on the board.

- :mod:`trilevel_host.fixedpoint`: the 16-bit fixed-point number format and its rounding.
- :mod:`trilevel_host.luts`: the lookup tables for exp, GELU, reciprocal and rsqrt.
- :mod:`trilevel_host.reference`: the bit-accurate numpy reference of the engine.
- :mod:`trilevel_host.package`: loading and verifying a model package.
"""

from .package import PackageError, load_package

__all__ = ["PackageError", "load_package"]
