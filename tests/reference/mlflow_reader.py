"""Reads a tracking store with MLflow's own client, as a user's MLflow would, and prints what it found as JSON.

Usage: /usr/bin/python3 mlflow_reader.py MLFLOW_SOURCE_TREE TRACKING_URI

TRACKING_URI is sqlite:////abs/mlflow.db (MLflow's SqlAlchemyStore) or file:///abs/mlruns (its FileStore). Every
experiment and active run comes through MlflowClient: info, params, tags, each metric's whole history
(get_metric_history) and its latest value (the run's data), and the artifacts (list_artifacts, recursively). For a
database, SqlAlchemyStore is also opened directly: it refuses a schema at another revision than its head, so opening
at all proves the revision matches. The output has the shape of mlflow_file_store_reader.py's, plus "mlflow" (the
version read with) and "revision" (the database's alembic revision).

MLflow runs from its source tree on Debian 12's python3-sqlalchemy, python3-alembic, python3-protobuf,
python3-pydantic, python3-cachetools, python3-sqlparse, python3-importlib-metadata, python3-yaml, python3-requests,
python3-packaging, python3-click and python3-cloudpickle; mlflow_shim.py stubs the few modules Debian lacks that
reading never calls (OpenTelemetry, FastAPI, the Databricks SDK).
"""
import json
import logging
import os
import sys
import warnings

sys.path.insert(0, sys.argv[1])
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mlflow_shim  # noqa: E402,F401

logging.disable(logging.CRITICAL)
warnings.simplefilter("ignore")
os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")

import mlflow  # noqa: E402
from mlflow.entities import RunStatus, ViewType  # noqa: E402
from mlflow.tracking.client import MlflowClient  # noqa: E402

uri = sys.argv[2]
problems = []
revision = None
if uri.startswith("sqlite:"):
    from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

    import sqlalchemy

    store = SqlAlchemyStore(uri, os.path.join(os.path.dirname(uri[len("sqlite:///"):]), "mlruns"))
    with store.engine.connect() as connection:
        revision = connection.execute(sqlalchemy.text("SELECT version_num FROM alembic_version")).scalar()

client = MlflowClient(tracking_uri=uri)


def artifacts(run_id, path=None):
    found = []
    for info in client.list_artifacts(run_id, path):
        found.extend(artifacts(run_id, info.path) if info.is_dir else [info.path])
    return found


experiments = []
for experiment in client.search_experiments(view_type=ViewType.ALL):
    runs = []
    for run in client.search_runs([experiment.experiment_id], max_results=1000):
        info = run.info
        metrics = {}
        for key in run.data.metrics:
            history = client.get_metric_history(info.run_id, key)
            metrics[key] = [[m.timestamp, repr(float(m.value)), m.step] for m in history]
        got = client.get_run(info.run_id)
        if got.data.params != run.data.params or got.data.tags != run.data.tags:
            problems.append(f"run {info.run_id}: get_run and search_runs disagree")
        if run.data.tags.get("mlflow.runName") != info.run_name:
            problems.append(f"run {info.run_id}: tag mlflow.runName {run.data.tags.get('mlflow.runName')!r} is not run_name {info.run_name!r}")
        runs.append({"run_id": info.run_id, "experiment_id": str(info.experiment_id), "status": RunStatus.from_string(info.status),
                     "start_time": info.start_time, "end_time": info.end_time, "user_id": info.user_id,
                     "lifecycle_stage": info.lifecycle_stage, "artifact_uri": info.artifact_uri, "run_name": info.run_name,
                     "params": dict(run.data.params), "tags": dict(run.data.tags), "metrics": metrics,
                     "latest": {k: repr(float(v)) for k, v in run.data.metrics.items()}, "artifacts": sorted(artifacts(info.run_id))})
    experiments.append({"experiment_id": str(experiment.experiment_id), "name": experiment.name,
                        "artifact_location": experiment.artifact_location, "lifecycle_stage": experiment.lifecycle_stage,
                        "creation_time": experiment.creation_time, "last_update_time": experiment.last_update_time, "runs": runs})
print(json.dumps({"mlflow": mlflow.__version__, "revision": revision, "experiments": experiments, "problems": problems}))
