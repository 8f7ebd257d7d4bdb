"""Rule `pretrain_trunk`: the shared warmup-stable run of the wsd and constant schedules."""

from overtrained.execution.job_server import hand_over

# Runs this job in a warm worker of the local job server where one is wanted (see there).
hand_over(snakemake, __file__)  # (injected by Snakemake)

import time
from pathlib import Path

from overtrained.core import provenance
from overtrained.core.entry import log_to, params_dict
from overtrained.train import pretrain

log_to(snakemake.log[0])  # (injected by Snakemake)
smk = snakemake
started, t0 = provenance.now(), time.perf_counter()
family = {"model": smk.params.model, "training": smk.params.training}
out = Path(smk.output.states)
out.mkdir(parents=True, exist_ok=True)
states = {b: out / f"state-{b}.safetensors" for b in smk.params.budgets}
result = pretrain.run_trunk(family, int(smk.wildcards.seed), Path(smk.input.train).parent, states)
provenance.write_json(
    out / "trunk.json",
    provenance.record(
        "pretrain_trunk", params_dict(smk.params), started, time.perf_counter() - t0, **result
    ),
)
