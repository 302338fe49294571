#!/usr/bin/python3
"""random_tokens.py ROWS LENGTH VOCAB SEED: ROWS lines of LENGTH random token ids below VOCAB
(space-separated; an `ess analyze --tokens` file), the same for the same arguments."""
import random
import sys

rows, length, vocab, seed = (int(a) for a in sys.argv[1:5])
random.seed(seed)
print("\n".join(" ".join(str(random.randrange(vocab)) for _ in range(length)) for _ in range(rows)))
