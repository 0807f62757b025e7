"""The paper's networks, by name from one registry.

Every model maps images in [0, 1] to logits; a data set's normalisation, where one is used, is a
layer inside the model, so attacks and budgets stay in pixel space.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import torch
from torch import nn

from .data import DatasetInfo
from .errors import PPCoreError


class Normalize(nn.Module):
    def __init__(self, mean: tuple[float, ...], std: tuple[float, ...]):
        super().__init__()
        self.register_buffer("mean", torch.tensor(mean).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(std).view(1, -1, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std


CIFAR_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR_STD = (0.2470, 0.2435, 0.2616)


def _flat_size(features: nn.Module, channels: int, size: int) -> int:
    with torch.no_grad():
        return features(torch.zeros(1, channels, size, size)).numel()


class MnistNet(nn.Module):
    """Table 6, MNIST-Network: {conv(32,5x5)+ReLU}x2, max-pool, {conv(64,5x5)+ReLU}x2, max-pool,
    FC(512)+ReLU, FC(classes). Table 6 gives no padding, so both readings are offered:
    ``padding="valid"`` (28 -> 24 -> 20 -> 10 -> 6 -> 2 -> 1: a 1x1x64 map, 219k parameters) and
    ``padding="same"`` (28 -> 14 -> 7: a 7x7x64 map, 1.7M parameters). The default of a new run
    is chosen by the pilots in docs/results.md ("Choices the paper leaves open"); the builder's
    own default stays "valid", the reading of checkpoints recorded before the option existed."""

    def __init__(self, channels: int = 1, size: int = 28, num_classes: int = 10,
                 padding: str = "valid"):
        super().__init__()
        pad = {"valid": 0, "same": 2}[padding]
        self.features = nn.Sequential(
            nn.Conv2d(channels, 32, 5, padding=pad), nn.ReLU(inplace=True),
            nn.Conv2d(32, 32, 5, padding=pad), nn.ReLU(inplace=True),
            nn.MaxPool2d(2),
            nn.Conv2d(32, 64, 5, padding=pad), nn.ReLU(inplace=True),
            nn.Conv2d(64, 64, 5, padding=pad), nn.ReLU(inplace=True),
            nn.MaxPool2d(2),
            nn.Flatten(),
        )
        self.classifier = nn.Sequential(
            nn.Linear(_flat_size(self.features, channels, size), 512), nn.ReLU(inplace=True),
            nn.Linear(512, num_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


class NetA(nn.Module):
    """Model A of Tramer et al. (2018): conv(64,5x5)+ReLU, conv(64,5x5)+ReLU, dropout 0.25,
    FC(128)+ReLU, dropout 0.5, FC(classes)."""

    def __init__(self, channels: int = 1, size: int = 28, num_classes: int = 10):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(channels, 64, 5), nn.ReLU(inplace=True),
            nn.Conv2d(64, 64, 5), nn.ReLU(inplace=True),
            nn.Dropout(0.25), nn.Flatten(),
        )
        self.classifier = nn.Sequential(
            nn.Linear(_flat_size(self.features, channels, size), 128), nn.ReLU(inplace=True),
            nn.Dropout(0.5), nn.Linear(128, num_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


class NetB(nn.Module):
    """Model B of Tramer et al. (2018): dropout 0.2, conv(64,8x8,stride 2, same)+ReLU,
    conv(128,6x6,stride 2)+ReLU, conv(128,5x5)+ReLU, dropout 0.5, FC(classes)."""

    def __init__(self, channels: int = 1, size: int = 28, num_classes: int = 10):
        super().__init__()
        self.features = nn.Sequential(
            nn.Dropout(0.2),
            nn.Conv2d(channels, 64, 8, stride=2, padding=3), nn.ReLU(inplace=True),
            nn.Conv2d(64, 128, 6, stride=2), nn.ReLU(inplace=True),
            nn.Conv2d(128, 128, 5), nn.ReLU(inplace=True),
            nn.Dropout(0.5), nn.Flatten(),
        )
        self.classifier = nn.Linear(_flat_size(self.features, channels, size), num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


class _WideBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(cin)
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.shortcut = None if cin == cout and stride == 1 else nn.Conv2d(
            cin, cout, 1, stride, 0, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        o = torch.relu(self.bn1(x))
        y = self.conv1(o)
        y = self.conv2(torch.relu(self.bn2(y)))
        return y + (x if self.shortcut is None else self.shortcut(o))


class WideResNet(nn.Module):
    """WideResNet-depth-width (Zagoruyko & Komodakis 2016); the paper uses WRN-28-10."""

    def __init__(self, channels: int = 3, size: int = 32, num_classes: int = 10,
                 depth: int = 28, width: int = 10):
        super().__init__()
        if (depth - 4) % 6:
            raise PPCoreError(f"WideResNet depth must be 6n+4 (e.g. 10, 16, 28), got {depth}")
        n = (depth - 4) // 6
        widths = [16, 16 * width, 32 * width, 64 * width]
        self.normalize = Normalize(CIFAR_MEAN, CIFAR_STD) if channels == 3 else nn.Identity()
        self.conv = nn.Conv2d(channels, widths[0], 3, 1, 1, bias=False)
        layers = []
        for stage in range(3):
            for i in range(n):
                cin = widths[stage] if i == 0 else widths[stage + 1]
                layers.append(_WideBlock(cin, widths[stage + 1], (1 if stage == 0 else 2)
                                         if i == 0 else 1))
        self.blocks = nn.Sequential(*layers)
        self.bn = nn.BatchNorm2d(widths[3])
        self.fc = nn.Linear(widths[3], num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.blocks(self.conv(self.normalize(x)))
        x = torch.relu(self.bn(x))
        return self.fc(torch.flatten(nn.functional.adaptive_avg_pool2d(x, 1), 1))


_VGG_CFG = {
    11: [64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
    19: [64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M",
         512, 512, 512, 512, "M", 512, 512, 512, 512, "M"],
}


class VGG(nn.Module):
    """VGG with batch norm for 32x32 inputs: five pooling stages leave 1x1x512, one FC layer."""

    def __init__(self, channels: int = 3, size: int = 32, num_classes: int = 10,
                 depth: int = 11):
        super().__init__()
        layers: list[nn.Module] = [Normalize(CIFAR_MEAN, CIFAR_STD) if channels == 3
                                   else nn.Identity()]
        cin = channels
        for v in _VGG_CFG[depth]:
            if v == "M":
                layers.append(nn.MaxPool2d(2))
            else:
                layers += [nn.Conv2d(cin, v, 3, padding=1), nn.BatchNorm2d(v),
                           nn.ReLU(inplace=True)]
                cin = v
        layers.append(nn.Flatten())
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Linear(_flat_size(self.features, channels, size), num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


def _last_linear(model: nn.Module) -> nn.Linear | None:
    last = None
    for m in model.modules():
        if isinstance(m, nn.Linear):
            last = m
    return last


def _he(model: nn.Module, zero_last: bool) -> None:
    for m in model.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            nn.init.kaiming_normal_(m.weight, mode="fan_in", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
    if zero_last:
        last = _last_linear(model)
        nn.init.zeros_(last.weight)
        nn.init.zeros_(last.bias)


#: weight initialisations, by name. "he_zero_last" (the default of new runs) is He/Kaiming
#: normal (fan-in, for ReLU) with zero biases and a zero last layer: every logit starts at 0,
#: the loss at log(classes), and the first steps move the classifier instead of fighting random
#: logits (pilot figures in docs/results.md, "Choices the paper leaves open"). "torch" leaves
#: PyTorch's default (uniform, Kaiming with a=sqrt(5)): the init of checkpoints made before the
#: option existed. "he" is He without zeroing the last layer.
INITS: dict[str, Callable[[nn.Module], None]] = {
    "he_zero_last": lambda m: _he(m, zero_last=True),
    "he": lambda m: _he(m, zero_last=False),
    "torch": lambda m: None,
}
DEFAULT_INIT = "he_zero_last"
LEGACY_INIT = "torch"


@dataclass(frozen=True)
class OptionSpec:
    """One architecture option a user (or a checkpoint's record) may set."""
    kind: type
    #: the allowed values (a tuple), or an inclusive (low, high) range for ints
    choices: tuple = ()
    low: int | None = None
    high: int | None = None
    #: the value of a run that records nothing (checkpoints older than the option)
    legacy: object = None
    #: the value a new run records when the user sets nothing
    default: object = None

    def check(self, model: str, name: str, value) -> None:
        if self.kind is int and (isinstance(value, bool) or not isinstance(value, int)):
            raise PPCoreError(f"model '{model}' option {name} must be a whole number, "
                              f"got {value!r}")
        if self.kind is str and not isinstance(value, str):
            raise PPCoreError(f"model '{model}' option {name} must be text, got {value!r}")
        if self.choices and value not in self.choices:
            raise PPCoreError(f"model '{model}' option {name} must be one of "
                              f"{', '.join(map(str, self.choices))}, got {value!r}")
        if self.low is not None and not self.low <= value <= self.high:
            raise PPCoreError(f"model '{model}' option {name} must be in "
                              f"[{self.low}, {self.high}], got {value!r}")


_INIT_OPTION = OptionSpec(str, tuple(INITS), legacy=LEGACY_INIT, default=DEFAULT_INIT)


@dataclass(frozen=True)
class ModelSpec:
    name: str
    description: str
    builder: Callable[..., nn.Module]
    #: data sets the architecture is meant for (any data set of matching shape works)
    datasets: tuple[str, ...]
    #: options a user may set (e.g. depth and width of a WideResNet), with their types and
    #: ranges; every model has ``init``
    options: dict[str, OptionSpec] = field(default_factory=dict)

    def __post_init__(self):
        object.__setattr__(self, "options", {"init": _INIT_OPTION, **self.options})

    def new_run_options(self, given: dict | None = None) -> dict:
        """Every option of a new run, explicit: the user's values over the defaults."""
        check_options(self.name, {} if given is None else given)
        opts = {k: o.default for k, o in self.options.items() if o.default is not None}
        opts.update(given or {})
        return opts


MODELS: dict[str, ModelSpec] = {
    "mnist-net": ModelSpec("mnist-net", "the paper's MNIST-Network (Table 6)", MnistNet,
                           ("mnist", "fashion-mnist"),
                           {"padding": OptionSpec(str, ("valid", "same"), legacy="valid",
                                                  default="valid")}),
    "net-a": ModelSpec("net-a", "Net-A, model A of Tramer et al. 2018 (black-box source)", NetA,
                       ("mnist", "fashion-mnist")),
    "net-b": ModelSpec("net-b", "Net-B, model B of Tramer et al. 2018 (black-box source)", NetB,
                       ("mnist", "fashion-mnist")),
    "wrn": ModelSpec("wrn", "WideResNet (default 28-10, the paper's CIFAR-10 model)", WideResNet,
                     ("cifar10",), {"depth": OptionSpec(int, low=10, high=40),
                                    "width": OptionSpec(int, low=1, high=12)}),
    "vgg11": ModelSpec("vgg11", "VGG-11 with batch norm (CIFAR-10 black-box source)",
                       lambda **kw: VGG(depth=11, **kw), ("cifar10",)),
    "vgg19": ModelSpec("vgg19", "VGG-19 with batch norm (CIFAR-10 black-box source)",
                       lambda **kw: VGG(depth=19, **kw), ("cifar10",)),
}


def model_spec(name: str) -> ModelSpec:
    try:
        return MODELS[name]
    except KeyError:
        raise PPCoreError(f"unknown model '{name}': choose one of {', '.join(MODELS)}") from None


def check_options(name: str, options) -> None:
    """Raise ``PPCoreError`` (one line) unless ``options`` are model ``name``'s declared options
    with values of the right type and range: a record can never ask for an unbounded model."""
    spec = model_spec(name)
    if not isinstance(options, dict):
        raise PPCoreError(f"model options must be a mapping of names to values, got "
                          f"{type(options).__name__}")
    unknown = set(options) - set(spec.options)
    if unknown:
        raise PPCoreError(f"model '{name}' takes no option(s) {', '.join(sorted(map(str, unknown)))}")
    for k, v in options.items():
        spec.options[k].check(name, k, v)


def build_model(name: str, info: DatasetInfo, **options) -> nn.Module:
    """Build model ``name`` for data set ``info`` (its channels, image size and classes) and
    initialise it with ``options["init"]`` (recorded runs always name it; an option left out
    takes its legacy value, the meaning of a record made before the option existed)."""
    spec = model_spec(name)
    check_options(name, options)
    opts = {k: o.legacy for k, o in spec.options.items() if o.legacy is not None}
    opts.update(options)
    init = opts.pop("init")
    try:
        model = spec.builder(channels=info.channels, size=info.size,
                             num_classes=info.num_classes, **opts)
    except RuntimeError as exc:  # e.g. an image too small for the architecture
        raise PPCoreError(f"model '{name}' cannot be built for {info.title}: {exc}") from None
    INITS[init](model)
    return model
