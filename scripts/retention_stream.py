"""Rule `retention_stream`: the retention documents as a family's held-out token stream."""

from overtrained.execution.job_server import hand_over

# Runs this job in a warm worker of the local job server where one is wanted (see there).
hand_over(snakemake, __file__)  # (injected by Snakemake)

from pathlib import Path

from overtrained import workflow
from overtrained.core import jsonio, provenance
from overtrained.core.entry import log_to, params_dict
from overtrained.data import retention_stream

log_to(snakemake.log[0])  # (injected by Snakemake)
smk = snakemake
docs = retention_stream.documents(smk.params.dataset, smk.params.documents, offline=True)
loading = workflow.loading_options(smk.config, smk.wildcards.family)
stream = retention_stream.write_stream(
    docs, Path(smk.input.tokenizer).parent, smk.output.stream, loading["trust_remote_code"]
)
provenance.write_json(
    smk.output.meta,
    {
        **stream,
        "prefetch": jsonio.read_json(smk.input.prefetch),
        "params": params_dict(smk.params),
    },
)
