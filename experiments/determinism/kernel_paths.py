"""Do the CPU kernel paths change the miniature's numbers? Same commit, same seed, same data.

    .venv/bin/python experiments/determinism/kernel_paths.py CORPUS_DIR [--tokens 1M]

Pre-trains the default family's model (config.yaml) from one corpus for `--tokens` tokens, once
per setting of the environment variables that choose torch's CPU kernels, each in a fresh
interpreter, and prints the final weights' hash, the held-out loss, how far the weights are
from the first setting's. The settings stand in for machines: a CPU with another
instruction set (AVX-512 vs AVX2) or another BLAS dispatch takes another path on its own.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

from overtrained.execution import cpu_kernels

SETTINGS = {
    "as the machine picks": {},
    "pinned (execution.cpu_kernels)": dict(cpu_kernels.PINS),
    "ATen default ISA": {"ATEN_CPU_CAPABILITY": "default"},
    "MKL_CBWR=COMPATIBLE": {"MKL_CBWR": "COMPATIBLE"},
    "MKL_CBWR=AVX2": {"MKL_CBWR": "AVX2"},
    "2 threads": {"OMP_NUM_THREADS": "2", "MKL_NUM_THREADS": "2"},
    "as the machine picks, again": {},
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("corpus_dir", type=Path)
    parser.add_argument("--tokens", default="1M")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    rows = []
    reference = None
    unpinned = {k: v for k, v in os.environ.items() if k not in cpu_kernels.PINS}
    for name, env in SETTINGS.items():
        threads = env.get("OMP_NUM_THREADS", "1")
        out = subprocess.run(
            [sys.executable, __file__, "--child", str(args.corpus_dir), args.tokens, threads],
            env={**unpinned, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", **env},
            capture_output=True,
            text=True,
            check=True,
        )
        result = json.loads(out.stdout.strip().splitlines()[-1])
        weights = Path(result.pop("weights"))
        from safetensors.torch import load_file

        state = load_file(str(weights))
        shutil.rmtree(weights.parent)
        if reference is None:
            reference = state
        distance = max((state[k] - reference[k]).abs().max().item() for k in state)
        rows.append({"setting": name, **result, "max_abs_weight_difference": distance})
        print(json.dumps(rows[-1]), flush=True)
    if args.out:
        report = {"cpu": cpu_kernels.cpu_model(), "tokens": args.tokens, "settings": rows}
        args.out.write_text(json.dumps(report, indent=1) + "\n")


def child(corpus_dir: str, tokens: str, threads: str) -> None:
    import hashlib
    import tempfile

    import numpy as np
    import torch
    from safetensors.torch import save_file

    from overtrained.core import config as config_mod
    from overtrained.core.units import parse_tokens
    from overtrained.train import pretrain

    torch.set_num_threads(int(threads))
    cfg = config_mod.load_file("config.yaml")
    family = cfg["families"]["mini"]
    train = family["training"]
    model = pretrain.build_model(family, 0)
    optimizer = pretrain.make_optimizer(model, train)
    sampler = pretrain.BlockSampler(
        Path(corpus_dir) / "train.npy", train["seq_len"], train["batch_size"], 0
    )
    steps = pretrain.steps_for(parse_tokens(tokens), train)
    schedule = pretrain._schedule(train, "constant", steps)
    pretrain.train_steps(model, optimizer, sampler, schedule, 0, steps, train, [])
    model.eval()
    held = np.load(Path(corpus_dir) / "heldout.npy")[: 64 * (train["seq_len"] + 1)]
    block = torch.from_numpy(held.astype(np.int64)).view(64, train["seq_len"] + 1)
    with torch.no_grad():
        logits, _ = model(block[:, :-1])
        loss = torch.nn.functional.cross_entropy(
            logits.reshape(-1, logits.shape[-1]), block[:, 1:].reshape(-1)
        ).item()
    state = {k: v.detach().contiguous() for k, v in model.state_dict().items()}
    digest = hashlib.sha256(b"".join(state[k].numpy().tobytes() for k in sorted(state)))
    path = Path(tempfile.mkdtemp()) / "weights.safetensors"
    save_file(state, str(path))
    print(
        json.dumps(
            {
                "weights_sha256": digest.hexdigest()[:16],
                "heldout_loss": round(loss, 6),
                "cpu_capability": torch.backends.cpu.get_cpu_capability(),
                "weights": str(path),
            }
        )
    )


if __name__ == "__main__":
    if sys.argv[1:2] == ["--child"]:
        child(*sys.argv[2:5])
    else:
        main()
