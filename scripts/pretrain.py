"""Rule `pretrain`: one checkpoint (budget x seed) of a pretrain family."""

from pathlib import Path

from overtrained import pretrain
from overtrained.entry import log_to, params_dict

log_to(snakemake.log[0])  # noqa: F821 (injected by Snakemake)
smk = snakemake  # noqa: F821
trunk = smk.input.get("trunk")
pretrain.run_checkpoint(
    family={"model": smk.params.model, "training": smk.params.training},
    budget=smk.params.budget,
    seed=smk.params.seed,
    corpus_dir=Path(smk.input.train).parent,
    out_dir=Path(smk.output.model).parent,
    params=params_dict(smk.params),
    trunk_state=Path(trunk) / f"state-{smk.params.budget}.safetensors" if trunk else None,
)
