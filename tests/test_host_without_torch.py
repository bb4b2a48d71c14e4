"""trilevel_host runs on the board's CPU, which has no torch: it must work with torch unimportable."""

import subprocess
import sys
import textwrap

import tiny_vit

SCRIPT = textwrap.dedent(
    """
    import sys
    sys.modules["torch"] = None  # any `import torch` now raises ImportError
    import numpy as np
    from trilevel_host import load_package
    from trilevel_host.reference import ReferenceModel

    pkg = load_package(sys.argv[1])
    ref = ReferenceModel.from_package(pkg)
    m = pkg.manifest["model"]
    x = np.zeros((2, m["in_chans"], m["img_size"], m["img_size"]), dtype=np.float32)
    out = ref.forward(ref.quantize_input(x))
    print(type(out).__name__, "torch" in sys.modules and sys.modules["torch"] is not None)
    """
)


def test_package_loads_and_reference_runs_without_torch():
    proc = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(tiny_vit.package())], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.split() == ["Forward", "False"]
