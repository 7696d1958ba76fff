#!/usr/bin/env python3
"""Deterministic generator of DataFlow events (JSON Lines) for samples, tests and benchmarks.

Events look like production traffic: ~160 bytes a line, 20 event types, Zipf-distributed users,
spread over N days, with a small share of malformed lines. Same arguments, same bytes.

    python3 bench/gen_events.py --lines 2000000 --out bench/data/events.jsonl
"""
import argparse
import datetime as dt
import json
import random
import sys

TYPES = ["page_view", "click", "search", "add_to_cart", "purchase", "signup", "login", "logout",
         "share", "comment", "like", "scroll", "video_play", "video_pause", "download", "upload",
         "error", "rating", "subscribe", "unsubscribe"]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--lines", type=int, default=1000)
    ap.add_argument("--users", type=int, default=100_000)
    ap.add_argument("--days", type=int, default=30)
    ap.add_argument("--start", default="2024-03-01")
    ap.add_argument("--bad-rate", type=float, default=0.003)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--out", default="-")
    ap.add_argument("--exact", help="write exact distinct users per (date, type) as JSON here")
    a = ap.parse_args()
    rnd = random.Random(a.seed)
    start = dt.datetime.fromisoformat(a.start).replace(tzinfo=dt.timezone.utc)
    span = a.days * 86400
    # Zipf-like user popularity via a power law over ranks.
    weights = [1.0 / (r ** 0.8) for r in range(1, a.users + 1)]
    users = rnd.choices(range(a.users), weights=weights, k=min(a.lines, 1_000_000))
    exact = {}
    out = sys.stdout if a.out == "-" else open(a.out, "w", buffering=1 << 20)
    for i in range(a.lines):
        if rnd.random() < a.bad_rate:
            out.write(rnd.choice(['{"event_type": "click", "user_id": ', 'not json at all',
                                  '{"event_type":"view","timestamp":"2024-03-01T00:00:00Z"}',
                                  '{"event_type":"view","user_id":"u1","timestamp":"yesterday"}']) + "\n")
            continue
        ts = start + dt.timedelta(seconds=rnd.randrange(span), milliseconds=rnd.randrange(1000))
        user = f"user_{users[i % len(users)]:06d}"
        etype = TYPES[min(int(rnd.expovariate(0.25)), len(TYPES) - 1)]
        ev = {"event_id": f"evt_{i:09d}", "user_id": user, "event_type": etype,
              "timestamp": ts.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ts.microsecond // 1000:03d}Z",
              "properties": {"session": f"s{rnd.randrange(10**6)}", "value": rnd.randrange(1000)}}
        out.write(json.dumps(ev, separators=(",", ":")) + "\n")
        if a.exact:
            exact.setdefault((ts.date().isoformat(), etype), set()).add(user)
    if out is not sys.stdout:
        out.close()
    if a.exact:
        with open(a.exact, "w") as f:
            json.dump({f"{d}|{t}": len(u) for (d, t), u in sorted(exact.items())}, f)


if __name__ == "__main__":
    main()
