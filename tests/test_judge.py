"""The judge hook's plumbing: answers generated, the command run, its score recorded.
No judge runs here: the command is a stand-in that counts non-empty answers."""

import json
import sys

import pytest

from overtrained.core import config, jsonio
from overtrained.data import task_data
from overtrained.data.corpus import CorpusSpec
from overtrained.evaluation import judge

STAND_IN = (
    f'{sys.executable} -c "import json,sys; rows=[json.loads(l) for l in open(sys.argv[1])]; '
    "json.dump({'score': sum(bool(r['response']) for r in rows) / len(rows), 'judge': 'count'},"
    " open(sys.argv[2], 'w'))\" {responses} {output}"
)


def test_answers_are_generated_and_scored_by_the_command(checkpoint_dir, tmp_path):
    task_data.write_task(tmp_path / "task", "arithmetic", CorpusSpec(), n_train=4, n_test=6, seed=0)
    settings = {"command": STAND_IN, "tasks": ["arith"], "limit": 3, "max_new_tokens": 8}
    out = tmp_path / "eval" / "judge.json"
    out.parent.mkdir()
    record = judge.run(
        checkpoint_dir, tmp_path / "task" / "test.jsonl", "arith", settings, out, {"code": "t"}
    )
    answers = [json.loads(line) for line in (out.parent / "judge_responses.jsonl").open()]
    assert len(answers) == 3 and all(set(a) == {"prompt", "reference", "response"} for a in answers)
    expected = sum(bool(a["response"]) for a in answers) / 3
    assert record["metrics"] == [
        {"metric": "judge_score", "task": "arith", "value": expected, "n": 3}
    ]
    assert record["judge_output"]["judge"] == "count"
    assert jsonio.read_json(out) == record


@pytest.mark.parametrize(
    ("judge_cfg", "message"),
    [
        ({"command": "score {responses} {output}"}, "evaluate.judge.tasks: a judge command needs"),
        ({"command": "score {responses} {output}", "tasks": ["nope"]}, "no task named 'nope'"),
        ({"command": "score {responses}", "tasks": ["arith"]}, "must contain {output}"),
    ],
)
def test_a_judge_needs_tasks_and_both_placeholders(judge_cfg, message):
    with pytest.raises(config.ConfigError, match=message):
        config.load({"evaluate": {"judge": judge_cfg}})


def test_judging_is_off_by_default():
    assert config.load({})["evaluate"]["judge"]["command"] is None
