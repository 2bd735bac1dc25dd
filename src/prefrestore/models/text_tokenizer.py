"""The text tokenizer used to build integrator prompts.

The integrator only ever tokenises *plain text segments*; chat and image special tokens are inserted by id from
:class:`~prefrestore.models.integrator.IntegratorConfig` (splitting at special tokens is exactly what the Qwen
tokenizer does, so prompts match the official ones token for token when the official tokenizer is used).

* paper models: the Qwen tokenizer files saved in the model folder (``tokenizer/``), loaded with AutoTokenizer.
* tiny models: a character-level tokenizer built locally (nothing is downloaded) by :func:`build_char_tokenizer`.
"""

from __future__ import annotations

from pathlib import Path

from transformers import AutoTokenizer, PreTrainedTokenizerFast

# Character vocabulary of the tiny tokenizer: unknown, newline, printable ASCII. Ids 0 .. len-1.
CHAR_VOCAB = ["<unk>", "\n"] + [chr(c) for c in range(32, 127)]


def build_char_tokenizer() -> PreTrainedTokenizerFast:
    """A deterministic character-level tokenizer (99 ids) built without any download."""
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers

    tok = Tokenizer(models.WordLevel({c: i for i, c in enumerate(CHAR_VOCAB)}, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Split(Regex(r"[\s\S]"), behavior="isolated")
    tok.decoder = decoders.Fuse()
    return PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="<unk>")


def encode_text(tokenizer, text: str) -> list[int]:
    """Plain text -> ids, no BOS/EOS added."""
    return list(tokenizer(text, add_special_tokens=False)["input_ids"])


def load_text_tokenizer(folder: str | Path):
    # trust_remote_code=False: a tokenizer folder that asks to run its own Python code is refused
    return AutoTokenizer.from_pretrained(str(folder), local_files_only=True, trust_remote_code=False)
