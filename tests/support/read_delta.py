"""Reads a Delta table with the Python `deltalake` reader and prints it as one JSON document.

usage: read_delta.py TABLE_URI [APP_ID ...]

TABLE_URI is a directory or an `s3://bucket/prefix` URL; for the latter, the environment variable
DSINK_STORAGE_OPTIONS holds delta-rs' storage options as a JSON object (AWS_ENDPOINT_URL, ...).

Output: {"version", "schema": [[name, type, nullable]], "rows": [...], "history": [...],
"txn": {app_id: version or null}, "deletion_vectors": whether the table has the feature}. Timestamps become microseconds since the epoch (naive ones
read as UTC), dates ISO text, decimals text, so the Rust side compares exact values.
"""
import json
import os
import sys

from deltalake import DeltaTable

from plain import plain  # tests/support/plain.py: the script's own directory is on sys.path


def read_rows(table):
    """The table's rows. pyarrow's scanner (`to_pyarrow_table`) refuses tables with deletion
    vectors; the reader's DataFusion query engine applies them."""
    if "deletionVectors" in (table.protocol().reader_features or []):
        from deltalake import QueryBuilder
        import pyarrow
        result = QueryBuilder().register("t", table).execute("SELECT * FROM t").read_all()
        return pyarrow.table(result).to_pylist()
    return table.to_pyarrow_table().to_pylist()


def main():
    options = json.loads(os.environ.get("DSINK_STORAGE_OPTIONS") or "{}")
    table = DeltaTable(sys.argv[1], storage_options=options or None)
    rows = [{k: plain(v) for k, v in r.items()} for r in read_rows(table)]
    schema = [[f.name, str(f.type), f.nullable] for f in table.schema().fields]
    history = [{k: plain(v) for k, v in h.items()} for h in table.history()]
    txn = {app: table.transaction_version(app) for app in sys.argv[2:]}
    protocol = table.protocol()
    dvs = "deletionVectors" in (protocol.writer_features or [])
    json.dump({"version": table.version(), "schema": schema, "rows": rows, "history": history, "txn": txn,
               "deletion_vectors": dvs}, sys.stdout, default=str)


main()
# deltalake 1.6 with pyarrow 26 sometimes aborts while the interpreter shuts down ("terminate
# called without an active exception", about one run in twenty, more under load), after the
# output is complete: leave without the shutdown.
sys.stdout.flush()
os._exit(0)
