# Paths and small helpers shared by the rules; the logic is in overtrained.workflow.

# The evaluation rules (evaluate, probes, sensitivity, judge) share one allocation.
EVAL_RESOURCES = config["evaluate"]["resources"]


def eval_resources():
    return {
        "mem_mb": lambda wildcards, attempt: EVAL_RESOURCES["mem_mb"] * attempt,
        "runtime": EVAL_RESOURCES["runtime"],
        "gpu": EVAL_RESOURCES["gpus"],
    }


def family_cfg(wildcards):
    return config["families"][wildcards.family]


def corpus_dir(family):
    return W.path("corpus", family=family)


def task_test_files(wildcards):
    """Held-out splits a model's in-distribution loss is measured on: every task for a base
    model, its own task for a fine-tuned one (so editing one task's data re-runs only that
    task's fine-tuning, not every fine-tuned model's probe)."""
    tasks = config["finetune"]["tasks"]
    if wildcards.model != "base":
        tasks = [W.parse_ft_model(wildcards.model)[0]]
    return {
        task: f"{W.task_dir(config, wildcards.family, task)}/test.jsonl"
        for task in tasks
    }


def base_record(wildcards):
    """A base checkpoint's record, written with its weights (pre-trained or downloaded)."""
    return W.model_record(wildcards.family, wildcards.ckpt, "base")


def checkpoint_pin(wildcards):
    return W.checkpoint_pin(config, wildcards.family, wildcards.ckpt)


def model_files(wildcards):
    """What an evaluation reads: the record written with the weights (base or fine-tuned),
    and a fine-tuned model's weights directory (temp(), so it must be an input)."""
    record = W.model_record(wildcards.family, wildcards.ckpt, wildcards.model)
    if wildcards.model == "base":
        return {"record": record}
    return {
        "weights": W.model_dir(wildcards.family, wildcards.ckpt, wildcards.model),
        "record": record,
    }


def tokenizer_file(wildcards):
    """A file written with the family's tokenizer (its directory is the tokenizer's)."""
    path = W.tokenizer_dir(config, wildcards.family)
    if family_cfg(wildcards)["source"] == "hub":
        return f"{path}/provenance.json"
    return f"{path}/tokenizer.json"


def model_dir(wildcards):
    return W.model_dir(wildcards.family, wildcards.ckpt, wildcards.model)


def ft_weights(path):
    """Fine-tuned weights live until their evaluations are done, unless the config keeps them."""
    return path if config["finetune"]["keep_weights"] else temp(path)


def pretrain_inputs(wildcards):
    inputs = {
        "train": f"{corpus_dir(wildcards.family)}/train.npy",
        "meta": f"{corpus_dir(wildcards.family)}/corpus.json",
        "tokenizer": f"{corpus_dir(wildcards.family)}/tokenizer/tokenizer.json",
    }
    if family_cfg(wildcards)["training"]["schedule"] != "cosine":
        ckpt = W.checkpoint(config, wildcards.family, wildcards.ckpt)
        inputs["trunk"] = W.path("trunk", family=wildcards.family, seed=ckpt.seed)
    return inputs


def mini_test_files(wildcards):
    return W.mini_test_files(config, wildcards.family, wildcards.suite)


def heldout_stream(wildcards):
    """Retention text: the family corpus's held-out split, or evaluate.retention_text."""
    if config["evaluate"]["retention_text"] is None:
        return f"{corpus_dir(wildcards.family)}/heldout.npy"
    return f"{W.path('retention', family=wildcards.family)}/heldout.npy"
