"""A word-level instruction tokenizer, trained offline on every instruction the project can produce.

The instructions come from a closed set of templates (the task library and the language
perturbation's tables), so a word-level vocabulary of a few hundred words covers them all, needs no
download, and keeps the embedding table tiny. Words outside it map to ``[UNK]``, never an error, so
that an unexpected instruction is a measurable failure of the policy, not a crash of the harness.
"""

from __future__ import annotations

import re
from pathlib import Path
from types import SimpleNamespace
from typing import Iterable, Sequence

import numpy as np
import torch
from tokenizers import Tokenizer, normalizers, pre_tokenizers
from tokenizers.models import WordLevel
from tokenizers.trainers import WordLevelTrainer

PAD, UNK = "[PAD]", "[UNK]"
PAD_ID, UNK_ID = 0, 1
TOKENIZER_FILE = "tokenizer.json"
REWRITES_PER_LEVEL = 100  # sampled rewrites per task and language level in the corpus


class InstructionTokenizer:
    """Wraps a ``tokenizers.Tokenizer``: batched ``encode`` to padded id and mask tensors."""

    def __init__(self, tokenizer: Tokenizer) -> None:
        if tokenizer.token_to_id(PAD) != PAD_ID or tokenizer.token_to_id(UNK) != UNK_ID:
            raise ValueError(f"tokenizer must map {PAD} to {PAD_ID} and {UNK} to {UNK_ID}")
        self.tokenizer = tokenizer

    @property
    def vocab_size(self) -> int:
        """Embedding rows the ids need: one past the largest id (the word count of a trained tokenizer;
        more when a loaded vocabulary has gaps, so that no id can index past the table)."""
        return max(self.tokenizer.get_vocab(with_added_tokens=True).values(), default=-1) + 1

    def words(self, text: str) -> list[str]:
        """The normalised words of ``text`` as the tokenizer sees them."""
        return [tok for tok, _ in self.tokenizer.pre_tokenizer.pre_tokenize_str(
            self.tokenizer.normalizer.normalize_str(text))]

    def encode(self, texts: Sequence[str], max_tokens: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Ids LongTensor[B, T] (padded with 0) and mask BoolTensor[B, T]; T = min(longest, max_tokens)."""
        if isinstance(texts, str):
            raise ValueError("encode expects a list of instructions, got a single string")
        encodings = self.tokenizer.encode_batch([str(t) for t in texts])
        width = max(1, min(max_tokens, max((len(e.ids) for e in encodings), default=1)))
        ids = torch.full((len(encodings), width), PAD_ID, dtype=torch.long)
        for row, enc in enumerate(encodings):
            kept = enc.ids[:width]
            ids[row, : len(kept)] = torch.tensor(kept, dtype=torch.long)
        return ids, ids != PAD_ID

    def decode(self, ids: Iterable[int]) -> str:
        return self.tokenizer.decode([int(i) for i in ids if int(i) != PAD_ID], skip_special_tokens=False)

    def save(self, directory: Path | str) -> Path:
        path = Path(directory) / TOKENIZER_FILE
        self.tokenizer.save(str(path))
        return path


def build_tokenizer(texts: Iterable[str]) -> InstructionTokenizer:
    """A WordLevel tokenizer (lowercased, split on whitespace and punctuation) over ``texts``."""
    tok = Tokenizer(WordLevel(unk_token=UNK))
    tok.normalizer = normalizers.Sequence([normalizers.NFKC(), normalizers.Lowercase()])
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    trainer = WordLevelTrainer(special_tokens=[PAD, UNK], min_frequency=1, show_progress=False)
    tok.train_from_iterator(list(texts), trainer=trainer)
    return InstructionTokenizer(tok)


def load_tokenizer(directory: Path | str) -> InstructionTokenizer:
    """The tokenizer saved in ``directory``; a one-line ``ValueError`` naming the file otherwise."""
    from policies.integrity import parse, read_text

    path = Path(directory) / TOKENIZER_FILE
    text = read_text(path, "tokenizer file")  # size-capped: tokenizers would read any file whole
    tok = parse(path, "tokenizer", lambda: Tokenizer.from_str(text))  # bare Exception or panic on bad JSON
    try:
        return InstructionTokenizer(tok)
    except ValueError as err:
        raise ValueError(f"{path}: {err}") from None


def _fill_free(template: str) -> str:
    """A template with its ``{o}``/``{t}``/``{x}`` slots blanked: its own words only."""
    return re.sub(r"\{\w+\}", " ", template)


def instruction_corpus(rewrites_per_level: int = REWRITES_PER_LEVEL, seed: int = 0) -> list[str]:
    """Every instruction the project can produce: the tasks' own, the template words, sampled rewrites.

    The template tables are imported from the language perturbation rather than copied, so a word
    added there reaches the vocabulary the next time a tokenizer is built.
    """
    from envs.perturbations import language as lang
    from envs.tasks.library import TASKS

    texts: list[str] = [task.instruction for task in TASKS]
    for plain, described in lang.NOUNS.values():
        texts += list(plain) + list(described)
    for templates in lang.VERBS.values():
        texts += [_fill_free(t) for t in templates]
    texts += [_fill_free(t) for t in lang.CHAINS.values()]
    texts += list(lang.JOINERS) + list(lang.DISTRACTIONS) + list(lang.STEP_WORDS)
    texts += [_fill_free(t) for t in (*lang.POLITE, *lang.COMMON_SENSE)]
    texts += ["think step by step. that completes the task."]  # rewrite()'s fixed level-5 frame
    for task in TASKS:
        texts += [" ".join(w for w in (obj.adjective, obj.where) if w) for obj in task.scene.objects]
    rng = np.random.default_rng(seed)
    for task in TASKS:
        ctx = SimpleNamespace(task=task)  # rewrite() only reads ctx.task
        for level in range(1, 6):
            texts += [lang.rewrite(ctx, level, rng) for _ in range(rewrites_per_level)]
    return [t for t in texts if t.strip()]
