"""Rules `download` / `download_tokenizer`: one hub checkpoint (or a family's tokenizer) at
its pinned commit, verified, linked next to its provenance record."""

import time
from pathlib import Path

from overtrained.core import provenance
from overtrained.core.entry import log_to, params_dict
from overtrained.hub import download

log_to(snakemake.log[0])  # (injected by Snakemake)
smk = snakemake
params = params_dict(smk.params)
spec = params["download"]  # overtrained.workflow.download_params
started, t0 = provenance.now(), time.perf_counter()
result = download.download(
    repo=spec["repo"],
    revision=spec["revision"],
    sha=spec["sha"],
    dest_dir=Path(smk.output.record).parent,
    allow_patterns=list(spec["allow_patterns"]),
    allow_pickle=spec["allow_pickle"],
    require_weights=spec["require_weights"],
    trust_remote_code=spec["trust_remote_code"],
)
provenance.write_json(
    smk.output.record,
    provenance.record(
        "download",
        params,
        started,
        time.perf_counter() - t0,
        **result,
        budget=spec["budget"],
        tokens=spec["tokens"],
        seed=None,
        family_source="hub",
    ),
)
