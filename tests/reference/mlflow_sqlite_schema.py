"""Prints the SQLite schema MLflow's own migrations build, as tracking/MlflowSchema.sql holds it.

Usage: /usr/bin/python3 mlflow_sqlite_schema.py MLFLOW_SOURCE_TREE

MLflow's SqlAlchemyStore, given an empty database, creates its tables and runs every alembic migration to the head
revision. This script lets it do so in a temporary database and prints each CREATE statement SQLite kept
(sqlite_master.sql; tables, then indexes, each sorted by name), then the rows the migrations themselves insert
(alembic_version, the default workspace). The order of a table's constraints can differ from one run to the next
(a migration that rebuilds a table collects them in a set); the test compares statements line by line, unordered. Experiment 0 is not printed: MLflow's store makes it, with an artifact location of its own choosing.
"""
import os
import sqlite3
import sys
import tempfile

sys.path.insert(0, sys.argv[1])
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mlflow_shim  # noqa: E402,F401  (stubs for modules reading never touches)
import logging  # noqa: E402

logging.disable(logging.CRITICAL)
from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore  # noqa: E402


def quote(value):
    if value is None:
        return "NULL"
    if isinstance(value, (int, float)):
        return repr(value)
    return "'" + str(value).replace("'", "''") + "'"


with tempfile.TemporaryDirectory() as tmp:
    db = os.path.join(tmp, "schema.db")
    SqlAlchemyStore(f"sqlite:///{db}", os.path.join(tmp, "artifacts"))
    con = sqlite3.connect(db)
    # SQLAlchemy emits some indexes in set order, which varies between interpreter runs: the statements are printed
    # sorted, tables first (an index needs its table), so the same migrations always print the same text.
    kinds = {"table": 0, "index": 1, "view": 2, "trigger": 3}
    objects = con.execute("SELECT type, name, sql FROM sqlite_master WHERE sql IS NOT NULL").fetchall()
    out = [sql.strip() + ";" for kind, name, sql in sorted(objects, key=lambda o: (kinds.get(o[0], 9), o[1]))]
    for table in sorted(r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type = 'table'")):
        if table == "experiments":
            continue
        columns = [r[1] for r in con.execute(f'PRAGMA table_info("{table}")')]
        for row in sorted(con.execute(f'SELECT * FROM "{table}"').fetchall(), key=repr):
            out.append(f'INSERT INTO "{table}" ({", ".join(columns)}) VALUES ({", ".join(quote(v) for v in row)});')
    sys.stdout.write("\n".join(out) + "\n")
