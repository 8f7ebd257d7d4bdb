"""Rule `probes`: pre-training loss (retention) and in-distribution losses of one model."""

from overtrained.execution.job_server import hand_over

# Runs this job in a warm worker of the local job server where one is wanted (see there).
hand_over(snakemake, __file__)  # (injected by Snakemake)

from overtrained import workflow
from overtrained.core import jsonio
from overtrained.core.entry import log_to, params_dict
from overtrained.core.units import parse_tokens
from overtrained.evaluation import probes

log_to(snakemake.log[0])  # (injected by Snakemake)
smk = snakemake
record = jsonio.read_json(smk.input.record)
probes.run(
    model_dir=smk.params.model_dir,
    heldout_stream=smk.input.heldout,
    task_tests=smk.params.task_test_files,
    retention_tokens=parse_tokens(smk.params.retention_tokens),
    max_length=smk.params.max_length,
    out_json=smk.output[0],
    params=params_dict(smk.params),
    status=record.get("status", "ok"),
    loading=workflow.probe_loading(smk.config, smk.wildcards.family),
)
