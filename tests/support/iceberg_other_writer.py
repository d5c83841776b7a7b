"""Plays another writer of an Iceberg table, doing table maintenance any Iceberg user may run.

usage: iceberg_other_writer.py CATALOG_DB WAREHOUSE_DIR NAMESPACE.TABLE [expire | rewrite]

expire (the default): appends one row with pyiceberg, then expires every snapshot but the new
current one; prints {"appended": snapshot id, "expired": [snapshot ids]}. The table's columns
must be k, v (long) and s (string).
rewrite: overwrites the table with its own rows (new data files, the old data and delete files
removed, as a compaction does); prints {"rewritten": snapshot id, "rows": n}.
"""
import json
import sys

import pyarrow as pa
from pyiceberg.catalog.sql import SqlCatalog


def main():
    db, warehouse, name = sys.argv[1], sys.argv[2], sys.argv[3]
    catalog = SqlCatalog("default", uri=f"sqlite:///{db}", warehouse=f"file://{warehouse}")
    table = catalog.load_table(name)
    if len(sys.argv) > 4 and sys.argv[4] == "rewrite":
        rows = table.scan().to_arrow()
        table.overwrite(rows)
        table = catalog.load_table(name)
        json.dump({"rewritten": table.current_snapshot().snapshot_id, "rows": rows.num_rows}, sys.stdout)
        return
    rows = pa.Table.from_pylist([{"k": 999999, "v": 999999, "s": "other writer"}], schema=table.schema().as_arrow())
    table.append(rows)
    table = catalog.load_table(name)
    current = table.current_snapshot().snapshot_id
    old = [s.snapshot_id for s in table.snapshots() if s.snapshot_id != current]
    table.maintenance.expire_snapshots().by_ids(old).commit()
    table = catalog.load_table(name)
    left = [s.snapshot_id for s in table.snapshots()]
    assert left == [current], f"expected only the current snapshot, found {left}"
    json.dump({"appended": current, "expired": old}, sys.stdout)


main()
