# The `pretrain` checkpoint source: corpus -> (trunk) -> one checkpoint per budget and seed.
# Every rule here is for pretrain families only (wildcard constraint).


rule corpus:
    """The synthetic corpus and its tokenizer: training and held-out token streams."""
    output:
        train=f"{W.PATHS['corpus']}/train.npy",
        heldout=f"{W.PATHS['corpus']}/heldout.npy",
        meta=f"{W.PATHS['corpus']}/corpus.json",
        tokenizer=f"{W.PATHS['corpus']}/tokenizer/tokenizer.json",
    log:
        "logs/corpus/{family}.log",
    benchmark:
        "logs/corpus/{family}.benchmark.tsv"
    wildcard_constraints:
        family=W.alternatives(W.family_names(config, "pretrain")),
    # Corpus and pre-training first: every later job waits for them, and a trunk is long.
    priority: 100
    conda:
        "../envs/train.yaml"
    # One thread (its output does not depend on it): a two-thread job waits for two free
    # cores, which never come while one-core fine-tuning jobs keep arriving.
    threads: 1
    resources:
        mem_mb=lambda wildcards, attempt: 2000 * attempt,
        runtime=30,
    params:
        corpus=lambda w: family_cfg(w)["corpus"],
        vocab_size=lambda w: family_cfg(w)["model"]["vocab_size"],
        train_tokens=lambda w: W.train_stream_tokens(config, w.family),
        code=W.stage_code_hash("corpus"),
    script:
        "../scripts/corpus.py"


rule pretrain_trunk:
    """The shared run of one seed (constant, WSD): optimizer states at every budget."""
    input:
        train=rules.corpus.output.train,
    output:
        states=directory(W.PATHS["trunk"]),
    log:
        "logs/pretrain_trunk/{family}-seed{seed}.log",
    benchmark:
        "logs/pretrain_trunk/{family}-seed{seed}.benchmark.tsv"
    wildcard_constraints:
        family=W.alternatives(W.family_names(config, "pretrain")),
    priority: 100
    conda:
        "../envs/train.yaml"
    threads: 1
    resources:
        mem_mb=lambda wildcards, attempt: 2000 * attempt,
        runtime=120,
    params:
        model=lambda w: family_cfg(w)["model"],
        training=lambda w: family_cfg(w)["training"],
        budgets=lambda w: family_cfg(w)["budgets"],
        code=W.stage_code_hash("pretrain"),
    script:
        "../scripts/pretrain_trunk.py"


rule pretrain:
    """One checkpoint (budget x seed): read off the trunk, decayed, or its own cosine run."""
    input:
        unpack(pretrain_inputs),
    output:
        model=f"{W.path('model', model='base')}/model.safetensors",
        record=f"{W.path('model', model='base')}/provenance.json",
    log:
        "logs/pretrain/{family}/{ckpt}.log",
    benchmark:
        "logs/pretrain/{family}/{ckpt}.benchmark.tsv"
    wildcard_constraints:
        family=W.alternatives(W.family_names(config, "pretrain")),
    priority: 100
    conda:
        "../envs/train.yaml"
    threads: 1
    resources:
        mem_mb=lambda wildcards, attempt: 2000 * attempt,
        runtime=120,
    params:
        model=lambda w: family_cfg(w)["model"],
        training=lambda w: W.training_params(family_cfg(w)["training"]),
        budget=lambda w: W.checkpoint(config, w.family, w.ckpt).budget,
        seed=lambda w: W.checkpoint(config, w.family, w.ckpt).seed,
        code=W.stage_code_hash("pretrain"),
    script:
        "../scripts/pretrain.py"
