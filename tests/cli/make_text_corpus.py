#!/usr/bin/env python3
"""Writes a deterministic, varied UTF-8 corpus for the tokenizer reference test.

    make_text_corpus.py OUT.txt OUT.json [--seed 0] [--size 1300000]

OUT.txt holds the documents separated by lines `<|doc|>` (the `ess analyze --text` format);
OUT.json holds the same documents as a JSON list (what the reference tokenizer reads).
Material: prose and code from files every Debian machine with this repository has (the licence
texts in /usr/share/common-licenses, this repository's sources and docs), and generated text in
many scripts (Latin with diacritics, Cyrillic, Greek, CJK, kana, Hangul, Arabic, Hebrew,
Devanagari, Thai), emoji with ZWJ sequences, skin tones, flags and variation selectors,
decomposed characters (so NFC matters), numbers in several digit systems, contractions,
whitespace runs, tabs, CR/LF, Unicode spaces and controls, the special-token strings of the
tested tokenizers, very long words, and characters drawn at random from all of Unicode. Standard library only.
"""
import json
import os
import random
import sys
import unicodedata

DELIM = "<|doc|>"

SCRIPTS = {
    "latin": [chr(c) for c in range(0x61, 0x7B)] + [chr(c) for c in range(0xE0, 0xFF) if c != 0xF7],
    "latin_ext": [chr(c) for c in range(0x100, 0x17F)],  # U+017F (long s) left out: docs/checkpoints.md
    "cyrillic": [chr(c) for c in range(0x430, 0x450)] + [chr(c) for c in range(0x410, 0x430)],
    "greek": [chr(c) for c in range(0x3B1, 0x3CA)] + [chr(c) for c in range(0x391, 0x3AA) if c != 0x3A2] + list("άέήίόύώ"),
    "cjk": [chr(c) for c in range(0x4E00, 0x9FA6)],
    "kana": [chr(c) for c in range(0x3041, 0x3097)] + [chr(c) for c in range(0x30A1, 0x30FB)],
    "hangul": [chr(c) for c in range(0xAC00, 0xD7A4)],
    "arabic": [chr(c) for c in range(0x621, 0x64B)],
    "arabic_marks": [chr(c) for c in range(0x64B, 0x653)],
    "hebrew": [chr(c) for c in range(0x5D0, 0x5EB)],
    "devanagari": [chr(c) for c in range(0x905, 0x93A)],
    "devanagari_signs": [chr(c) for c in range(0x93E, 0x94E)] + ["\u0902", "\u0903"],
    "thai": [chr(c) for c in range(0xE01, 0xE2F)],
}

PHRASES = [
    "Съешь же ещё этих мягких французских булок, да выпей чаю.",
    "Γαζέες καὶ μυρτιὲς δὲν θὰ βρῶ πιὰ στὸ χρυσαφὶ ξέφωτο.",
    "我能吞下玻璃而不伤身体。今天天气很好，我们去公园散步吧！",
    "いろはにほへと ちりぬるを わかよたれそ つねならむ。日本語のテキストです。",
    "다람쥐 헌 쳇바퀴에 타고파. 안녕하세요, 세계!",
    "صِف خَلقَ خَودِ كَمِثلِ الشَمسِ إِذ بَزَغَت — يَحظى الضَجيعُ بِها نَجلاءَ مِعطارِ",
    "עטלף אבק נס דרך מזגן שהתפוצץ כי חם",
    "ऋषियों को सताने वाले दुष्ट राक्षसों के राजा रावण का सर्वनाश करने वाले विष्णुवतार भगवान श्रीराम।",
    "เป็นมนุษย์สุดประเสริฐเลิศคุณค่า กว่าบรรดาฝูงสัตว์เดรัจฉาน",
    "Příliš žluťoučký kůň úpěl ďábelské ódy. Zwölf Boxkämpfer jagen Viktor quer über den großen Sylter Deich.",
    "Voix ambiguë d'un cœur qui, au zéphyr, préfère les jattes de kiwis. ¿Qué tal? ¡Olé!",
    "Pchnąć w tę łódź jeża lub ośm skrzyń fig. Árvíztűrő tükörfúrógép.",
]

EMOJI = (
    [chr(c) for c in range(0x1F600, 0x1F650)]
    + [chr(c) for c in range(0x1F300, 0x1F340)]
    + ["\U0001F468\u200D\U0001F469\u200D\U0001F467\u200D\U0001F466", "\U0001F469\u200D\U0001F4BB",
       "\U0001F3F3\uFE0F\u200D\U0001F308", "\u2764\uFE0F", "\U0001F44D\U0001F3FD", "\U0001F9D1\U0001F3FF\u200D\U0001F692",
       "\U0001F1E9\U0001F1EA", "\U0001F1EF\U0001F1F5", "\U0001F1FA\U0001F1E6", "\u263A\uFE0F", "\u0031\uFE0F\u20E3",
       "\U0001F926\U0001F3FC\u200D\u2640\uFE0F"]
)

DECOMPOSED = ["e\u0301", "A\u030A", "n\u0303", "o\u0308", "c\u0327", "\u1100\u1161\u11A8", "\u1112\u1161\u11AB",
              "i\u0307", "u\u031B\u0309", "\u0391\u0301", "a\u0323\u0302", "\u0418\u0306"]
COMPAT = ["\uFB01", "\u2460", "\u00BD", "\u2153", "\u2167", "\u00B2", "\u2126", "\u212B", "\uFF21\uFF42\uFF43",
          "\u3300", "\U0001D400\U0001D401", "\u00C5", "\u1E9B\u0323"]
SPACES = [" ", "  ", "   ", "\t", "\t\t", "\n", "\n\n", "\r\n", " \n", "\u00A0", "\u3000", "\u2009", "\u2002",
          "\u202F", "\u2028", "\u0085", "\u000B", "\u000C", " \t \n", "\u200B", "\u200C", "\u200D", "\uFEFF", "\u2060"]
DIGITS = ["0123456789", "\u0660\u0661\u0662\u0663\u0664\u0665\u0666\u0667\u0668\u0669",
          "\u0966\u0967\u0968\u0969\u096A\u096B\u096C\u096D\u096E\u096F", "\uFF10\uFF11\uFF12\uFF13\uFF14\uFF15\uFF16\uFF17\uFF18\uFF19"]
PUNCT = list(".,;:!?-—–…'\"()[]{}<>/\\|@#$%^&*_+=~`«»„“”‘’¡¿·•§¶©®™°±×÷→←↑↓∀∂∑√∞≈≠≤≥")
CONTRACTIONS = ["'s", "'t", "'re", "'ve", "'m", "'ll", "'d", "'S", "'T", "'RE", "'VE", "'M", "'LL", "'D", "’s", "'Ll"]
SPECIAL = ["<|endoftext|>", "<s>", "</s>", "<unk>", "<|begin_of_text|>", "<|end_of_text|>", "<|im_start|>",
           "<|im_end|>", "<|padding|>", "<|reserved_special_token_3|>", "<s", "</s >", "<|endoftext|"]
CODE = ["int main(int argc, char** argv) {\n    return 0;\n}\n", "for (size_t i = 0; i < n; ++i) x[i] += y[i];",
        "def f(x):\n\treturn x ** 2  # square\n", "if a != b && c >= d || !e { panic!(\"{}\", e); }",
        "SELECT name, COUNT(*) FROM users WHERE age >= 18 GROUP BY name;", "const re = /^\\s*(\\d+)\\.(\\d+)$/u;",
        "<div class=\"row\"><span>&nbsp;&lt;tag&gt;</span></div>", "x = [1, 2, 3]; y = {'a': 1, \"b\": 2.5e-10}",
        "    \n        \n    if (x) {\n        y();\n    }\n"]


def word(rng, script):
    chars = SCRIPTS[script]
    n = rng.choice([1, 2, 3, 4, 5, 6, 7, 8, 10, 14])
    w = "".join(rng.choice(chars) for _ in range(n))
    if script == "arabic" and rng.random() < 0.4:
        w += rng.choice(SCRIPTS["arabic_marks"])
    if script == "devanagari" and rng.random() < 0.6:
        w = w[:1] + rng.choice(SCRIPTS["devanagari_signs"]) + w[1:]
    if script in ("latin", "latin_ext", "cyrillic", "greek") and rng.random() < 0.15:
        w = w[:1].upper() + w[1:]
    if script == "latin" and rng.random() < 0.05:
        w = w.upper()
    return w


def number(rng):
    digits = rng.choice(DIGITS) if rng.random() < 0.25 else DIGITS[0]
    n = rng.choice([1, 1, 2, 3, 4, 5, 6, 7, 9, 12, 20])
    s = "".join(rng.choice(digits) for _ in range(n))
    r = rng.random()
    if r < 0.1:
        s += "." + "".join(rng.choice(DIGITS[0]) for _ in range(rng.randint(1, 4)))
    elif r < 0.15:
        s = "{:,}".format(rng.randint(1000, 10**9))
    elif r < 0.2:
        s = "-" + s
    return s


def sentence(rng):
    script = rng.choice(list(k for k in SCRIPTS if k not in ("arabic_marks", "devanagari_signs")))
    parts = []
    for _ in range(rng.randint(3, 18)):
        r = rng.random()
        if r < 0.62:
            parts.append(word(rng, script if rng.random() < 0.85 else rng.choice(["latin", "cyrillic", "cjk", "greek"])))
        elif r < 0.70:
            parts.append(number(rng))
        elif r < 0.76:
            parts.append(word(rng, "latin") + rng.choice(CONTRACTIONS))
        elif r < 0.82:
            parts.append(rng.choice(EMOJI) * rng.choice([1, 1, 1, 2, 3]))
        elif r < 0.86:
            parts.append(rng.choice(DECOMPOSED) + word(rng, "latin"))
        elif r < 0.89:
            parts.append(rng.choice(COMPAT))
        elif r < 0.95:
            parts.append("".join(rng.choice(PUNCT) for _ in range(rng.randint(1, 4))))
        elif r < 0.965:
            parts.append(rng.choice(SPECIAL))
        else:
            parts.append(rng.choice(SPACES))
    out = ""
    for p in parts:
        r = rng.random()
        sep = " " if r < 0.8 else "" if r < 0.88 else rng.choice(SPACES)
        out += sep + p
    return out.strip(" ") + rng.choice([".", "!", "?", "。", "؟", "।", "", "...", ";"])


def generated_document(rng):
    kind = rng.random()
    paras = []
    for _ in range(rng.randint(1, 12)):
        if kind < 0.15:
            paras.append(rng.choice(CODE) * rng.randint(1, 3))
        elif kind < 0.3:
            paras.append(rng.choice(PHRASES) + " " + sentence(rng))
        else:
            paras.append(" ".join(sentence(rng) for _ in range(rng.randint(1, 6))))
    return rng.choice(["\n", "\n\n", "\r\n", " ", "\n \n", "\t\n"]).join(paras)


def edge_documents(rng):
    letters = SCRIPTS["latin"]
    return [
        " ", "   ", "\n", "\n\n\n", "\t", " \t\n ", "x", "é", "e\u0301", "\U0001F600", "\u200D", "\uFEFF",
        " leading space", "trailing space ", "  two leading", "<s>", "</s>", "<|endoftext|>",
        "<|endoftext|>after special", "before special<|endoftext|>", "<s>Hello</s> world<unk>",
        "a" * 3000, "".join(rng.choice(letters) for _ in range(5000)), "ab" * 1500, "1" * 2000,
        "\u4E00" * 1000, "😀" * 300, "!" * 1000, " " * 100 + "x", "x" + " " * 100, "\t" * 50 + "y",
        "\n" * 60 + "z", "\r\n" * 40, " " * 37 + "a" + " " * 5 + "b" + " " * 25, "don't won't I'd we'll they're I'M",
        "Ångström ﬁnal ① ½ Ⅷ ² Ω Å", "\u0041\u030A\u0301\u0327", "𝐀𝐁𝐂 𝟙𝟚𝟛", "ـــ", "a\u0308\u0304",
    ]


def random_code_point_documents(rng, n=24, length=2500):
    # Characters drawn from the BMP and planes 1–2 at random (ASCII a third of the time), kept only
    # when this Python's Unicode database has them assigned, so that classification does not hinge
    # on characters newer than the libraries' Unicode versions.
    docs = []
    for _ in range(n):
        out = []
        while len(out) < length:
            r = rng.random()
            cp = rng.randint(0x20, 0x7E) if r < 0.33 else rng.randint(0xA0, 0xFFFD) if r < 0.8 else rng.randint(0x10000, 0x2FFFF)
            c = chr(cp)
            if 0xD800 <= cp <= 0xDFFF or unicodedata.category(c) == "Cn":
                continue
            out.append(c)
        docs.append("".join(out))
    return docs


def file_documents(rng, root, budget):
    paths = []
    lic = "/usr/share/common-licenses"
    if os.path.isdir(lic):
        paths += [os.path.join(lic, f) for f in sorted(os.listdir(lic)) if os.path.isfile(os.path.join(lic, f))]
    for sub in ("libess", "operators", "models", "analysis", "tools/ess", "tools/python", "docs", "tests"):
        d = os.path.join(root, sub)
        if os.path.isdir(d):
            paths += [os.path.join(d, f) for f in sorted(os.listdir(d))
                      if f.endswith((".cpp", ".h", ".py", ".md", ".sh")) and os.path.isfile(os.path.join(d, f))]
    docs, used = [], 0
    for p in paths:
        if used >= budget:
            break
        try:
            text = open(p, encoding="utf-8").read()
        except (UnicodeDecodeError, OSError):
            continue
        # cut into pieces of 1–20 KB so documents vary in length
        i = 0
        while i < len(text) and used < budget:
            n = rng.randint(1000, 20000)
            piece = text[i:i + n]
            i += n
            docs.append(piece)
            used += len(piece.encode("utf-8"))
    return docs


def clean(doc):
    # A document may not contain a delimiter line, end in a CR (its line break would be taken for
    # the delimiter's) or be empty; lone surrogates cannot occur (all text is from str).
    lines = doc.split("\n")
    lines = [l + " " if l.rstrip("\r") == DELIM else l for l in lines]
    doc = "\n".join(lines)
    if doc.endswith("\r"):
        doc += "."
    return doc or "."


def main():
    args = sys.argv[1:]
    seed, size = 0, 1_300_000
    if "--seed" in args:
        i = args.index("--seed"); seed = int(args[i + 1]); del args[i:i + 2]
    if "--size" in args:
        i = args.index("--size"); size = int(args[i + 1]); del args[i:i + 2]
    out_txt, out_json = args
    rng = random.Random(seed)
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    docs = file_documents(rng, root, size // 2)
    used = sum(len(d.encode("utf-8")) for d in docs)
    while used < size:
        d = generated_document(rng)
        docs.append(d)
        used += len(d.encode("utf-8"))
    docs += edge_documents(rng)
    docs += random_code_point_documents(rng)
    rng.shuffle(docs)
    docs = [clean(d) for d in docs]
    with open(out_txt, "w", encoding="utf-8", newline="") as f:
        f.write(("\n" + DELIM + "\n").join(docs))
    with open(out_json, "w", encoding="utf-8") as f:
        json.dump(docs, f, ensure_ascii=False)
    total = sum(len(d.encode("utf-8")) for d in docs)
    print(f"{len(docs)} documents, {total} bytes, {sum(len(d) for d in docs)} characters", file=sys.stderr)


if __name__ == "__main__":
    main()
