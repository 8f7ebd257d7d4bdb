# The `hub` checkpoint source: each pinned checkpoint (and the family's tokenizer) downloaded
# once by commit sha into the shared Hugging Face cache, and linked into the results tree.


rule download:
    """A hub checkpoint at its pinned commit (needs internet: a local rule, so on a cluster it
    runs on the login node; every job downstream reads it offline)."""
    output:
        record=f"{W.path('model', model='base')}/provenance.json",
    log:
        "logs/download/{family}/{ckpt}.log",
    wildcard_constraints:
        family=W.alternatives(W.family_names(config, "hub")),
    localrule: True
    conda:
        "../envs/train.yaml"
    params:
        # No code hash: the files are fixed by sha and patterns, and verified; editing the
        # download code must not re-run every fine-tuning run downstream.
        download=lambda w: W.download_params(config, w.family, w.ckpt),
    script:
        "../scripts/download.py"


rule download_tokenizer:
    """The tokenizer of a hub family at its pinned commit (for the retention text)."""
    output:
        record=f"{W.PATHS['hub_tokenizer']}/provenance.json",
    log:
        "logs/download/{family}/tokenizer.log",
    wildcard_constraints:
        family=W.alternatives(W.family_names(config, "hub")),
    localrule: True
    conda:
        "../envs/train.yaml"
    params:
        download=lambda w: W.download_params(config, w.family),
    script:
        "../scripts/download.py"
