"""Rule `pretrain`: one checkpoint (budget x seed) of a pretrain family."""

from overtrained.execution.job_server import hand_over

# Runs this job in a warm worker of the local job server where one is wanted (see there).
hand_over(snakemake, __file__)  # (injected by Snakemake)

from pathlib import Path

from overtrained.core.entry import log_to, params_dict
from overtrained.train import pretrain

log_to(snakemake.log[0])  # (injected by Snakemake)
smk = snakemake
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
