"""Text data: the built-in corpus (the Python documentation shipped with every Python, in
``pydoc_data.topics``) or the user's own ``.txt`` / folder / ``.jsonl`` files; deterministic,
non-overlapping calibration / tuning / evaluation splits; fixed-length token windows; and the
multiple-choice continuation items used for accuracy.
"""
from __future__ import annotations

import hashlib
import json
import random
from dataclasses import dataclass
from pathlib import Path

import torch
from transformers import PreTrainedTokenizerBase

from common.textfile import read_text
from workloads.errors import UserError

__all__ = ["BUILTIN", "ChoiceItem", "DISTRACTORS", "PASSAGE_CHARS", "SPLITS", "choice_items",
           "load_documents", "load_split", "passages", "split_of", "split_windows", "tokenize",
           "windows"]

BUILTIN = "pydoc"
SPLITS = ("calibration", "tuning", "eval")
# Share of passages (by a hash of their text, so the split never depends on file order) that
# goes to each split: 10% calibration, 20% evaluation, the rest tuning.
_SPLIT_BOUNDS = {"calibration": (0, 10), "eval": (10, 30), "tuning": (30, 100)}
PASSAGE_CHARS = 2000


def load_documents(source: str | None = None) -> list[str]:
    """Documents of the built-in corpus (``None`` or ``"pydoc"``), a ``.txt`` file, a folder of
    ``.txt`` / ``.jsonl`` files (recursively, in sorted order) or a ``.jsonl`` file whose lines
    are objects with a ``text`` field."""
    if source is None or source == BUILTIN:
        from pydoc_data.topics import topics

        return [topics[name] for name in sorted(topics)]
    path = Path(source)
    # Path("") is the current folder: an empty --data must not silently read it.
    if not str(source).strip() or not path.exists():
        raise UserError(f"data '{source}' not found: give a .txt file, a .jsonl file, a folder, or '{BUILTIN}'")
    try:
        if path.is_dir():
            files = sorted(p for p in path.rglob("*") if p.suffix in (".txt", ".jsonl") and p.is_file())
            if not files:
                raise UserError(f"folder '{source}' holds no .txt or .jsonl files")
            docs = [doc for f in files for doc in _read_file(f)]
        else:
            docs = _read_file(path)
    except OSError as exc:
        where = exc.filename or source
        raise UserError(f"cannot read data '{where}': {exc.strerror or exc}") from None
    docs = [d for d in docs if d.strip()]
    if not docs:
        raise UserError(f"data '{source}' holds no text")
    return docs


def _read_file(path: Path) -> list[str]:
    """The documents of one ``.txt`` (one document) or ``.jsonl`` file (one per line), decoded
    by ``common.textfile`` (BOMs honoured, else strict UTF-8, CRLF normalized, binaries refused)."""
    if path.suffix not in (".txt", ".jsonl"):
        raise UserError(f"{path}: unsupported file type '{path.suffix}' (use .txt or .jsonl)")
    what = "JSON-lines file" if path.suffix == ".jsonl" else "text file"
    text = read_text(path, what=what, error=UserError)
    if path.suffix == ".txt":
        return [text]
    docs = []
    for lineno, line in enumerate(text.split("\n"), 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise UserError(f"{path}:{lineno}: not valid JSON ({exc.msg})") from None
        except (ValueError, RecursionError):  # a 5000-digit integer, or [[[[... nested too deep
            raise UserError(f"{path}:{lineno}: not a JSON object with a 'text' field (too large or too deeply nested)") from None
        if not isinstance(record, dict) or not isinstance(record.get("text"), str):
            raise UserError(f"{path}:{lineno}: each line needs a string field 'text'")
        docs.append(record["text"].replace("\r\n", "\n").replace("\r", "\n"))
    return docs


def passages(documents: list[str], *, target_chars: int = PASSAGE_CHARS) -> list[str]:
    """Cut documents into passages of about ``target_chars`` characters at paragraph breaks."""
    out: list[str] = []
    for doc in documents:
        current: list[str] = []
        size = 0
        for para in doc.split("\n\n"):
            current.append(para)
            size += len(para) + 2
            if size >= target_chars:
                out.append("\n\n".join(current).strip())
                current, size = [], 0
        if current and "".join(current).strip():
            out.append("\n\n".join(current).strip())
    return [p for p in out if p]


def split_of(passage: str) -> str:
    """Which split a passage belongs to, from a hash of its text (stable across runs)."""
    bucket = int(hashlib.sha1(passage.encode("utf-8")).hexdigest(), 16) % 100
    for name, (lo, hi) in _SPLIT_BOUNDS.items():
        if lo <= bucket < hi:
            return name
    raise AssertionError(bucket)


def load_split(split: str, source: str | None = None) -> list[str]:
    """The passages of one split (``calibration``, ``tuning`` or ``eval``)."""
    if split not in SPLITS:
        raise UserError(f"unknown split '{split}': use one of {', '.join(SPLITS)}")
    chosen = [p for p in passages(load_documents(source)) if split_of(p) == split]
    if not chosen:
        raise UserError(f"data '{source or BUILTIN}' is too small: its '{split}' split is empty")
    return chosen


def tokenize(tokenizer: PreTrainedTokenizerBase, texts: list[str]) -> torch.Tensor:
    """One long 1-D token stream: each passage followed by the end-of-sequence token."""
    eos = tokenizer.eos_token_id
    ids: list[int] = []
    for ids_one in tokenizer(texts, add_special_tokens=False)["input_ids"]:
        ids.extend(ids_one)
        if eos is not None:
            ids.append(eos)
    return torch.tensor(ids, dtype=torch.long)


def windows(
    ids: torch.Tensor,
    seq_len: int,
    *,
    max_windows: int | None = None,
    shuffle: bool = False,
    seed: int = 0,
) -> torch.Tensor:
    """Non-overlapping windows ``[n, seq_len]`` of a token stream (the tail that does not fill a
    window is dropped). With ``shuffle``, the windows are permuted by ``seed`` before
    ``max_windows`` are kept."""
    if seq_len < 2:
        raise UserError(f"--seq-len must be at least 2 (got {seq_len})")
    n = ids.numel() // seq_len
    if n == 0:
        raise UserError(f"the text has {ids.numel()} tokens, fewer than one window of {seq_len}")
    out = ids[: n * seq_len].view(n, seq_len)
    if shuffle:
        out = out[torch.randperm(n, generator=torch.Generator().manual_seed(seed))]
    if max_windows is not None:
        out = out[:max_windows]
    return out


def split_windows(
    tokenizer: PreTrainedTokenizerBase,
    split: str,
    seq_len: int,
    *,
    source: str | None = None,
    max_windows: int | None = None,
    shuffle: bool = False,
    seed: int = 0,
) -> torch.Tensor:
    """Windows of one split of a corpus, ready for a model."""
    ids = tokenize(tokenizer, load_split(split, source))
    return windows(ids, seq_len, max_windows=max_windows, shuffle=shuffle, seed=seed)


@dataclass(frozen=True)
class ChoiceItem:
    """A context, ``n`` candidate continuations of equal length, and the index of the true one."""

    context: torch.Tensor  # [context_tokens]
    choices: torch.Tensor  # [n_choices, continuation_tokens]
    label: int


DISTRACTORS = ("same_passage", "other_passages")


def choice_items(
    tokenizer: PreTrainedTokenizerBase,
    texts: list[str],
    *,
    n_items: int = 200,
    context_tokens: int = 32,
    continuation_tokens: int = 16,
    n_choices: int = 4,
    distractors: str = "same_passage",
    seed: int = 0,
) -> list[ChoiceItem]:
    """Multiple-choice continuation items: the true next chunk of a passage against
    ``n_choices - 1`` continuations drawn from other chunks of the *same* passage
    (``distractors="same_passage"``: same topic and style, so only the local continuation tells
    them apart) or from *other* passages (``"other_passages"``: the topic alone often gives the
    answer away). Returns up to ``n_items`` items; with ``same_passage`` a passage needs at least
    ``n_choices`` chunks of ``context_tokens + continuation_tokens`` tokens to give items.

    Raises:
        UserError: the text is too small for any item, or an unknown ``distractors``.
    """
    if distractors not in DISTRACTORS:
        raise UserError(f"unknown distractors '{distractors}': use one of {', '.join(DISTRACTORS)}")
    span = context_tokens + continuation_tokens
    chunks: list[tuple[int, torch.Tensor]] = []  # (passage index, tokens)
    by_passage: dict[int, list[int]] = {}
    for pid, ids in enumerate(tokenizer(texts, add_special_tokens=False)["input_ids"]):
        for start in range(0, len(ids) - span + 1, span):
            by_passage.setdefault(pid, []).append(len(chunks))
            chunks.append((pid, torch.tensor(ids[start : start + span], dtype=torch.long)))
    if distractors == "same_passage":
        usable = [i for pid, idx in by_passage.items() if len(idx) >= n_choices for i in idx]
    else:
        usable = list(range(len(chunks))) if len(by_passage) >= 2 else []
    if not usable:
        raise UserError(f"the evaluation text is too small for multiple-choice items ({distractors} distractors)")
    rng = random.Random(seed)
    rng.shuffle(usable)
    items = []
    for idx in usable[:n_items]:
        pid, tokens = chunks[idx]
        if distractors == "same_passage":
            others = [chunks[j][1] for j in rng.sample([j for j in by_passage[pid] if j != idx], n_choices - 1)]
        else:
            others = []
            while len(others) < n_choices - 1:
                other_pid, other = chunks[rng.randrange(len(chunks))]
                if other_pid != pid:
                    others.append(other)
        wrong = [o[context_tokens:] for o in others]
        label = rng.randrange(n_choices)
        choices = wrong[:label] + [tokens[context_tokens:]] + wrong[label:]
        items.append(ChoiceItem(tokens[:context_tokens], torch.stack(choices), label))
    return items
