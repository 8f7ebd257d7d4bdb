"""Rule `sensitivity`: Gaussian perturbation probe of one base checkpoint."""

from overtrained.execution.job_server import hand_over

# Runs this job in a warm worker of the local job server where one is wanted (see there).
hand_over(snakemake, __file__)  # (injected by Snakemake)

from pathlib import Path

from overtrained import workflow
from overtrained.core.entry import log_to, params_dict
from overtrained.core.units import parse_tokens
from overtrained.evaluation import sensitivity

log_to(snakemake.log[0])  # (injected by Snakemake)
smk = snakemake
cfg = smk.params.sensitivity
sensitivity.run(
    model_dir=Path(smk.input.record).parent,  # the base checkpoint's directory
    heldout_stream=smk.input.heldout,
    gammas={scaling: grid for scaling, grid in cfg["gammas"].items() if grid},
    seeds=cfg["seeds"],
    retention_tokens=parse_tokens(smk.params.retention_tokens),
    out_json=smk.output[0],
    params=params_dict(smk.params),
    loading=workflow.probe_loading(smk.config, smk.wildcards.family),
)
