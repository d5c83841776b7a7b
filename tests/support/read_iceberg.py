"""Reads an Iceberg table through pyiceberg's SQL catalog and prints it as one JSON document.

usage: read_iceberg.py CATALOG_DB WAREHOUSE NAMESPACE.TABLE [CATALOG_NAME [ROW_FILTER...]]

WAREHOUSE is a directory or an `s3://bucket/prefix` URL; for the latter, the environment variable
DSINK_STORAGE_OPTIONS holds the catalog's S3 properties as a JSON object (s3.endpoint, ...).
A CATALOG_DB that is an `http://` URL names a REST catalog instead, read with pyiceberg's
RestCatalog; DSINK_STORAGE_OPTIONS then holds its properties too (credential or token).

Output: {"schema": [[name, type, nullable]], "rows": [...], "snapshots": [{"id", "parent",
"operation", "summary"}] in commit order along the current branch, "data_files": [paths],
"partition_spec": [[source column, transform, field name]], "filtered": [[rows]...]} where
"filtered" holds, for each ROW_FILTER (pyiceberg's filter syntax, e.g. "k = 3"), the rows of a
scan with that filter: pyiceberg prunes data files by their partition values, so rows written
into the wrong partition would be missing from it.
Timestamps become microseconds since the epoch (naive ones read as UTC), dates ISO text,
decimals text, so the Rust side compares exact values.
"""
import json
import os
import sys

from pyiceberg.catalog.rest import RestCatalog
from pyiceberg.catalog.sql import SqlCatalog

from plain import plain  # tests/support/plain.py: the script's own directory is on sys.path


def main():
    db, warehouse, name = sys.argv[1], sys.argv[2], sys.argv[3]
    catalog_name = sys.argv[4] if len(sys.argv) > 4 else "default"
    if "://" not in warehouse:
        warehouse = f"file://{warehouse}"
    options = json.loads(os.environ.get("DSINK_STORAGE_OPTIONS") or "{}")
    if db.startswith("http://") or db.startswith("https://"):
        catalog = RestCatalog(catalog_name, uri=db, warehouse=warehouse, **options)
    else:
        catalog = SqlCatalog(catalog_name, uri=f"sqlite:///{db}", warehouse=warehouse, **options)
    table = catalog.load_table(name)
    rows = [{k: plain(v) for k, v in r.items()} for r in table.scan().to_arrow().to_pylist()]
    schema = [[f.name, str(f.field_type), not f.required] for f in table.schema().fields]
    snapshots = []
    snap = table.current_snapshot()
    while snap is not None:
        summary = snap.summary
        snapshots.append({
            "id": snap.snapshot_id,
            "parent": snap.parent_snapshot_id,
            "operation": str(summary.operation.value) if summary is not None else None,
            "summary": dict(summary.additional_properties) if summary is not None else {},
        })
        snap = table.snapshot_by_id(snap.parent_snapshot_id) if snap.parent_snapshot_id is not None else None
    snapshots.reverse()
    files = [t.file.file_path for t in table.scan().plan_files()]
    spec = [[table.schema().find_column_name(f.source_id), str(f.transform), f.name] for f in table.spec().fields]
    filtered = [[{k: plain(v) for k, v in r.items()} for r in table.scan(row_filter=f).to_arrow().to_pylist()]
                for f in sys.argv[5:]]
    json.dump({"schema": schema, "rows": rows, "snapshots": snapshots, "data_files": files,
               "partition_spec": spec, "filtered": filtered}, sys.stdout, default=str)


main()
