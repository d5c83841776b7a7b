"""Reads an Iceberg or Delta table with DuckDB (its `iceberg` and `delta` extensions, from the
PyPI packages duckdb-ext-iceberg / duckdb-ext-avro / duckdb-ext-delta) and prints its rows as one
JSON document: a second reader, independent of pyiceberg and delta-rs.

usage: read_duckdb.py iceberg CATALOG_DB NAMESPACE TABLE
       read_duckdb.py delta TABLE_DIR

An Iceberg table is found through the SQL catalog's SQLite database (its current metadata file);
DuckDB reads the metadata, manifests, data files and position deletes itself. A Delta table is
read with its deletion vectors applied.

Output: {"rows": [{column: value}]}. Timestamps become microseconds since the epoch (naive ones
read as UTC), dates ISO text, decimals text, so the Rust side compares exact values.
"""
import json
import os
import sqlite3
import sys

import duckdb
import duckdb_ext

from plain import plain  # tests/support/plain.py: the script's own directory is on sys.path


def connect():
    con = duckdb.connect()
    con.execute("SET autoinstall_known_extensions = false")
    con.execute("SET TimeZone = 'UTC'")
    # `duckdb_ext` is a namespace package of the extension wheels: no `__file__`, one path.
    extensions = os.path.join(list(duckdb_ext.__path__)[0], "extensions")
    con.execute("SET extension_directory = ?", (extensions,))
    return con


def main():
    kind = sys.argv[1]
    con = connect()
    if kind == "iceberg":
        db, namespace, table = sys.argv[2:5]
        row = sqlite3.connect(db).execute(
            "SELECT metadata_location FROM iceberg_tables WHERE table_namespace = ? AND table_name = ?",
            (namespace, table),
        ).fetchone()
        if row is None:
            sys.exit(f"no table {namespace}.{table} in {db}")
        location = row[0].removeprefix("file://")
        con.execute("LOAD iceberg")
        cur = con.execute("SELECT * FROM iceberg_scan(?)", (location,))
    elif kind == "delta":
        con.execute("LOAD delta")
        cur = con.execute("SELECT * FROM delta_scan(?)", (sys.argv[2],))
    else:
        sys.exit(f"unknown table kind {kind}")
    # Through Arrow: DuckDB's own Python values of a `timestamptz` need pytz.
    rows = [{n: plain(v) for n, v in r.items()} for r in cur.fetch_arrow_table().to_pylist()]
    json.dump({"rows": rows}, sys.stdout)


if __name__ == "__main__":
    main()
