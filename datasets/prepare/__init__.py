"""Streaming converters from the public multi-task datasets' raw downloads to Parquet + schema.json."""
