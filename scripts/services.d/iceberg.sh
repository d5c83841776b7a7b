# pyiceberg with its SQL (SQLite) catalog, and pyarrow: the Iceberg tests read the tables the sink
# wrote through the same SQLite catalog with an independent reader. Nothing to start; the tests
# run the venv's python, named by DSINK_PYTHON. The REST catalog tests start their own catalog
# server with it (tests/support/iceberg_rest_catalog.py, over pyiceberg's SqlCatalog) and stop it.
# DuckDB with its iceberg extension (and the avro extension it loads) is the second, independent
# reader of tests/second_reader.rs; the extension wheels are built for one DuckDB version.
iceberg_install() {
    pip_install "pyiceberg[sql-sqlite]>=0.9" "pyarrow>=15" \
        "duckdb==1.4.4" "duckdb-ext-iceberg==1.4.4.20260205" "duckdb-ext-avro==1.4.4.20260205"
}
iceberg_start() { :; }
iceberg_env() { echo "DSINK_PYTHON=$DSINK_VENV/bin/python"; }
