"""TRL fine-tuning of a tiny checkpoint: outputs, provenance, divergence as a result,
resumption after a kill or a Slurm signal, effective batch across process counts."""

import json
import math
import subprocess
import sys

import pytest

from overtrained.core import config, jsonio, provenance
from overtrained.data import task_data
from overtrained.data.corpus import CorpusSpec
from overtrained.train import finetune

FT = config.load({})["finetune"]
DRIVER = __import__("pathlib").Path(__file__).parent / "drivers" / "finetune_until.py"


@pytest.fixture(scope="module")
def train_jsonl(tmp_path_factory):
    out = tmp_path_factory.mktemp("task")
    task_data.write_task(out, "arithmetic", CorpusSpec(), n_train=32, n_test=4, seed=0)
    return out / "train.jsonl"


def run(checkpoint_dir, train_jsonl, tmp_path, lr, **ft_overrides):
    return finetune.run(**spec(checkpoint_dir, train_jsonl, tmp_path, lr, **ft_overrides))


def spec(checkpoint_dir, train_jsonl, tmp_path, lr, **ft_overrides) -> dict:
    """Arguments of finetune.run, JSON-serialisable (they also cross process boundaries)."""
    ft = {**FT, "batch_size": 8, "max_length": 64, **ft_overrides}
    return {
        "base_dir": str(checkpoint_dir),
        "train_jsonl": str(train_jsonl),
        "out_model_dir": str(tmp_path / "model"),
        "out_train_json": str(tmp_path / "train.json"),
        "ft": ft,
        "lr": lr,
        "seed": 0,
        "params": {"code": "test", "lr": lr},
        "scratch_dir": str(tmp_path / "scratch"),
    }


def test_finetune_writes_safetensors_and_a_complete_record(checkpoint_dir, train_jsonl, tmp_path):
    record = run(checkpoint_dir, train_jsonl, tmp_path, 1e-3)
    assert record == jsonio.read_json(tmp_path / "train.json")
    assert record["status"] == "ok"
    assert record["steps"] == 4  # 32 examples / batch 8, one epoch
    assert len(record["loss_curve"]) == 4 and math.isfinite(record["final_train_loss"])
    assert record["tokens_seen"] > 32 and record["tokens_per_second"] > 0
    assert record["base_sha"] == jsonio.read_json(checkpoint_dir / "provenance.json")["sha"]
    assert record["dataset_sha"] == provenance.sha256_file(train_jsonl)
    assert record["versions"]["trl"]
    files = {p.name for p in (tmp_path / "model").iterdir()}
    assert "model.safetensors" in files and "tokenizer.json" in files
    assert not {f for f in files if f.endswith((".bin", ".pt", ".pth", ".pkl"))}
    assert not (tmp_path / "scratch").exists()  # trainer checkpoints go after success
    assert record["peak_rss_mib"] > 0 and record["train_seconds"] > 0
    assert record["examples_trained"] == record["examples"] == 32
    assert record["hyperparameters"]["gradient_accumulation_steps"] == 1
    assert record["hyperparameters"]["per_device_batch_size"] == 8


def test_a_max_length_no_prompt_fits_in_is_a_config_error_before_training(
    checkpoint_dir, train_jsonl, tmp_path
):
    """TRL would drop every example and fail on `num_samples=0`: name the key instead."""
    from overtrained.models.loading import load_tokenizer

    rows = jsonio.read_jsonl(train_jsonl)
    lengths = [len(load_tokenizer(checkpoint_dir)(r["prompt"])["input_ids"]) for r in rows]
    message = (
        f"finetune.max_length: {min(lengths)} tokens leave no completion token in any of the "
        f"32 training examples (their prompts are {min(lengths)}-{max(lengths)} tokens); "
        f"raise finetune.max_length above {max(lengths)}"
    )
    with pytest.raises(config.ConfigError) as info:
        run(checkpoint_dir, train_jsonl, tmp_path, 1e-3, max_length=min(lengths))
    assert str(info.value) == message
    assert not (tmp_path / "train.json").exists()


def test_a_diverging_run_stops_early_and_is_recorded_not_raised(
    checkpoint_dir, train_jsonl, tmp_path
):
    record = run(checkpoint_dir, train_jsonl, tmp_path, 1e6)
    assert record["status"] == "diverged"
    assert record["diverged_at_step"] == record["steps"] < 4  # stopped before the 4th step
    assert (tmp_path / "train.json").exists() and (tmp_path / "model").is_dir()


@pytest.mark.parametrize(
    ("losses", "status"),
    [
        ([5.0, 4.0, 3.0], "ok"),
        ([5.0, 40.0, 3.0], "ok"),
        ([5.0, 51.0, 3.0], "diverged"),
        ([5.0, float("nan")], "diverged"),
        ([5.0, float("inf")], "diverged"),
        ([], "diverged"),
    ],
)
def test_run_status(losses, status):
    assert finetune.run_status(losses, factor=10.0) == status


@pytest.fixture(scope="module")
def long_train_jsonl(tmp_path_factory):
    out = tmp_path_factory.mktemp("long_task")
    task_data.write_task(out, "arithmetic", CorpusSpec(), n_train=64, n_test=4, seed=0)
    return out / "train.jsonl"


@pytest.fixture(scope="module")
def uninterrupted(checkpoint_dir, long_train_jsonl, tmp_path_factory):
    """8 steps at batch 8 without interruption: the reference for resumed runs."""
    out = tmp_path_factory.mktemp("uninterrupted")
    record = run(checkpoint_dir, long_train_jsonl, out, 1e-3, save_steps=2)
    return record, (out / "model" / "model.safetensors").read_bytes()


def run_until_signal(run_spec: dict, tmp_path, step: int, signame: str):
    path = tmp_path / "spec.json"
    path.write_text(json.dumps(run_spec))
    return subprocess.run(
        [sys.executable, str(DRIVER), str(path), str(step), signame],
        capture_output=True,
        text=True,
        timeout=300,
    )


def assert_same_run(resumed: dict, weights: bytes, reference: tuple[dict, bytes]):
    record, reference_weights = reference
    assert resumed["steps"] == record["steps"] == 8
    assert resumed["loss_curve"] == record["loss_curve"]
    assert resumed["final_train_loss"] == record["final_train_loss"]
    assert resumed["tokens_seen"] == record["tokens_seen"]
    assert weights == reference_weights  # bit for bit


def test_killed_run_resumes_to_the_same_result(
    checkpoint_dir, long_train_jsonl, tmp_path, uninterrupted
):
    run_spec = spec(checkpoint_dir, long_train_jsonl, tmp_path, 1e-3, save_steps=2)
    killed = run_until_signal(run_spec, tmp_path, step=5, signame="KILL")
    assert killed.returncode == -9, killed.stderr[-2000:]
    assert not (tmp_path / "train.json").exists()
    scratch = tmp_path / "scratch"
    assert sorted(p.name for p in scratch.glob("checkpoint-*")) == ["checkpoint-2", "checkpoint-4"]
    resumed = finetune.run(**run_spec)
    assert resumed["resumed_from_step"] == 4
    assert_same_run(resumed, (tmp_path / "model" / "model.safetensors").read_bytes(), uninterrupted)
    assert not scratch.exists()


def test_sigterm_saves_a_checkpoint_and_a_rerun_resumes(
    checkpoint_dir, long_train_jsonl, tmp_path, uninterrupted
):
    # No periodic checkpoints at all: the one resumed from is the one SIGTERM made.
    run_spec = spec(checkpoint_dir, long_train_jsonl, tmp_path, 1e-3, save_steps=0)
    stopped = run_until_signal(run_spec, tmp_path, step=3, signame="TERM")
    assert stopped.returncode != 0
    assert "Interrupted: stopped by signal SIGTERM" in stopped.stderr
    checkpoints = [p.name for p in (tmp_path / "scratch").glob("checkpoint-*")]
    assert len(checkpoints) == 1
    resumed = finetune.run(**run_spec)
    assert resumed["resumed_from_step"] == int(checkpoints[0].split("-")[1]) in (3, 4)
    assert_same_run(resumed, (tmp_path / "model" / "model.safetensors").read_bytes(), uninterrupted)


def test_checkpoints_of_another_run_are_discarded_not_resumed(tmp_path):
    scratch = tmp_path / "scratch"
    assert finetune.prepare_scratch(scratch, {"lr": 1e-3}) is None
    (scratch / "checkpoint-4").mkdir()
    (scratch / "checkpoint-4" / "trainer_state.json").write_text("{}")
    assert finetune.prepare_scratch(scratch, {"lr": 1e-3}) == scratch / "checkpoint-4"
    assert finetune.prepare_scratch(scratch, {"lr": 3e-3}) is None
    assert not (scratch / "checkpoint-4").exists()
    assert json.loads((scratch / finetune.RUN_RECORD).read_text()) == {"lr": 3e-3}


def test_an_incomplete_checkpoint_is_skipped(tmp_path):
    for step, state in ((2, "{}"), (4, "{}"), (6, '{"trunc')):
        (tmp_path / f"checkpoint-{step}").mkdir()
        (tmp_path / f"checkpoint-{step}" / "trainer_state.json").write_text(state)
    (tmp_path / "checkpoint-8").mkdir()  # killed before trainer_state.json was written
    assert finetune.latest_checkpoint(tmp_path) == tmp_path / "checkpoint-4"


def test_tokens_add_up_across_resumed_sessions():
    # session 1: steps 1-3 (killed after 3, checkpoint at 2); session 2 resumed from 2
    history = [
        {"step": 1, "num_tokens": 10},
        {"step": 2, "num_tokens": 20},
        {"step": 2, "loss": 1.0},
        {"step": 3, "num_tokens": 8},
        {"step": 4, "num_tokens": 15},
    ]
    assert finetune.tokens_from_log(history, [0, 2]) == (35, 15)
    assert finetune.tokens_from_log(history[:2], [0]) == (20, 20)
    # resumed from the last checkpoint with nothing left to train: no rate to report
    assert finetune.tokens_from_log(history[:2], [0, 2]) == (20, None)


@pytest.mark.parametrize("gpus", [1, 2, 4, 8])
@pytest.mark.parametrize("per_device", [None, 1, 2])
def test_effective_batch_is_the_same_for_every_gpu_count(gpus, per_device):
    ft = config.load(
        {"finetune": {"batch_size": 64, "gpus": gpus, "per_device_batch_size": per_device}}
    )["finetune"]
    size, accumulation = finetune.batch_layout(ft, gpus)
    assert size * accumulation * gpus == 64
    assert size == (per_device or 64 // gpus)


def test_two_processes_train_like_one_with_accumulation(
    checkpoint_dir, long_train_jsonl, tmp_path, uninterrupted
):
    """Effective batch 8 as 2 CPU processes x 4 (DDP under torchrun) and as 1 process x 4 x
    2 accumulation steps: same examples per step, same losses to float tolerance."""
    one = run(checkpoint_dir, long_train_jsonl, tmp_path / "one", 1e-3, per_device_batch_size=4)
    two_spec = spec(
        checkpoint_dir, long_train_jsonl, tmp_path / "two", 1e-3, per_device_batch_size=4
    )
    two = finetune.launch(two_spec, processes=2)
    assert one["hyperparameters"]["gradient_accumulation_steps"] == 2
    assert two["hyperparameters"]["gradient_accumulation_steps"] == 1
    assert two["hyperparameters"]["world_size"] == 2
    assert one["steps"] == two["steps"] == 8
    losses = [c[2] for c in one["loss_curve"]], [c[2] for c in two["loss_curve"]]
    assert losses[0] == pytest.approx(losses[1], rel=1e-4)
    assert losses[0] == pytest.approx([c[2] for c in uninterrupted[0]["loss_curve"]], rel=1e-4)
    assert not (tmp_path / "two" / "scratch").exists()


def test_padding_free_batches_give_the_padded_losses(checkpoint_dir, long_train_jsonl, tmp_path):
    padded = run(checkpoint_dir, long_train_jsonl, tmp_path / "a", 1e-3, max_steps=3)
    free = run(
        checkpoint_dir, long_train_jsonl, tmp_path / "b", 1e-3, max_steps=3, batching="padding_free"
    )
    assert [c[2] for c in free["loss_curve"]] == pytest.approx(
        [c[2] for c in padded["loss_curve"]], rel=1e-4
    )


def test_gpu_checks_fail_clearly_before_training():
    ft = {**FT, "gpus": 2}
    with pytest.raises(finetune.DeviceError, match=r"gpus is 2 but this job sees no CUDA device"):
        finetune.check_devices(ft, cuda_available=False, cuda_count=0, bf16_ok=False)
    with pytest.raises(finetune.DeviceError, match=r"sees 1 GPU\(s\).*ask the scheduler for 2"):
        finetune.check_devices(ft, cuda_available=True, cuda_count=1, bf16_ok=True)
    assert finetune.check_devices(ft, cuda_available=True, cuda_count=4, bf16_ok=True) == "cuda"
    with pytest.raises(finetune.DeviceError, match="no bf16 support"):
        finetune.check_devices({**FT, "precision": "bf16"}, False, 0, False)
    assert finetune.check_devices(FT, cuda_available=False, cuda_count=0, bf16_ok=False) == "cpu"


def test_a_gpu_job_on_a_cpu_node_fails_before_launching(checkpoint_dir, train_jsonl, tmp_path):
    run_spec = spec(checkpoint_dir, train_jsonl, tmp_path, 1e-3, gpus=2)
    with pytest.raises(finetune.DeviceError, match="sees no CUDA device"):
        finetune.launch(run_spec, processes=2)
    with pytest.raises(finetune.DeviceError, match="sees no CUDA device"):
        finetune.launch({**run_spec, "ft": {**run_spec["ft"], "gpus": 1}}, processes=1)
    assert not (tmp_path / "train.json").exists()


def test_fsdp_where_it_cannot_shard_fails_instead_of_training_unsharded(
    checkpoint_dir, train_jsonl, tmp_path, capfd
):
    """accelerate enables FSDP on several GPUs only; 2 CPU processes would train unsharded."""
    run_spec = spec(checkpoint_dir, train_jsonl, tmp_path, 1e-3, fsdp=True, per_device_batch_size=4)
    with pytest.raises(subprocess.CalledProcessError):
        finetune.launch(run_spec, processes=2)
    assert "DeviceError: finetune.fsdp is on but FSDP is not active" in capfd.readouterr().err
    assert not (tmp_path / "train.json").exists()


def test_a_nan_loss_stops_the_run_as_diverged(checkpoint_dir, train_jsonl, tmp_path):
    """NaN weights from step 2 on: the loss logged at step 2 is NaN (transformers would log it
    as the running mean unless told not to), the run stops there and says so."""
    import torch
    from transformers import TrainerCallback

    class PoisonAfterStep1(TrainerCallback):
        def on_step_end(self, args, state, control, model=None, **kwargs):
            if state.global_step == 1:
                with torch.no_grad():
                    next(model.parameters()).fill_(float("nan"))

    record = finetune.run(
        **spec(checkpoint_dir, train_jsonl, tmp_path, 1e-3), callbacks=(PoisonAfterStep1(),)
    )
    assert record["status"] == "diverged" and record["diverged_at_step"] == 2
    assert math.isnan(record["final_train_loss"]) and not record["finite_weights"]
    assert record["steps"] == 2


def test_a_slurm_job_saves_before_its_time_limit_and_resumes(
    checkpoint_dir, long_train_jsonl, tmp_path, uninterrupted, monkeypatch
):
    """Past its deadline (end time minus the margin), a Slurm job saves after the step it is
    in and stops; the retry resumes it to the uninterrupted result."""
    run_spec = spec(checkpoint_dir, long_train_jsonl, tmp_path, 1e-3, save_steps=0)
    monkeypatch.setenv("SLURM_JOB_ID", "123")
    monkeypatch.setenv("SLURM_JOB_END_TIME", str(int(__import__("time").time()) + 60))
    with pytest.raises(finetune.Interrupted, match="time limit approaching at step 1"):
        finetune.run(**run_spec)  # the default 5-minute margin is already past
    assert [p.name for p in (tmp_path / "scratch").glob("checkpoint-*")] == ["checkpoint-1"]
    monkeypatch.delenv("SLURM_JOB_ID")
    resumed = finetune.run(**run_spec)
    assert resumed["resumed_from_step"] == 1
    assert_same_run(resumed, (tmp_path / "model" / "model.safetensors").read_bytes(), uninterrupted)


def test_the_deadline_comes_from_slurm_only(monkeypatch):
    monkeypatch.delenv("SLURM_JOB_ID", raising=False)
    assert finetune.job_deadline(60, 300) is None
    monkeypatch.setenv("SLURM_JOB_ID", "1")
    monkeypatch.setenv("SLURM_JOB_END_TIME", "1000000")
    assert finetune.job_deadline(60, 300) == 1000000 - 300
    monkeypatch.delenv("SLURM_JOB_END_TIME")  # older Slurm: job start (~ process start) + runtime
    started = __import__("time").time() - provenance.seconds_since_process_start()
    assert finetune.job_deadline(60, 300) == pytest.approx(started + 3600 - 300, abs=2)


def test_empty_scratch_folders_are_pruned_up_to_the_root(tmp_path):
    root = tmp_path / "scratch"
    done = root / "wf-1234" / "mini" / "1M-seed0" / "ft" / "lang" / "lr0.01" / "seed0"
    busy = root / "wf-1234" / "mini" / "1M-seed0" / "ft" / "lang" / "lr0.03" / "seed0"
    busy.mkdir(parents=True)
    (busy / "checkpoint-2").mkdir()
    done.mkdir(parents=True)
    done.rmdir()  # what run() leaves after success
    finetune.prune_empty_parents(done, root)
    assert not (root / "wf-1234" / "mini" / "1M-seed0" / "ft" / "lang" / "lr0.01").exists()
    assert busy.exists() and root.exists()
    busy_parent = busy.parent
    for path in (busy / "checkpoint-2", busy):
        path.rmdir()
    finetune.prune_empty_parents(busy, root)
    assert not busy_parent.exists() and root.exists() and not any(root.iterdir())
