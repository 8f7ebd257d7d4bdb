"""Rule `evaluate`: one lm-eval suite on one model (base or fine-tuned)."""

from overtrained.execution.job_server import hand_over

# Runs this job in a warm worker of the local job server where one is wanted (see there).
hand_over(snakemake, __file__, wait=True)  # (its own imports: 4-10 s)

from overtrained import workflow
from overtrained.core import jsonio
from overtrained.core.entry import log_to, params_dict
from overtrained.evaluation import evaluate

log_to(snakemake.log[0])  # (injected by Snakemake)
smk = snakemake
made_by = jsonio.read_json(smk.input.record)
source = {key: made_by.get(key) for key in ("stage", "sha", "base_sha", "revision", "lr", "seed")}
evaluate.run(
    model_dir=smk.params.model_dir,
    suite=smk.params.suite,
    mini_test_files=smk.params.mini_test_files,
    out_json=smk.output[0],
    params=params_dict(smk.params),
    threads=smk.threads,
    status=made_by.get("status", "ok"),
    datasets=smk.params.datasets,
    precision=smk.params.precision,
    answer_patterns=smk.params.answer_patterns,
    model_source={key: value for key, value in source.items() if value is not None},
    loading=workflow.loading_options(smk.config, smk.wildcards.family),
)
