"""Export a trained Tri-Level ViT to a 16-bit fixed-point model package (``trilevel export``).

The package format is docs/model_package.md; the arithmetic it is meant for is
docs/fixed_point.md and lives in ``trilevel_host.reference`` (numpy, the oracle).
"""
