"""Reading a model directory: weights, tokenizer and their identity, for every stage.

A model directory is the workflow's own (a pre-trained or fine-tuned checkpoint) or a hub
checkpoint linked from the Hugging Face cache (results/{family}/{ckpt}/base/: config.json,
single or sharded safetensors, tokenizer files, provenance.json). What a stage may read is
the family's policy (`workflow.loading_options`): pickle weights and code shipped with a
repository are refused here, with the setting that allows them, before transformers sees
the directory.

Probes and the perturbation probe read models through `load_probe_model`: the workflow's
OLMo-2 checkpoints with the native `overtrained.models.model` (fp32, no transformers import), any
other through transformers behind the same small interface (`HFProbeModel`).
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
from pathlib import Path

from overtrained.core import jsonio, provenance
from overtrained.core.errors import FixableError

SAFETENSORS = "model.safetensors"
SAFETENSORS_INDEX = "model.safetensors.index.json"
PICKLE = "pytorch_model.bin"
PICKLE_INDEX = "pytorch_model.bin.index.json"
# Packages transformers needs to convert a sentencepiece-only tokenizer (tokenizer.model).
SENTENCEPIECE_PACKAGES = ("sentencepiece", "google.protobuf")


class LoadingError(FixableError, ValueError):
    """A model directory that cannot or may not be loaded; the message says what to do."""


def check_links(model_dir: str | Path) -> None:
    """A hub checkpoint's files are links into the Hugging Face cache of the machine that
    downloaded them; on a node that does not see that cache they dangle."""
    model_dir = Path(model_dir)
    if not model_dir.is_dir():
        return
    for path in sorted(model_dir.iterdir()):
        if path.is_symlink() and not path.exists():
            raise LoadingError(
                f"{path} links to {os.readlink(path)}, which this machine does not see: put "
                "HF_HOME on a filesystem shared by the login node (where `download` ran) and "
                "the compute nodes, or re-run the download here"
            )


def read_config(model_dir: str | Path) -> dict:
    check_links(model_dir)
    path = Path(model_dir) / "config.json"
    if not path.is_file():
        raise LoadingError(f"no config.json in {model_dir}: not a model directory, or incomplete")
    return json.loads(path.read_text(encoding="utf-8"))


def _shards(model_dir: Path, index: str) -> list[Path]:
    weight_map = json.loads((model_dir / index).read_text(encoding="utf-8"))["weight_map"]
    shards = [model_dir / name for name in sorted(set(weight_map.values()))]
    missing = [p.name for p in shards if not p.is_file()]
    if missing:
        raise LoadingError(
            f"{model_dir}: {index} lists shards that are missing ({', '.join(missing[:3])}); "
            "download the checkpoint again"
        )
    return shards


def weight_files(model_dir: str | Path) -> list[Path]:
    """The weight files transformers would read, in its order of preference: a single
    model.safetensors, sharded safetensors, then (only without safetensors) pickles."""
    model_dir = Path(model_dir)
    if (model_dir / SAFETENSORS).is_file():
        return [model_dir / SAFETENSORS]
    if (model_dir / SAFETENSORS_INDEX).is_file():
        return _shards(model_dir, SAFETENSORS_INDEX)
    if (model_dir / PICKLE).is_file():
        return [model_dir / PICKLE]
    if (model_dir / PICKLE_INDEX).is_file():
        return _shards(model_dir, PICKLE_INDEX)
    raise LoadingError(
        f"{model_dir} holds no weights ({SAFETENSORS}, {SAFETENSORS_INDEX} with its shards, or "
        "pickles): the checkpoint was not written or downloaded completely"
    )


def is_pickle(files: list[Path]) -> bool:
    return files[0].suffix == ".bin"


def _known_model_type(model_type: str | None) -> bool:
    if model_type == "olmo2":  # read natively too: no need to import transformers to know it
        return True
    from transformers.models.auto.configuration_auto import CONFIG_MAPPING_NAMES

    return model_type in CONFIG_MAPPING_NAMES


def refuse_remote_code(path: Path, config: dict, check_type: bool) -> None:
    if config.get("auto_map"):
        raise LoadingError(
            f"{path} maps to code in the model's repository (auto_map: "
            f"{sorted(config['auto_map'])}); running it is off: set "
            "families.<name>.trust_remote_code: true if you trust that repository"
        )
    if check_type and not _known_model_type(config.get("model_type")):
        import transformers

        raise LoadingError(
            f"{path}: model_type {config.get('model_type')!r} is unknown to transformers "
            f"{transformers.__version__}; it needs the repository's own code (set "
            "families.<name>.trust_remote_code: true) or a newer transformers"
        )


def check_loadable(
    model_dir: str | Path, allow_pickle: bool = False, trust_remote_code: bool = False
) -> list[Path]:
    """Refuse what the family's loading policy forbids; return the weight files to read."""
    model_dir = Path(model_dir)
    config = read_config(model_dir)
    files = weight_files(model_dir)
    if is_pickle(files) and not allow_pickle:
        names = ", ".join(p.name for p in files[:3])
        raise LoadingError(
            f"{model_dir} holds only pickle weights ({names}), and unpickling can run code: "
            "set families.<name>.allow_pickle: true to read them (torch.load with "
            "weights_only=True), or convert them to safetensors"
        )
    if not trust_remote_code:
        refuse_remote_code(model_dir / "config.json", config, check_type=True)
    return files


def load_causal_lm(
    model_dir: str | Path,
    device=None,
    dtype=None,
    allow_pickle: bool = False,
    trust_remote_code: bool = False,
    **kwargs,
):
    """`AutoModelForCausalLM.from_pretrained` under the loading policy: safetensors only,
    unless the directory has nothing else and pickles are allowed. `device` None leaves the
    model on the CPU (for a Trainer to place), `dtype` None is transformers' default."""
    import transformers

    files = check_loadable(model_dir, allow_pickle, trust_remote_code)
    if dtype is not None:
        kwargs["dtype"] = dtype
    model = transformers.AutoModelForCausalLM.from_pretrained(
        str(model_dir),
        use_safetensors=not is_pickle(files),
        trust_remote_code=trust_remote_code,
        **kwargs,
    )
    return model if device is None else model.to(device)


def _missing_modules(names) -> list[str]:
    missing = []
    for name in names:
        try:
            found = importlib.util.find_spec(name) is not None
        except ModuleNotFoundError:  # a missing parent package (google for google.protobuf)
            found = False
        if not found:
            missing.append(name.split(".")[-1])
    return missing


def load_tokenizer(model_dir: str | Path, trust_remote_code: bool = False):
    """The directory's tokenizer through `AutoTokenizer` (tokenizer.json, or a sentencepiece
    tokenizer.model converted to a fast tokenizer)."""
    model_dir = Path(model_dir)
    check_links(model_dir)
    if not trust_remote_code:
        for name in ("tokenizer_config.json", "config.json"):
            if (model_dir / name).is_file():
                config = json.loads((model_dir / name).read_text(encoding="utf-8"))
                refuse_remote_code(model_dir / name, config, check_type=False)
    if not (model_dir / "tokenizer.json").is_file() and (model_dir / "tokenizer.model").is_file():
        missing = _missing_modules(SENTENCEPIECE_PACKAGES)
        if missing:
            raise LoadingError(
                f"{model_dir} has only a sentencepiece tokenizer.model; converting it needs "
                f"the package(s) {', '.join(missing)}: pip install sentencepiece protobuf"
            )
    import transformers

    return transformers.AutoTokenizer.from_pretrained(
        str(model_dir), trust_remote_code=trust_remote_code
    )


def _recorded_files(model_dir: Path) -> dict[str, dict]:
    """provenance.json's `files` entries by file name (hub downloads record each file's sha)."""
    path = model_dir / "provenance.json"
    if not path.is_file():
        return {}
    entries = jsonio.read_json(path).get("files") or []
    return {Path(e["name"]).name: e for e in entries if e.get("sha256")}


def weights_digest(model_dir: str | Path) -> str:
    """The identity of a directory's weights.

    A single model.safetensors: its sha256 (what results recorded before hub checkpoints, so
    their numbers keep their meaning). Several files (shards, pickles): the sha256 of their
    `sha256sum` listing ("<sha256>  <name>" lines sorted by name). A file's sha256 comes from
    provenance.json's `files` record where there is one (re-hashing 14 GB per probe job would
    be wasted: the download hashed them), else from hashing the file.
    """
    model_dir = Path(model_dir)
    files = weight_files(model_dir)
    recorded = _recorded_files(model_dir)

    def sha(path: Path) -> str:
        entry = recorded.get(path.name)
        if entry is None:
            return provenance.sha256_file(path)
        size = entry.get("size")
        if size is not None and size != path.stat().st_size:
            raise LoadingError(
                f"{path} has {path.stat().st_size} bytes but provenance.json records {size}: "
                "the directory is not what was downloaded; download it again"
            )
        return entry["sha256"]

    if [p.name for p in files] == [SAFETENSORS]:
        return sha(files[0])
    listing = "".join(f"{sha(p)}  {p.name}\n" for p in sorted(files, key=lambda p: p.name))
    return hashlib.sha256(listing.encode()).hexdigest()


class IntegrityError(LoadingError):
    """Weights that are not the ones the job that wrote them recorded."""


def verified_weights(model_dir: str | Path) -> str:
    """weights_digest, checked against the record of the job that wrote the weights (a
    pre-trained checkpoint's provenance.json `sha`, a fine-tuned model's train.json
    `model_sha`; hub downloads are checked file by file against their recorded sizes), so
    a truncated, swapped or edited checkpoint stops the job that would read it."""
    model_dir = Path(model_dir)
    record_path, expected = _producer_sha(model_dir)
    digest = weights_digest(model_dir)
    if expected and digest != expected:
        raise IntegrityError(
            f"{model_dir} holds weights with sha256 {digest[:16]}, but {record_path} records "
            f"{expected[:16]}: they changed after the job that wrote them; delete "
            f"{record_path} and run snakemake again to remake them"
        )
    return digest


def _producer_sha(model_dir: Path) -> tuple[Path | None, str | None]:
    for record_path in (model_dir / "provenance.json", model_dir.parent / "train.json"):
        if record_path.is_file():
            return record_path, provenance.weights_sha(jsonio.read_json(record_path))
    return None, None


# ----------------------------------------------------------------------------- probe models


class HFProbeModel:
    """A transformers causal LM with the interface of `overtrained.models.model.Olmo2LM` that the
    probes use: `model(input_ids) -> (logits, None)`, `named_parameters()`, `init_std(name)`.

    `init_std` is the noise scale of the perturbation probe's `init` scaling: transformers
    initialises every Linear and Embedding weight of these models from
    N(0, config.initializer_range) (norm weights to one, biases to zero: std 0).
    """

    def __init__(self, model) -> None:
        self.hf = model
        self.config = model.config

    def __call__(self, input_ids):
        return self.forward(input_ids)

    def forward(self, input_ids):
        # Logits in the model's dtype; losses are computed from them in fp32 (sequence_nll).
        return self.hf(input_ids=input_ids, use_cache=False).logits, None

    def named_parameters(self, *args, **kwargs):
        return self.hf.named_parameters(*args, **kwargs)

    def parameters(self):
        return self.hf.parameters()

    def eval(self) -> HFProbeModel:
        self.hf.eval()
        return self

    def init_std(self, name: str) -> float:
        params = dict(self.hf.named_parameters(remove_duplicate=False))
        if name not in params:
            raise KeyError(f"no parameter named {name!r}")
        return 0.0 if params[name].dim() < 2 else float(self.config.initializer_range)


def default_device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def _native_olmo2(config: dict, files: list[Path]) -> bool:
    """Whether overtrained.models.model reads this directory (OLMo-2 it reproduces, safetensors)."""
    from overtrained.models.model import shape_from_config

    if config.get("model_type") != "olmo2" or is_pickle(files):
        return False
    try:
        shape_from_config(config)
    except (ValueError, KeyError):
        return False
    return True


def load_probe_model(
    model_dir: str | Path,
    device=None,
    allow_pickle: bool = False,
    trust_remote_code: bool = False,
    native: bool = True,
):
    """The model the loss probes and the perturbation probe score, in eval mode, on `device`
    (CUDA when available). With `native` (the workflow's own checkpoints), OLMo-2 directories
    the native loader reads: `Olmo2LM` in fp32, as before hub checkpoints. Anything else
    (hub checkpoints, whose 7B OLMo-2 would take 28 GB in fp32): transformers in bf16 on a
    GPU that supports it (fp32 on a CPU), as an `HFProbeModel`."""
    import torch

    files = check_loadable(model_dir, allow_pickle, trust_remote_code)
    device = torch.device(device or default_device())
    if native and _native_olmo2(read_config(model_dir), files):
        from overtrained.models.model import load_checkpoint

        return load_checkpoint(model_dir, device).eval()
    bf16 = device.type == "cuda" and torch.cuda.is_bf16_supported()
    dtype = torch.bfloat16 if bf16 else torch.float32
    model = load_causal_lm(model_dir, device, dtype, allow_pickle, trust_remote_code)
    return HFProbeModel(model).eval()


def vocab_size(model) -> int:
    """The logit width of a probe model (native or HFProbeModel)."""
    shape = getattr(model, "shape", None)
    return shape.vocab_size if shape is not None else model.config.vocab_size


def model_device(model):
    return next(iter(model.parameters())).device
