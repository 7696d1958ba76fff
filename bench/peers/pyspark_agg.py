"""Peer: the seed's PySpark job (local[*]) — read JSON Lines (PERMISSIVE: bad lines become nulls),
validate, GROUP BY (event_date, event_type) with count and approx_count_distinct(user_id), write
partitioned Parquet."""
import sys
from pyspark.sql import SparkSession, functions as F

src, out = sys.argv[1], sys.argv[2]
spark = (SparkSession.builder.master("local[*]").appName("dataflow-peer")
         .config("spark.sql.session.timeZone", "UTC")
         .config("spark.ui.enabled", "false").getOrCreate())
spark.sparkContext.setLogLevel("ERROR")
schema = "event_id STRING, user_id STRING, event_type STRING, timestamp STRING"
df = spark.read.schema(schema).option("mode", "PERMISSIVE").json(src)
df = (df.where(F.col("event_type").isNotNull() & (F.col("event_type") != "") & F.col("user_id").isNotNull())
        .withColumn("ts", F.try_to_timestamp(F.col("timestamp"))).where(F.col("ts").isNotNull())
        .withColumn("event_date", F.to_date("ts")))
agg = df.groupBy("event_date", "event_type").agg(F.count("*").alias("event_count"),
                                                 F.approx_count_distinct("user_id").alias("unique_users"))
agg.write.mode("overwrite").partitionBy("event_date").parquet(out)
spark.stop()
