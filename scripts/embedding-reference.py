#!/usr/bin/env python3
"""Writes the reference sentence embeddings that the Rust embedder (shared/dataflow-embed) is
tested against: 12 varied texts (short, long past the 256-token limit, accented, CJK, emoji, code,
URLs and numbers) encoded by the Python sentence-transformers library with all-MiniLM-L6-v2,
L2-normalized, rounded to 7 decimals. For each text it also records how many tokens the model
saw, [CLS] and [SEP] included, after truncation to max_seq_length (256).

Output (compact JSON, one text per line):
    {"model": "all-MiniLM-L6-v2", "generator": "sentence-transformers X.Y.Z, torch A.B",
     "max_seq_length": 256,
     "texts": [{"text": ..., "tokens": N, "vector": [384 floats]}, ...]}

Requirements (a scratch virtualenv outside the repo; CPU is enough):
    python3 -m venv /tmp/stvenv
    /tmp/stvenv/bin/pip install sentence-transformers==6.3.0 torch==2.15.0 transformers==5.25.0 tokenizers==0.23.3

Run from the repo root, with the model installed by infra/model/install.sh (never downloaded
from a model hub):
    HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 /tmp/stvenv/bin/python scripts/embedding-reference.py \\
        [.local/models/all-MiniLM-L6-v2] [shared/dataflow-embed/tests/reference.json]
"""
import json
import os
import sys

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import numpy as np  # noqa: E402
import sentence_transformers  # noqa: E402
import torch  # noqa: E402
from sentence_transformers import SentenceTransformer  # noqa: E402

MODEL_DIR = sys.argv[1] if len(sys.argv) > 1 else ".local/models/all-MiniLM-L6-v2"
OUT = sys.argv[2] if len(sys.argv) > 2 else "shared/dataflow-embed/tests/reference.json"

LONG_S3 = (
    "Amazon S3 event notifications let a bucket tell other services that something happened to "
    "its objects. When an object is created, removed, restored from an archive tier, or "
    "replicated, S3 can publish an event to an SNS topic, an SQS queue, a Lambda function or "
    "EventBridge. Each notification configuration names the event types it cares about, such as "
    "s3:ObjectCreated:Put or s3:ObjectRemoved:Delete, and may filter on key prefixes and "
    "suffixes, so that only objects under incoming/ ending in .json trigger the pipeline. "
    "Delivery is at least once: a single upload can, on rare occasions, produce two identical "
    "events, and the consumer must be idempotent. Events are usually delivered within seconds, "
    "but S3 makes no promise about ordering, so a later overwrite may be seen before the earlier "
    "one. The sequencer field in the event record helps: for the same key, a larger sequencer "
    "means a later event, which lets a consumer discard stale updates. Notifications are "
    "configured per bucket, and two configurations may not overlap in prefix and event type, "
    "otherwise S3 rejects the change with an ambiguous configuration error. The destination must "
    "grant S3 permission to publish: a queue policy for SQS, a topic policy for SNS, or a "
    "resource-based policy on the Lambda function. When EventBridge is enabled on a bucket, "
    "every event is sent to the default event bus, and rules there can route events to many "
    "more targets, archive them, or replay them later. This is often the simpler choice when "
    "several teams want to react to the same bucket. Large batch jobs deserve care: copying a "
    "million objects produces a million events, and a Lambda consumer may be throttled or may "
    "exhaust its reserved concurrency. Putting an SQS queue between S3 and the function smooths "
    "the load, gives retries with a visibility timeout, and sends poison messages to a "
    "dead-letter queue after a few failed attempts. Object keys in the event are URL-encoded, so "
    "a space arrives as a plus sign and must be decoded before the object is fetched. Finally, "
    "remember that a function which writes back into the same bucket and prefix that triggers "
    "it creates an infinite loop; write outputs to a different prefix or bucket, and monitor "
    "invocation counts with a CloudWatch alarm so that a runaway loop is caught quickly and "
    "does not produce a surprising bill at the end of the month."
)

TEXTS = [
    "A man is eating food.",
    "A man is eating a piece of bread.",
    "Lambda",
    "How do I reduce cold start latency for my AWS Lambda function written in Java?",
    "AWS Lambda scales by running more execution environments in parallel. Each environment "
    "handles one request at a time, so concurrency equals the number of requests in flight. An "
    "account has a regional concurrency quota, shared by all functions, and reserved concurrency "
    "carves out a guaranteed slice for a single function while also capping it. Provisioned "
    "concurrency keeps environments initialized ahead of time, which removes cold starts for "
    "that many requests. When the limit is reached, synchronous invocations are throttled with "
    "a 429 error.",
    LONG_S3,
    "Le garçon a mangé une crème brûlée très sucrée à côté de la fenêtre; après ça, il était "
    "fâché parce que le café était froid.",
    "Die Straße vor dem Geschäft ist zu schmal; größere Lastwagen müssen über die Brücke "
    "ausweichen, und die Bäckerei öffnet erst um acht Uhr.",
    "日本語の文章も正しく埋め込めるか確認します。東京の天気は晴れです。",
    "Deploy finished 🚀🎉 all tests green ✅ but the dashboard still shows 🔥 errors 😅",
    'def handler(event, context):\n    body = json.loads(event["body"])\n'
    '    return {"statusCode": 200, "body": json.dumps({"ok": True, "n": len(body)})}',
    "HTTP 503 — retry after 30s: https://example.com/a?b=1&C=XyZ#frag (req-ID: 7f3A-91bc, "
    "v2.14.0-rc.1, 99.95% SLA; cost $0.0000166667/GB-s) ERROR!!! see RFC 7231 §6.6.4...",
]


def main():
    assert len(TEXTS) == 12 and all(t.strip() for t in TEXTS)
    model = SentenceTransformer(MODEL_DIR, device="cpu")
    max_len = model.max_seq_length

    # Same preprocessing encode() applies: truncation to max_seq_length, padding to the longest.
    # (preprocess() replaces the deprecated tokenize() in sentence-transformers 6.)
    prep = getattr(model, "preprocess", None) or model.tokenize
    features = prep(TEXTS)
    counts = [int(n) for n in features["attention_mask"].sum(dim=1)]

    vectors = model.encode(TEXTS, normalize_embeddings=True, convert_to_numpy=True, batch_size=32)
    assert vectors.shape == (len(TEXTS), 384), vectors.shape

    generator = "sentence-transformers %s, torch %s" % (
        sentence_transformers.__version__,
        torch.__version__.split("+")[0],
    )
    header = {
        "model": "all-MiniLM-L6-v2",
        "generator": generator,
        "max_seq_length": max_len,
    }
    rows = [
        {
            "text": text,
            "tokens": n,
            "vector": [round(float(x), 7) for x in vec],
        }
        for text, n, vec in zip(TEXTS, counts, vectors)
    ]

    # Compact: the header, then one text per line.
    os.makedirs(os.path.dirname(os.path.abspath(OUT)), exist_ok=True)
    with open(OUT, "w", encoding="utf-8") as f:
        head = json.dumps(header, ensure_ascii=False)[:-1]
        f.write(head + ', "texts": [\n')
        f.write(",\n".join(json.dumps(r, ensure_ascii=False) for r in rows))
        f.write("\n]}\n")
    with open(OUT, encoding="utf-8") as f:
        assert json.load(f)["texts"][5]["tokens"] == counts[5]

    cos = float(np.dot(vectors[0], vectors[1]))
    print("wrote %s (%s, max_seq_length %d)" % (OUT, generator, max_len))
    print("cosine(text 0, text 1) = %.4f" % cos)
    for i, (text, n) in enumerate(zip(TEXTS, counts)):
        print("%2d  %3d tokens  %s" % (i, n, text[:60].replace("\n", " ")))


if __name__ == "__main__":
    main()
