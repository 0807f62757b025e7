"""ppcore: the perceptual-prior regulariser of "Incorporating Perceptual Prior to Improve Model's
Adversarial Robustness", its baselines, attacks and evaluation, in PyTorch.

Nothing here touches a GPU at import; the device is chosen once per run (``pick_device``).
"""

__version__ = "0.1.0"

from .errors import CheckpointError, PPCoreError  # noqa: E402

__all__ = ["__version__", "PPCoreError", "CheckpointError", "load_model", "load_record",
           "build_model", "make_config", "train", "pick_device"]


def __getattr__(name):  # lazy: `import ppcore` stays cheap for the app and the CLI's --help
    if name in ("load_model", "load_record"):
        from . import checkpoint
        return getattr(checkpoint, name)
    if name == "build_model":
        from .models import build_model
        return build_model
    if name == "make_config":
        from .config import make_config
        return make_config
    if name == "train":
        from .train import train
        return train
    if name == "pick_device":
        from .device import pick_device
        return pick_device
    raise AttributeError(f"module 'ppcore' has no attribute {name!r}")
