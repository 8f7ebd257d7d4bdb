"""One loading module for every stage: weight layouts, the pickle and remote-code policy,
weight digests, and probe models for hub checkpoints (tiny random transformers models)."""

import hashlib
import json
import shutil

import pytest
import torch

from overtrained.core import provenance
from overtrained.models import loading
from overtrained.models.loading import LoadingError
from overtrained.models.model import Olmo2LM

TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json")
SHAPE = {
    "vocab_size": 300,  # the corpus tokenizer's
    "hidden_size": 32,
    "intermediate_size": 64,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "max_position_embeddings": 64,
    "initializer_range": 0.05,
    "bos_token_id": 0,
    "eos_token_id": 0,
    "pad_token_id": None,  # as in hub configs without a pad token
    "tie_word_embeddings": False,
}


def tiny_hf_model(arch: str = "llama", seed: int = 0):
    """A random transformers causal LM of `arch` (llama, olmo, or olmo2 with grouped-query
    attention, which the native OLMo-2 loader does not read)."""
    import transformers as tf

    classes = {
        "llama": (tf.LlamaConfig, tf.LlamaForCausalLM, {"num_key_value_heads": 2}),
        "olmo": (tf.OlmoConfig, tf.OlmoForCausalLM, {}),
        "olmo2": (tf.Olmo2Config, tf.Olmo2ForCausalLM, {"num_key_value_heads": 2}),
    }
    config_cls, model_cls, extra = classes[arch]
    torch.manual_seed(seed)
    return model_cls(config_cls(**SHAPE, **extra)).eval()


def save_model_dir(model, out, tokenizer_dir, layout: str = "single"):
    """`model` as a model directory: `single` or `sharded` safetensors, or `pickle` only."""
    out.mkdir(parents=True)
    if layout == "pickle":
        model.config.save_pretrained(out)
        torch.save(model.state_dict(), out / "pytorch_model.bin")
    else:
        model.save_pretrained(out, max_shard_size="40KB" if layout == "sharded" else "50GB")
    for name in TOKENIZER_FILES:
        shutil.copy(tokenizer_dir / name, out / name)
    return out


@pytest.fixture(scope="module")
def llama_dirs(corpus_dir, tmp_path_factory):
    """One tiny Llama in every weight layout."""
    model = tiny_hf_model("llama")
    root = tmp_path_factory.mktemp("llama")
    return {
        layout: save_model_dir(model, root / layout, corpus_dir / "tokenizer", layout)
        for layout in ("single", "sharded", "pickle")
    }


def test_weight_files_of_each_layout(llama_dirs, tmp_path):
    assert loading.weight_files(llama_dirs["single"]) == [
        llama_dirs["single"] / "model.safetensors"
    ]
    shards = loading.weight_files(llama_dirs["sharded"])
    assert len(shards) > 1 and all(p.name.startswith("model-000") for p in shards)
    assert shards == sorted(shards)
    assert [p.name for p in loading.weight_files(llama_dirs["pickle"])] == ["pytorch_model.bin"]
    both = tmp_path / "both"
    shutil.copytree(llama_dirs["single"], both)
    shutil.copy(llama_dirs["pickle"] / "pytorch_model.bin", both)
    assert [p.name for p in loading.weight_files(both)] == ["model.safetensors"]
    loading.check_loadable(both)  # pickles beside safetensors are never read
    (tmp_path / "empty").mkdir()
    with pytest.raises(LoadingError, match="holds no weights"):
        loading.weight_files(tmp_path / "empty")


def test_a_missing_shard_is_named(llama_dirs, tmp_path):
    broken = tmp_path / "broken"
    shutil.copytree(llama_dirs["sharded"], broken)
    first = loading.weight_files(broken)[0]
    first.unlink()
    with pytest.raises(LoadingError, match=first.name):
        loading.weight_files(broken)


def test_links_into_a_cache_this_node_does_not_see_are_named(llama_dirs, tmp_path):
    linked = tmp_path / "base"
    linked.mkdir()
    for path in llama_dirs["single"].iterdir():
        (linked / path.name).symlink_to(tmp_path / "elsewhere" / path.name)
    with pytest.raises(LoadingError) as err:
        loading.load_probe_model(linked, native=False)
    assert str(err.value).startswith(f"{linked / 'config.json'} links to {tmp_path}/elsewhere/")
    assert "put HF_HOME on a filesystem shared by the login node" in str(err.value)
    with pytest.raises(LoadingError, match="which this machine does not see"):
        loading.load_tokenizer(linked)


def test_probe_model_of_a_hub_olmo2_is_not_native(checkpoint_dir):
    """A hub OLMo-2 (7B) goes through transformers (bf16 on a GPU), not fp32 natively."""
    hub = loading.load_probe_model(checkpoint_dir, native=False)
    assert isinstance(hub, loading.HFProbeModel)


def test_pickle_only_is_refused_unless_allowed(llama_dirs, corpus_dir):
    from overtrained.evaluation import probes

    with pytest.raises(LoadingError, match=r"only pickle weights.*allow_pickle: true"):
        loading.check_loadable(llama_dirs["pickle"])
    with pytest.raises(LoadingError, match="allow_pickle"):
        loading.load_probe_model(llama_dirs["pickle"])
    with pytest.raises(LoadingError, match="allow_pickle"):
        loading.load_causal_lm(llama_dirs["pickle"])
    pickled = loading.load_probe_model(llama_dirs["pickle"], allow_pickle=True)
    safe = loading.load_probe_model(llama_dirs["single"])
    windows = probes.heldout_windows(corpus_dir / "heldout.npy", 2 * 64, 64)
    assert probes.pretrain_loss(pickled, windows) == probes.pretrain_loss(safe, windows)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"auto_map": {"AutoModelForCausalLM": "modeling_x.X"}}, "auto_map"),
        ({"model_type": "not_a_model_type"}, "unknown to transformers"),
    ],
)
def test_remote_code_is_refused_unless_trusted(llama_dirs, tmp_path, change, message):
    remote = tmp_path / "remote"
    shutil.copytree(llama_dirs["single"], remote)
    config = json.loads((remote / "config.json").read_text())
    (remote / "config.json").write_text(json.dumps({**config, **change}))
    with pytest.raises(LoadingError, match=rf"{message}.*trust_remote_code: true"):
        loading.check_loadable(remote)
    with pytest.raises(LoadingError, match="trust_remote_code"):
        loading.load_probe_model(remote)
    loading.check_loadable(remote, trust_remote_code=True)  # the policy allows it then


def test_a_tokenizer_with_remote_code_is_refused(llama_dirs, tmp_path):
    remote = tmp_path / "remote"
    shutil.copytree(llama_dirs["single"], remote)
    config = json.loads((remote / "tokenizer_config.json").read_text())
    config["auto_map"] = {"AutoTokenizer": ["tok.T", None]}
    (remote / "tokenizer_config.json").write_text(json.dumps(config))
    with pytest.raises(LoadingError, match="trust_remote_code"):
        loading.load_tokenizer(remote)


def test_sentencepiece_only_tokenizer_without_its_packages_says_what_to_install(
    tmp_path, monkeypatch
):
    (tmp_path / "tokenizer.model").write_bytes(b"")
    (tmp_path / "tokenizer_config.json").write_text('{"tokenizer_class": "LlamaTokenizer"}')
    monkeypatch.setattr(loading, "SENTENCEPIECE_PACKAGES", ("no_such_module_xyz",))
    with pytest.raises(LoadingError, match="pip install sentencepiece protobuf"):
        loading.load_tokenizer(tmp_path)


def test_load_causal_lm_places_and_casts(llama_dirs):
    model = loading.load_causal_lm(llama_dirs["sharded"], "cpu", torch.bfloat16)
    assert next(model.parameters()).dtype == torch.bfloat16
    assert type(model).__name__ == "LlamaForCausalLM"


def test_digest_of_a_single_file_is_its_sha(checkpoint_dir, llama_dirs):
    # What probes, evaluations and sensitivity recorded before hub checkpoints.
    for path in (checkpoint_dir, llama_dirs["single"]):
        assert loading.weights_digest(path) == provenance.sha256_file(path / "model.safetensors")


def sha256sum_listing(entries: dict[str, str]) -> str:
    text = "".join(f"{sha}  {name}\n" for name, sha in sorted(entries.items()))
    return hashlib.sha256(text.encode()).hexdigest()


def test_digest_of_shards_hashes_their_listing(llama_dirs):
    shards = loading.weight_files(llama_dirs["sharded"])
    real = {p.name: provenance.sha256_file(p) for p in shards}
    assert loading.weights_digest(llama_dirs["sharded"]) == sha256sum_listing(real)
    assert loading.weights_digest(llama_dirs["sharded"]) != loading.weights_digest(
        llama_dirs["single"]
    )


def test_digest_takes_recorded_hashes_without_reading_the_weights(
    llama_dirs, tmp_path, monkeypatch
):
    hub = tmp_path / "hub"
    shutil.copytree(llama_dirs["sharded"], hub)
    shards = loading.weight_files(hub)
    recorded = {p.name: hashlib.sha256(p.name.encode()).hexdigest() for p in shards}
    files = [{"name": p.name, "size": p.stat().st_size, "sha256": recorded[p.name]} for p in shards]
    provenance.write_json(hub / "provenance.json", {"sha": "abc", "files": files})

    def no_reading(path, *args, **kwargs):
        raise AssertionError(f"{path} was hashed")

    monkeypatch.setattr(provenance, "sha256_file", no_reading)
    assert loading.weights_digest(hub) == sha256sum_listing(recorded)

    files[0]["size"] += 1  # a record that does not describe these files is an error
    provenance.write_json(hub / "provenance.json", {"sha": "abc", "files": files})
    with pytest.raises(LoadingError, match="download it again"):
        loading.weights_digest(hub)


def test_probe_model_is_native_for_the_workflows_checkpoints(checkpoint_dir, llama_dirs):
    native = loading.load_probe_model(checkpoint_dir)
    assert isinstance(native, Olmo2LM) and not native.training
    assert next(native.parameters()).dtype == torch.float32
    hub = loading.load_probe_model(llama_dirs["single"])
    assert isinstance(hub, loading.HFProbeModel) and not hub.hf.training
    assert next(hub.parameters()).dtype == torch.float32  # on a CPU
    assert loading.vocab_size(native) == loading.vocab_size(hub) == 300


@pytest.mark.parametrize("arch", ["llama", "olmo", "olmo2"])
def test_probe_model_forward_and_init_std(arch, corpus_dir, tmp_path):
    hf = tiny_hf_model(arch)
    model_dir = save_model_dir(hf, tmp_path / arch, corpus_dir / "tokenizer")
    model = loading.load_probe_model(model_dir)
    assert isinstance(model, loading.HFProbeModel)  # olmo2 with GQA is not read natively
    ids = torch.randint(0, 300, (2, 10), generator=torch.Generator().manual_seed(0))
    logits, loss = model(ids)
    assert loss is None
    with torch.no_grad():
        torch.testing.assert_close(logits, hf(input_ids=ids).logits, rtol=0, atol=0)
    for name, param in model.named_parameters():
        assert model.init_std(name) == (0.05 if param.ndim == 2 else 0.0), name
    with pytest.raises(KeyError):
        model.init_std("nope")


def sentencepiece_tokenizer_dir(out, texts: list[str]):
    """A Llama-style model directory's tokenizer that is only a sentencepiece tokenizer.model
    (as LLM360/Amber ships it): byte-fallback BPE, no normalisation, <s> = 1, </s> = 2."""
    import io

    spm = pytest.importorskip("sentencepiece")
    pytest.importorskip("google.protobuf")  # transformers reads the model's protobuf with it
    model = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(texts),
        model_writer=model,
        vocab_size=300,
        model_type="bpe",
        byte_fallback=True,
        normalization_rule_name="identity",
        remove_extra_whitespaces=False,
        unk_id=0,
        bos_id=1,
        eos_id=2,
        pad_id=-1,
        minloglevel=2,
    )
    out.mkdir(parents=True)
    (out / "tokenizer.model").write_bytes(model.getvalue())
    config = {
        "tokenizer_class": "LlamaTokenizer",
        "bos_token": "<s>",
        "eos_token": "</s>",
        "unk_token": "<unk>",
        "add_bos_token": True,
        "legacy": False,
    }
    (out / "tokenizer_config.json").write_text(json.dumps(config))
    return out, spm.SentencePieceProcessor(model_proto=model.getvalue())


def test_a_sentencepiece_only_tokenizer_encodes_as_sentencepiece(tmp_path):
    from overtrained.evaluation import probes

    texts = [f"the river {i} runs past the old mill, and the hill." for i in range(30)]
    path, sp = sentencepiece_tokenizer_dir(tmp_path / "spm", texts)
    tokenizer = loading.load_tokenizer(path)
    assert (tokenizer.bos_token_id, tokenizer.eos_token_id) == (1, 2)
    for text in [*texts[:3], "12 + 30 = 42", "two\nlines  and  spaces"]:
        assert tokenizer(text, add_special_tokens=False).input_ids == sp.encode(text)
    # Task rows are tokenised like TRL does: with the tokenizer's BOS, masked with the prompt.
    [(ids, labels)] = probes.encode_completion_rows(
        tokenizer, [{"prompt": "the river", "completion": " runs"}], 2, 64
    )
    prompt = [1, *sp.encode("the river")]
    assert ids == [1, *sp.encode("the river runs"), 2]
    assert labels == [-100] * len(prompt) + ids[len(prompt) :]
