#!/usr/bin/env python3
"""Word overlap between each question and the pages that answer it (gain 2).

For every question, the share of its content words (lowercased, stopwords removed,
simple suffix stripping) that also occur in the text of its gain-2 pages.
Prints the mean and median per split.

    python3 bench/questions/overlap.py [-v] [questions.jsonl] [corpus_dir]

-v also prints the share for every question.
"""
import json
import os
import re
import statistics
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_QUESTIONS = os.path.join(HERE, "lambda-guide.jsonl")
DEFAULT_CORPUS = os.path.normpath(
    os.path.join(HERE, "..", "..", "..", "shared", "corpora", "aws-lambda-guide"))

STOPWORDS = set("""
a about above after again against all am an and any are as at be because been before
being below between both but by can could did do does doing down during each few for
from further had has have having he her here hers herself him himself his how i if in into
is it its itself just me more most my myself no nor not now of off on once only or other
our ours ourselves out over own same she should so some such than that the their theirs
them themselves then there these they this those through to too under until up very was
we were what when where which while who whom why will with would you your yours yourself
yourselves also get gets got let lets way want need thing something anything still even
much many without via per one say says
im ive id ill isnt arent wasnt werent dont doesnt didnt cant couldnt wont wouldnt shouldnt
whats thats theres theyre youre weve wed hes shes
""".split())

TOKEN = re.compile(r"[a-z0-9]+(?:'[a-z]+)?")


def stem(word):
    """Very small suffix stripper: plural -s/-es/-ies, then -ing/-ed, then a final -e
    and a doubled final consonant, so that message/messages/messaging, run/running and
    handle/handled/handling meet."""
    w = word
    if len(w) > 4 and w.endswith("ies"):
        w = w[:-3] + "y"
    elif len(w) > 3 and w.endswith("s") and not w.endswith(("ss", "us", "is")):
        w = w[:-1]
    if len(w) > 5 and w.endswith("ing"):
        w = w[:-3]
    elif len(w) > 4 and w.endswith("ed"):
        w = w[:-2]
    if len(w) > 3 and w.endswith("e"):
        w = w[:-1]
    if len(w) > 3 and w[-1] == w[-2] and w[-1] not in "lsz":
        w = w[:-1]
    return w


def terms(text):
    out = []
    for tok in TOKEN.findall(text.lower()):
        if tok.endswith("'s"):
            tok = tok[:-2]
        tok = tok.replace("'", "")
        if tok in STOPWORDS or len(tok) < 2:
            continue
        out.append(stem(tok))
    return out


def main():
    args = [a for a in sys.argv[1:] if a != "-v"]
    verbose = "-v" in sys.argv[1:]
    qpath = args[0] if len(args) > 0 else DEFAULT_QUESTIONS
    corpus = args[1] if len(args) > 1 else DEFAULT_CORPUS
    cache = {}

    def page_terms(name):
        if name not in cache:
            with open(os.path.join(corpus, name), encoding="utf-8") as f:
                text = f.read().replace("\\", "")
            cache[name] = set(terms(text))
        return cache[name]

    per_split = {}
    rows = []
    with open(qpath, encoding="utf-8") as f:
        for line in f:
            if not line.strip():
                continue
            q = json.loads(line)
            words = set(terms(q["text"]))
            pages = [p for p, g in q["relevant"].items() if g == 2]
            vocab = set().union(*(page_terms(p) for p in pages)) if pages else set()
            share = len(words & vocab) / len(words) if words else 0.0
            per_split.setdefault(q["split"], []).append(share)
            rows.append((q["id"], q["split"], share))

    if verbose:
        for qid, split, share in rows:
            print(f"{qid}\t{split}\t{share:.2f}")
    for split in sorted(per_split):
        vals = per_split[split]
        print(f"{split}: n={len(vals)} mean={statistics.mean(vals):.3f} "
              f"median={statistics.median(vals):.3f}")
    allv = [s for v in per_split.values() for s in v]
    print(f"all: n={len(allv)} mean={statistics.mean(allv):.3f} "
          f"median={statistics.median(allv):.3f}")


if __name__ == "__main__":
    main()
