"""How large are a run's pre-trained weights at each budget? The mechanism behind the
default's weight decay: an AdamW step's size is set by the LR, not by the weights, so the
smaller the weights the more a fixed fine-tuning LR changes them, relatively.

    .venv/bin/python experiments/replicates/weight_norms.py RUN_DIR

Prints, per family and budget, the RMS over all decayed matrices (every 2-D weight except
the embedding, as pre-training decays them), mean ± sd over pre-training seeds.
"""

from __future__ import annotations

import re
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np
from safetensors.numpy import load_file

from overtrained.core.units import parse_tokens


def matrix_rms(checkpoint: Path) -> float:
    tensors = load_file(str(checkpoint / "model.safetensors"))
    values = [v.ravel() for k, v in tensors.items() if v.ndim == 2 and "embed" not in k]
    return float(np.sqrt(np.mean(np.concatenate(values) ** 2)))


def main(run: Path) -> None:
    found: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    for base in sorted((run / "results").glob("*/*-seed*/base")):
        match = re.fullmatch(r"(.+)-seed(\d+)", base.parent.name)
        if match and (base / "model.safetensors").is_file():
            found[base.parent.parent.name][match[1]].append(matrix_rms(base))
    for family, budgets in found.items():
        cells = [
            f"{budget} {np.mean(v):.3f} ± {np.std(v, ddof=1) if len(v) > 1 else 0:.3f}"
            for budget, v in sorted(budgets.items(), key=lambda kv: parse_tokens(kv[0]))
        ]
        print(
            f"{family} (RMS of decayed matrices, {len(next(iter(budgets.values())))} seeds): "
            + ", ".join(cells)
        )


if __name__ == "__main__":
    main(Path(sys.argv[1]))
