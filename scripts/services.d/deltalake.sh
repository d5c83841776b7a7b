# The Python `deltalake` reader (delta-rs' Python binding) with pyarrow: the Delta Lake tests read
# the tables the sink wrote with an independent reader. Nothing to start; the tests run the
# venv's python, named by DSINK_PYTHON.
# DuckDB with its delta extension is the second, independent reader of tests/second_reader.rs.
deltalake_install() {
    pip_install "deltalake>=1.0" "pyarrow>=15" "duckdb==1.4.4" "duckdb-ext-delta==1.4.4.20260205"
}
deltalake_start() { :; }
deltalake_env() { echo "DSINK_PYTHON=$DSINK_VENV/bin/python"; }
