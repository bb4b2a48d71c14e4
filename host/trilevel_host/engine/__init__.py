"""The engine as the host sees it: its ABI (:mod:`.abi`), memory arena (:mod:`.arena`) and
programs of descriptors built from a model package (numpy only, no torch)."""
