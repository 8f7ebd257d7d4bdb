# Paths and small helpers shared by the rules; the logic is in overtrained.workflow.


def family_cfg(wildcards):
    return config["families"][wildcards.family]


def corpus_dir(family):
    return f"{W.RESULTS}/{family}/corpus"


def task_test_files(wildcards):
    return {
        task: f"{W.RESULTS}/{wildcards.family}/tasks/{task}/test.jsonl"
        for task in config["finetune"]["tasks"]
    }


def model_files(wildcards):
    """What an evaluation reads: the weights (base or fine-tuned) and their record."""
    path = W.model_dir(wildcards.family, wildcards.ckpt, wildcards.model)
    if wildcards.model == "base":
        return {"weights": f"{path}/model.safetensors", "record": f"{path}/provenance.json"}
    return {"weights": path, "record": f"{os.path.dirname(path)}/train.json"}


def model_dir(wildcards):
    return W.model_dir(wildcards.family, wildcards.ckpt, wildcards.model)


def ft_weights(path):
    """Fine-tuned weights live until their evaluations are done, unless the config keeps them."""
    return path if config["finetune"]["keep_weights"] else temp(path)
