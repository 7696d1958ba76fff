"""Peer: DuckDB doing the ETL's aggregate job — read JSON Lines, skip bad lines, GROUP BY
(event_date, event_type) with count and approx_count_distinct(user_id), write Hive-partitioned
Parquet."""
import sys
import duckdb

src, out = sys.argv[1], sys.argv[2]
con = duckdb.connect()
con.execute(f"""
COPY (
  SELECT CAST(CAST("timestamp" AS TIMESTAMPTZ) AT TIME ZONE 'UTC' AS DATE) AS event_date,
         event_type,
         count(*) AS event_count,
         approx_count_distinct(user_id) AS unique_users
  FROM read_json('{src}', format='newline_delimited', ignore_errors=true,
                 columns={{'event_type': 'VARCHAR', 'user_id': 'VARCHAR', 'timestamp': 'VARCHAR'}})
  WHERE event_type IS NOT NULL AND event_type <> '' AND user_id IS NOT NULL
    AND TRY_CAST("timestamp" AS TIMESTAMPTZ) IS NOT NULL
  GROUP BY ALL
) TO '{out}' (FORMAT parquet, PARTITION_BY (event_date), OVERWRITE_OR_IGNORE true)
""")
