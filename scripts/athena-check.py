#!/usr/bin/env python3
"""Checks the Glue catalog in template.yaml against what the ETL writes, and the example queries
in docs/sql.md against the ETL's own counts. Builds a lake with `dataflow etl` (the ETL core the
Lambda runs), reads it with DuckDB (Hive partitioning, as Athena reads it) and fails on any
difference in column names or types, or in a query's answer.

    .venv/bin/python scripts/athena-check.py [path/to/dataflow]
"""
import json
import os
import re
import subprocess
import sys
import tempfile

import duckdb
import yaml

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DATAFLOW = sys.argv[1] if len(sys.argv) > 1 else os.path.join(ROOT, "target/debug/dataflow")

# Glue (Hive) type -> what DuckDB reports for the same column of the files the ETL writes.
GLUE_TO_DUCKDB = {
    "string": {"VARCHAR"},
    "bigint": {"BIGINT"},
    "binary": {"BLOB"},
    # Parquet timestamps written as UTC instants (isAdjustedToUTC): Athena reads them as timestamp.
    "timestamp": {"TIMESTAMP WITH TIME ZONE", "TIMESTAMP"},
    "boolean": {"BOOLEAN"},
    "date": {"DATE"},
}


class CfnLoader(yaml.SafeLoader):
    """YAML with CloudFormation's short tags (!Ref, !Sub, ...) read as plain values."""


def _tag(loader, suffix, node):
    if isinstance(node, yaml.ScalarNode):
        return loader.construct_scalar(node)
    if isinstance(node, yaml.SequenceNode):
        return loader.construct_sequence(node, deep=True)
    return loader.construct_mapping(node, deep=True)


CfnLoader.add_multi_constructor("!", _tag)


def glue_tables():
    with open(os.path.join(ROOT, "template.yaml")) as f:
        template = yaml.load(f, Loader=CfnLoader)
    tables = {}
    for res in template["Resources"].values():
        if res["Type"] != "AWS::Glue::Table":
            continue
        t = res["Properties"]["TableInput"]
        sd = t["StorageDescriptor"]
        location = sd["Location"]
        prefix = re.sub(r"^s3://\$\{LakeBucketName\}/", "", location)
        assert prefix != location, f"{t['Name']}: location {location} is not in the lake bucket"
        tables[t["Name"]] = {
            "prefix": prefix,
            "json": "JsonSerDe" in sd["SerdeInfo"]["SerializationLibrary"],
            "columns": [(c["Name"], c["Type"]) for c in sd["Columns"]]
            + [(c["Name"], c["Type"]) for c in t.get("PartitionKeys", [])],
            "projection": t.get("Parameters", {}),
        }
    return tables


def build_lake(out):
    inputs = os.path.join(out, "in")
    os.makedirs(inputs)
    with open(os.path.join(ROOT, "events/data/sample-events.jsonl"), "rb") as f:
        sample = f.read()
    with open(os.path.join(inputs, "sample.jsonl"), "wb") as f:
        f.write(sample)
    # A second object with other dates, types and a few bad lines.
    extra = [json.dumps({"user_id": f"x{i}", "event_type": "signup", "timestamp": f"2024-04-0{1 + i % 3}T10:00:00Z"})
             for i in range(30)] + ["not json", '{"user_id": "u"}']
    with open(os.path.join(inputs, "extra.jsonl"), "w") as f:
        f.write("\n".join(extra) + "\n")
    lake = os.path.join(out, "lake")
    run = subprocess.run([DATAFLOW, "etl", "--input", inputs, "--output", lake],
                         check=True, capture_output=True, text=True)
    report = json.loads(run.stdout.strip().splitlines()[-1])
    good = []
    for path in ("sample.jsonl", "extra.jsonl"):
        for line in open(os.path.join(inputs, path), encoding="utf-8"):
            try:
                e = json.loads(line)
            except ValueError:
                continue
            if isinstance(e, dict) and all(k in e for k in ("user_id", "event_type", "timestamp")):
                good.append(e)
    return lake, report, good


def main():
    failures = []
    tables = glue_tables()
    assert set(tables) == {"daily_aggregates", "events", "rejected_lines"}, tables.keys()
    with tempfile.TemporaryDirectory() as tmp:
        lake, report, good = build_lake(tmp)
        db = duckdb.connect()
        # Athena (Trino) function names used in docs/sql.md.
        db.execute("CREATE MACRO approx_distinct(x) AS approx_count_distinct(x)")
        for name, t in tables.items():
            src = os.path.join(lake, t["prefix"])
            if t["json"]:
                db.execute(f"CREATE VIEW {name} AS SELECT * FROM read_json_auto('{src}*.jsonl', format='newline_delimited')")
            else:
                partition = [c for c, _ in t["columns"] if c == "event_date"]
                assert partition, f"{name}: no event_date partition key"
                p = t["projection"]
                for k, want in [("projection.enabled", "true"), ("projection.event_date.type", "date"),
                                ("projection.event_date.format", "yyyy-MM-dd")]:
                    if p.get(k) != want:
                        failures.append(f"{name}: {k} is {p.get(k)!r}, want {want!r}")
                template = p.get("storage.location.template", "")
                if not template.endswith(f"{t['prefix']}event_date=${{!event_date}}/"):
                    failures.append(f"{name}: storage.location.template {template!r} does not match {t['prefix']}")
                db.execute(f"CREATE VIEW {name} AS SELECT * FROM read_parquet('{src}*/*.parquet', "
                           "hive_partitioning = true, hive_types = {'event_date': DATE})")
            got = [(r[0], r[1]) for r in db.execute(f"DESCRIBE {name}").fetchall()]
            want = t["columns"]
            before = len(failures)
            if t["json"]:
                # The JSON SerDe maps fields by name: order is not part of the contract.
                got, want = sorted(got), sorted(want)
            if [c for c, _ in got] != [c for c, _ in want]:
                failures.append(f"{name}: columns {[c for c, _ in got]} in the files, {[c for c, _ in want]} in Glue")
            for (col, dtype), (_, gtype) in zip(got, want):
                if dtype not in GLUE_TO_DUCKDB.get(gtype, set()):
                    failures.append(f"{name}.{col}: the files hold {dtype}, Glue declares {gtype}")
            if len(failures) == before:
                print(f"{name}: {len(got)} columns match the catalog")

        queries = dict(re.findall(r"```sql\n-- name: (\w+)\n(.*?)```",
                                  open(os.path.join(ROOT, "docs/sql.md")).read(), re.S))
        assert set(queries) == {"events_per_day", "top_types", "distinct_users_per_month", "rejected_reasons"}, queries.keys()
        march = [e for e in good if e["timestamp"].startswith("2024-03")]
        rows = db.execute(queries["events_per_day"]).fetchall()
        if sum(r[1] for r in rows) != len(march):
            failures.append(f"events_per_day: {sum(r[1] for r in rows)} events in March, want {len(march)}")
        rows = db.execute(queries["top_types"]).fetchall()
        by_type = {}
        for e in march:
            by_type[e["event_type"]] = by_type.get(e["event_type"], 0) + 1
        want = sorted(by_type.items(), key=lambda kv: (-kv[1], kv[0]))[:10]
        if [(r[0], r[1]) for r in rows] != want:
            failures.append(f"top_types: {rows}, want {want}")
        rows = db.execute(queries["distinct_users_per_month"]).fetchall()
        for month, users, events in rows:
            key = month.strftime("%Y-%m")
            exact = {e["user_id"] for e in good if e["timestamp"].startswith(key)}
            n = sum(1 for e in good if e["timestamp"].startswith(key))
            if events != n or abs(users - len(exact)) > max(2, 0.05 * len(exact)):
                failures.append(f"distinct_users_per_month {key}: {users} users / {events} events, want ~{len(exact)} / {n}")
        rows = db.execute(queries["rejected_reasons"]).fetchall()
        if sum(r[1] for r in rows) != report["rejected"]:
            failures.append(f"rejected_reasons: {rows} sum to {sum(r[1] for r in rows)}, the ETL rejected {report['rejected']}")
        print(f"docs/sql.md: {len(queries)} queries answered as the ETL counted "
              f"({report['accepted']} accepted, {report['rejected']} rejected)")
    if failures:
        print("\n".join("FAIL " + f for f in failures), file=sys.stderr)
        sys.exit(1)
    print("athena check: 1 passed, 0 failed")


if __name__ == "__main__":
    main()
