# The `pretrain` checkpoint source: corpus -> (trunk) -> one checkpoint per budget and seed.


rule corpus:
    output:
        train=f"{W.RESULTS}/{{family}}/corpus/train.npy",
        heldout=f"{W.RESULTS}/{{family}}/corpus/heldout.npy",
        meta=f"{W.RESULTS}/{{family}}/corpus/corpus.json",
        tokenizer=f"{W.RESULTS}/{{family}}/corpus/tokenizer/tokenizer.json",
    params:
        corpus=lambda w: family_cfg(w)["corpus"],
        vocab_size=lambda w: family_cfg(w)["model"]["vocab_size"],
        train_tokens=lambda w: W.train_stream_tokens(config, w.family),
        code=W.stage_code_hash("corpus"),
    log:
        "logs/corpus/{family}.log",
    benchmark:
        "logs/corpus/{family}.benchmark.tsv"
    threads: 2
    resources:
        mem_mb=2000,
        runtime=30,
    conda:
        "../envs/train.yaml"
    script:
        "../scripts/corpus.py"


rule pretrain_trunk:
    input:
        train=rules.corpus.output.train,
    output:
        states=directory(f"{W.RESULTS}/{{family}}/trunk/seed{{seed}}"),
    params:
        model=lambda w: family_cfg(w)["model"],
        training=lambda w: family_cfg(w)["training"],
        budgets=lambda w: family_cfg(w)["budgets"],
        code=W.stage_code_hash("pretrain"),
    log:
        "logs/pretrain_trunk/{family}-seed{seed}.log",
    benchmark:
        "logs/pretrain_trunk/{family}-seed{seed}.benchmark.tsv"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=120,
    conda:
        "../envs/train.yaml"
    script:
        "../scripts/pretrain_trunk.py"


def pretrain_inputs(wildcards):
    inputs = {
        "train": f"{corpus_dir(wildcards.family)}/train.npy",
        "meta": f"{corpus_dir(wildcards.family)}/corpus.json",
        "tokenizer": f"{corpus_dir(wildcards.family)}/tokenizer/tokenizer.json",
    }
    if family_cfg(wildcards)["training"]["schedule"] != "cosine":
        ckpt = W.checkpoint(config, wildcards.family, wildcards.ckpt)
        inputs["trunk"] = f"{W.RESULTS}/{wildcards.family}/trunk/seed{ckpt.seed}"
    return inputs


rule pretrain:
    input:
        unpack(pretrain_inputs),
    output:
        model=f"{W.RESULTS}/{{family}}/{{ckpt}}/base/model.safetensors",
        record=f"{W.RESULTS}/{{family}}/{{ckpt}}/base/provenance.json",
    params:
        model=lambda w: family_cfg(w)["model"],
        training=lambda w: family_cfg(w)["training"],
        budget=lambda w: W.checkpoint(config, w.family, w.ckpt).budget,
        seed=lambda w: W.checkpoint(config, w.family, w.ckpt).seed,
        code=W.stage_code_hash("pretrain"),
    log:
        "logs/pretrain/{family}/{ckpt}.log",
    benchmark:
        "logs/pretrain/{family}/{ckpt}.benchmark.tsv"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=120,
    conda:
        "../envs/train.yaml"
    script:
        "../scripts/pretrain.py"
