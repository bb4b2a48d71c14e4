"""The bit-accurate numpy reference of the engine: op by op (:mod:`.ops_forward`,
:mod:`.ops_backward`) and a whole DeiT (:mod:`.model`). docs/fixed_point.md defines it."""

from .model import Forward, ModelConfig, ReferenceModel

__all__ = ["Forward", "ModelConfig", "ReferenceModel"]
