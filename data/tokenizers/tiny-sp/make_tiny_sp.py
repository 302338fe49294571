#!/usr/bin/env python3
"""Writes tokenizer.json and tokenizer_config.json of tiny-sp: a 96-token SentencePiece-style BPE
(Prepend/Replace normalizer, unk with fuse_unk, no byte fallback) that fits the 96-token tiny
checkpoints in data/checkpoints, so `ess analyze --text` can be tested end to end. The merges are
learned by plain BPE (most frequent pair first, ties by first occurrence) on the text below."""
import json
from collections import Counter

TEXT = """the quick brown fox jumps over the lazy dog. she sells sea shells on the sea shore.
it was the best of times, it was the worst of times. there is no place like home!
to be or not to be, that is the question. in the beginning there was the word."""
SP = "\u2581"
base = ["<unk>", "<s>", "</s>", SP] + [chr(c) for c in range(ord("a"), ord("z") + 1)] + list("0123456789.,!?'")
vocab = {t: i for i, t in enumerate(base)}
words = [[SP] + list(w) for w in TEXT.replace("\n", " ").split()]
merges = []
while len(vocab) < 96:
    pairs = Counter()
    for w in words:
        for a, b in zip(w, w[1:]):
            pairs[(a, b)] += 1
    (a, b), n = max(pairs.items(), key=lambda kv: kv[1])  # Counter keeps first-seen order on ties
    if n < 2:
        break
    merges.append([a, b])
    vocab[a + b] = len(vocab)
    for w in words:
        i = 0
        while i < len(w) - 1:
            if w[i] == a and w[i + 1] == b:
                w[i:i + 2] = [a + b]
            i += 1
special = lambda i, t: {"id": i, "content": t, "single_word": False, "lstrip": False, "rstrip": False,
                        "normalized": False, "special": True}
tok = {
    "version": "1.0", "truncation": None, "padding": None,
    "added_tokens": [special(0, "<unk>"), special(1, "<s>"), special(2, "</s>")],
    "normalizer": {"type": "Sequence", "normalizers": [{"type": "Prepend", "prepend": SP},
                                                        {"type": "Replace", "pattern": {"String": " "}, "content": SP}]},
    "pre_tokenizer": None,
    "post_processor": {"type": "TemplateProcessing",
                       "single": [{"SpecialToken": {"id": "<s>", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}}],
                       "pair": [{"SpecialToken": {"id": "<s>", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}},
                                {"Sequence": {"id": "B", "type_id": 1}}],
                       "special_tokens": {"<s>": {"id": "<s>", "ids": [1], "tokens": ["<s>"]}}},
    "decoder": None,
    "model": {"type": "BPE", "dropout": None, "unk_token": "<unk>", "continuing_subword_prefix": None,
              "end_of_word_suffix": None, "fuse_unk": True, "byte_fallback": False, "vocab": vocab, "merges": merges},
}
json.dump(tok, open("tokenizer.json", "w"), ensure_ascii=False, indent=1)
json.dump({"add_bos_token": True, "add_eos_token": False, "bos_token": "<s>", "eos_token": "</s>",
           "unk_token": "<unk>", "tokenizer_class": "LlamaTokenizer"}, open("tokenizer_config.json", "w"), indent=1)
print(len(vocab), "tokens,", len(merges), "merges")
