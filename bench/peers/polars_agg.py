"""Reference: Python polars with a fixed schema (one malformed line fails a polars JSON read, so
this runs on the clean file only)."""
import sys
import polars as pl

src, out = sys.argv[1], sys.argv[2]
schema = {"event_id": pl.String, "user_id": pl.String, "event_type": pl.String, "timestamp": pl.String}
df = (pl.scan_ndjson(src, schema=schema, ignore_errors=True)
      .with_columns(pl.col("timestamp").str.to_datetime(time_zone="UTC", strict=False).alias("ts"))
      .drop_nulls(["user_id", "event_type", "ts"])
      .with_columns(pl.col("ts").dt.date().alias("event_date"))
      .group_by("event_date", "event_type")
      .agg(pl.len().alias("event_count"), pl.col("user_id").approx_n_unique().alias("unique_users"))
      .collect())
df.write_parquet(out, partition_by="event_date")
