"""Generators by Hugging Face path: causal and seq2seq models load and generate through the same API (tiny
randomly initialised models saved locally, with the shipped MiniLM tokenizer; outputs are noise, the code
paths are real); spec parsing; the context window caps the prompt budget."""

from __future__ import annotations

from pathlib import Path

import pytest

from rag.errors import ConfigError
from rag.models.generate import LocalGenerator, make_generator
from rag.models.llm_openai import OpenAIGenerator


def _tiny(tmp_path: Path, kind: str) -> Path:
    from transformers import AutoTokenizer, GPT2Config, GPT2LMHeadModel, T5Config, T5ForConditionalGeneration

    from rag.models.encoders import resolve_model_path

    tok = AutoTokenizer.from_pretrained(resolve_model_path("default"))
    if kind == "seq2seq":
        cfg = T5Config(vocab_size=tok.vocab_size, d_model=16, d_ff=32, d_kv=8, num_layers=1, num_heads=2,
                       decoder_start_token_id=tok.pad_token_id, pad_token_id=tok.pad_token_id,
                       eos_token_id=tok.sep_token_id)  # fmt: skip
        model = T5ForConditionalGeneration(cfg)
    else:
        cfg = GPT2Config(vocab_size=tok.vocab_size, n_embd=16, n_layer=1, n_head=2, n_positions=256,
                         eos_token_id=tok.sep_token_id, bos_token_id=tok.cls_token_id)  # fmt: skip
        model = GPT2LMHeadModel(cfg)
    out = tmp_path / kind
    model.save_pretrained(out)
    tok.save_pretrained(out)
    return out


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["causal", "seq2seq"])
def test_hf_models_by_path(tmp_path: Path, kind: str) -> None:
    gen = make_generator(f"hf:{_tiny(tmp_path, kind)}", max_new_tokens=5, threads=1)
    assert isinstance(gen, LocalGenerator)
    text = gen.generate([{"role": "user", "content": "Evidence: keys rotate every 90 days. Question: how often?"}])
    assert isinstance(text, str)
    assert "Evidence" not in text  # only new tokens come back, never the prompt
    assert "".join(gen.stream("how often?")).strip() == gen.generate("how often?")
    assert gen.count_tokens("keys rotate") == 2
    if kind == "causal":
        assert gen.context_tokens == 256


def test_specs_and_bad_models(tmp_path: Path) -> None:
    assert isinstance(make_generator("openai:gpt-x", base_url="http://127.0.0.1:9/v1"), OpenAIGenerator)
    assert make_generator("local").name == "smollm2-135m"
    with pytest.raises(ConfigError, match="http"):
        OpenAIGenerator("m", base_url="ftp://example")
    with pytest.raises(ConfigError, match="cannot load LLM"):
        LocalGenerator(str(tmp_path / "missing")).generate("hi")


@pytest.mark.slow
@pytest.mark.llm
def test_gguf_is_converted_once_and_the_cached_copy_generates_the_same(tmp_path, monkeypatch):
    from rag.models.generate import converted_dir, smollm2_gguf

    monkeypatch.setenv("PILOTFISH_CACHE", str(tmp_path))
    prompt = [{"role": "user", "content": "Name one primary colour."}]
    first = LocalGenerator(max_new_tokens=12, threads=1)
    from_gguf = first.generate(prompt)  # reads the GGUF file, then saves the plain copy
    cache = converted_dir(smollm2_gguf())
    assert cache is not None and cache.parent == tmp_path / "gguf" and (cache / "model.safetensors").exists()
    second = LocalGenerator(max_new_tokens=12, threads=1)
    assert second.generate(prompt) == from_gguf
    assert second._model.config.name_or_path == str(cache)  # it did load the copy
    monkeypatch.setenv("PILOTFISH_CACHE", "off")
    assert converted_dir(smollm2_gguf()) is None
