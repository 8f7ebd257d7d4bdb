# Paths and small helpers shared by the rules; the logic is in overtrained.workflow.


def family_cfg(wildcards):
    return config["families"][wildcards.family]


def corpus_dir(family):
    return f"{W.RESULTS}/{family}/corpus"


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


def model_files(wildcards):
    """What an evaluation reads: the weights (base or fine-tuned) and their record."""
    path = W.model_dir(wildcards.family, wildcards.ckpt, wildcards.model)
    weights = f"{path}/model.safetensors" if wildcards.model == "base" else path
    record = W.model_record(wildcards.family, wildcards.ckpt, wildcards.model)
    return {"weights": weights, "record": record}


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
        inputs["trunk"] = f"{W.RESULTS}/{wildcards.family}/trunk/seed{ckpt.seed}"
    return inputs


def mini_test_files(wildcards):
    return W.mini_test_files(config, wildcards.family, wildcards.suite)


def heldout_stream(wildcards):
    """Retention text: the family corpus's held-out split, or evaluate.retention_text."""
    if config["evaluate"]["retention_text"] is None:
        return f"{corpus_dir(wildcards.family)}/heldout.npy"
    return f"{W.RESULTS}/{wildcards.family}/retention/heldout.npy"
