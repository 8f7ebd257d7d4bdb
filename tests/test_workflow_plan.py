"""overtrained.workflow: the names, paths and params the Snakefile is built from."""

import copy
import re
from pathlib import Path

import pytest
import yaml

from overtrained import cli, workflow
from overtrained.core import config as C
from overtrained.core import units
from tests.conftest import TINY_CONFIG, tiny_config


def test_fine_tuned_model_ids_round_trip():
    cfg = tiny_config()
    models = workflow.ft_models(cfg)
    assert len(models) == sum(len(v) for v in cfg["finetune"]["lrs"].values())
    for model in models:
        task, lr, seed = workflow.parse_ft_model(model)
        assert workflow.lr_value(cfg, task, lr) in cfg["finetune"]["lrs"][task]
        assert re.fullmatch(workflow.wildcard_constraints(cfg)["model"], model)


def test_a_family_can_run_a_subset_of_the_fine_tuning_tasks():
    raw = yaml.safe_load(TINY_CONFIG.read_text())
    raw["families"]["other"] = {**raw["families"]["tiny"], "finetune_tasks": ["arith"]}
    cfg = C.load(raw)
    assert workflow.ft_tasks(cfg, "other") == ["arith"]
    assert {workflow.parse_ft_model(m)[0] for m in workflow.ft_models(cfg, "other")} == {"arith"}
    assert workflow.ft_models(cfg, "tiny") == workflow.ft_models(cfg)
    trained = workflow.train_files(cfg)
    assert all("/ft/arith/" in path for path in trained if path.startswith("results/other/"))
    assert any("/ft/lang/" in path for path in trained if path.startswith("results/tiny/"))
    # base models are still evaluated on every suite; only the fine-tuned models are fewer
    evaluated = [p for p in workflow.evaluation_files(cfg) if p.startswith("results/other/")]
    assert any("/base/eval/" in p for p in evaluated)
    raw["families"]["other"]["finetune_tasks"] = ["arithmetic"]
    with pytest.raises(C.ConfigError, match="families.other.finetune_tasks: no task named"):
        C.load(raw)


def test_checkpoint_names_parse_back():
    cfg = tiny_config()
    for ckpt in workflow.checkpoints(cfg, "tiny"):
        assert workflow.checkpoint(cfg, "tiny", ckpt.name) == ckpt
        assert re.fullmatch(workflow.wildcard_constraints(cfg)["ckpt"], ckpt.name)
        assert ckpt.tokens == units.parse_tokens(ckpt.budget)


def test_stream_covers_the_largest_budget_and_ignores_smaller_additions():
    cfg = tiny_config()
    train = cfg["families"]["tiny"]["training"]
    before = workflow.train_stream_tokens(cfg, "tiny")
    needed = workflow.max_budget_tokens(cfg, "tiny") * (train["seq_len"] + 1) / train["seq_len"]
    assert before >= needed
    more = copy.deepcopy(cfg)
    more["families"]["tiny"]["budgets"] = ["8K", *cfg["families"]["tiny"]["budgets"]]
    assert workflow.train_stream_tokens(more, "tiny") == before


def test_stage_code_hash_follows_the_stage_files(tmp_path, monkeypatch):
    stages = ("finetune", "pretrain")
    for n, path in enumerate({p for s in stages for p in workflow.STAGE_CODE[s]}):
        (tmp_path / path).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / path).write_text(f"a{n} = 1\n")
    monkeypatch.setattr(workflow, "PACKAGE_DIR", tmp_path)
    workflow.stage_code_hash.cache_clear()
    ft, pre = workflow.stage_code_hash("finetune"), workflow.stage_code_hash("pretrain")
    (tmp_path / "train/finetune.py").write_text("a = 2\n")
    workflow.stage_code_hash.cache_clear()
    assert workflow.stage_code_hash("finetune") != ft
    assert workflow.stage_code_hash("pretrain") == pre
    workflow.stage_code_hash.cache_clear()


def test_a_moved_or_reworded_stage_file_keeps_its_code_hash(tmp_path, monkeypatch):
    """The hash is of what the code does: a file moved to a subpackage, its imports of the
    package's modules moved and renamed with it, a new docstring, comments, reformatting and
    YAML comments change nothing; a changed statement, constant or YAML value does."""
    code = (
        "from overtrained import tables\n"
        "from overtrained.config import parse_tokens\n\n"
        'def step(x):\n    return tables.SCHEMA, parse_tokens(x) * 2  # doubled\n\nRATE = "1e-3"\n'
    )
    (tmp_path / "finetune.py").write_text(code)
    (tmp_path / "task.yaml").write_text("# a task\ntask: lang\nlimit: 10\n")
    monkeypatch.setattr(workflow, "PACKAGE_DIR", tmp_path)
    monkeypatch.setitem(workflow.STAGE_CODE, "finetune", ("finetune.py", "*.yaml"))
    workflow.stage_code_hash.cache_clear()
    before = workflow.stage_code_hash("finetune")
    for sub in ("train", "analysis", "evaluation"):
        (tmp_path / sub).mkdir()
    (tmp_path / "finetune.py").unlink()
    (tmp_path / "train/finetune.py").write_text(
        '"""Fine-tuning, now documented."""\n\n'
        "from overtrained.analysis import aggregate\n"
        "from overtrained.core.config import parse_tokens\n\n\n"
        'def step(x):\n    """Twice x."""\n    return aggregate.SCHEMA, parse_tokens(x)*2\n\n\n'
        "RATE = '1e-3'  # quoted differently\n"
    )
    (tmp_path / "task.yaml").rename(tmp_path / "evaluation/task.yaml")
    (tmp_path / "evaluation/task.yaml").write_text("task: lang  # moved\nlimit:   10\n")
    monkeypatch.setitem(workflow.STAGE_CODE, "finetune", ("train/finetune.py", "evaluation/*.yaml"))
    workflow.stage_code_hash.cache_clear()
    assert workflow.stage_code_hash("finetune") == before
    for path, old, changed in [
        ("train/finetune.py", "'1e-3'", "'1e-4'"),  # a constant
        ("train/finetune.py", "parse_tokens(x)", "format_tokens(x)"),  # another function
        ("evaluation/task.yaml", "10", "20"),  # a task setting
    ]:
        text = (tmp_path / path).read_text()
        (tmp_path / path).write_text(text.replace(old, changed))
        workflow.stage_code_hash.cache_clear()
        assert workflow.stage_code_hash("finetune") != before, changed
        (tmp_path / path).write_text(text)
    monkeypatch.setitem(workflow.STAGE_CODE, "finetune", ("finetune.py", "evaluation/*.yaml"))
    workflow.stage_code_hash.cache_clear()
    with pytest.raises(FileNotFoundError, match="no file matches 'finetune.py'"):
        workflow.stage_code_hash("finetune")
    workflow.stage_code_hash.cache_clear()


def test_finetune_params_leave_out_grid_axes_and_keep_weights():
    params = workflow.finetune_hyperparameters(tiny_config())
    assert not {"tasks", "lrs", "seeds", "keep_weights"} & set(params)
    assert params["batch_size"] == 8


def test_cli_validate(tmp_path, capsys):
    assert cli.main(["validate", str(workflow.PACKAGE_DIR.parent / "config.yaml")]) == 0
    bad = tmp_path / "bad.yaml"
    bad.write_text("families: {mini: {source: pretrain, budgets: [-1]}}\n")
    assert cli.main(["validate", str(bad)]) == 2
    assert "families.mini.budgets[0]" in capsys.readouterr().err


def test_scratch_folders_are_per_working_directory(tmp_path):
    cfg = C.load({})
    record = "results/mini/1M-seed0/ft/lang/lr0.01/seed0/train.json"
    one = workflow.scratch_dir(cfg, record, str(tmp_path / "a" / "exp"))
    two = workflow.scratch_dir(cfg, record, str(tmp_path / "b" / "exp"))
    assert one != two and one.startswith("scratch/exp-") and two.startswith("scratch/exp-")
    assert one.endswith("/mini/1M-seed0/ft/lang/lr0.01/seed0")
    assert one == workflow.scratch_dir(cfg, record, str(tmp_path / "a" / "exp"))


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"finetune": {"scratch_dir": "results/ckpt"}}, "inside the workflow's outputs"),
        ({"finetune": {"scratch_dir": "x/../results/ckpt"}}, "inside the workflow's outputs"),
        ({"finetune": {"scratch_dir": str(Path.cwd() / "logs")}}, "inside the workflow's outputs"),
        ({"evaluate": {"suites": {"s": {"tasks": ["mini_dataset"]}}}}, "not a miniature task"),
    ],
)
def test_misplaced_settings_are_config_errors(raw, message):
    with pytest.raises(C.ConfigError, match=message):
        C.load(raw)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"families: [\n", "not valid YAML (line 2, column 1)"),
        (b"- a\n- b\n", "must be a mapping of sections such as `families:`"),
        (b"42\n", "(see config.yaml), not a number"),
        (b"\xff\xfe", "not UTF-8 text"),
        (b"", "the config is empty"),
        (None, "no such file"),
        ("dir", "a directory, not a config file"),
    ],
)
def test_validate_answers_any_file_in_one_line(tmp_path, capsys, content, message):
    """`overtrained validate` runs the workflow's own checks (workflow.plan_config) and
    never prints a traceback, whatever file it is given."""
    path = tmp_path / "config.yaml"
    if content == "dir":
        path.mkdir()
    elif content is not None:
        path.write_bytes(content)
    assert cli.main(["validate", str(path)]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_validate_checks_suite_task_names_like_the_workflow(tmp_path, capsys):
    raw = yaml.safe_load((workflow.PACKAGE_DIR.parent / "config.yaml").read_text())
    raw["evaluate"]["suites"]["mini"]["tasks"].append("arc_eazy")
    path = tmp_path / "typo.yaml"
    path.write_text(yaml.safe_dump(raw))
    assert cli.main(["validate", str(path)]) == 2
    assert "'arc_eazy' is not an lm-eval task" in capsys.readouterr().err


def test_a_max_length_below_every_generated_prompt_is_a_plan_time_error():
    """Generated tasks are a function of the config: a max_length at or below every prompt's
    word count (each word at least one token) would leave TRL nothing to train on."""
    raw = yaml.safe_load((workflow.PACKAGE_DIR.parent / "tests/configs/tiny.yaml").read_text())
    raw["finetune"]["max_length"] = 8  # topic prompts have 9-31 words
    with pytest.raises(C.ConfigError, match="task 'topic' of family 'tiny'") as info:
        workflow.plan_config(raw, report=lambda line: None)
    assert str(info.value).startswith("finetune.max_length: 8 tokens leave no completion token")
    raw["finetune"]["lrs"]["topic"] = []  # not fine-tuned: its prompts do not matter
    workflow.plan_config(raw, report=lambda line: None)  # lang and arith have short prompts
