"""Rule `judge`: a fine-tuned model's answers to its task's held-out prompts, scored by the
configured judge command."""

from overtrained.execution.job_server import hand_over

# Runs this job in a warm worker of the local job server where one is wanted (see there).
hand_over(snakemake, __file__, wait=True)  # (its own imports: 4-10 s)

from overtrained import workflow
from overtrained.core import jsonio
from overtrained.core.entry import log_to, params_dict
from overtrained.evaluation import judge

log_to(snakemake.log[0])  # (injected by Snakemake)
smk = snakemake
judge.run(
    model_dir=smk.params.model_dir,
    test_jsonl=smk.input.test,
    task=smk.params.task,
    judge=smk.params.judge,
    out_json=smk.output[0],
    params=params_dict(smk.params),
    status=jsonio.read_json(smk.input.record).get("status", "ok"),
    loading=workflow.loading_options(smk.config, smk.wildcards.family),
)
