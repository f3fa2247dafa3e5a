"""Reads an mlruns/ folder with the rules of MLflow's FileStore, written from its documented behaviour (not its
code), with PyYAML's safe_load and Python's float() as MLflow uses them. Prints one JSON object: every experiment
and run it would show, and every problem it would meet (a folder it would take for a malformed run, a field it
needs that is missing, a metric line it could not parse).

usage: mlflow_file_store_reader.py MLRUNS
"""
import json
import os
import posixpath
import re
import sys

import yaml

KEY = re.compile(r"^[/\w.\- ]*$")
RESERVED_EXPERIMENT_FOLDERS = {"tags", "datasets", "traces"}
ROOT_SKIPPED = {".trash", "models"}
problems = []


def valid_key(key):
    norm = posixpath.normpath(key)
    return (KEY.match(key) is not None and len(key) <= 250 and norm == key and norm != "."
            and not norm.startswith("..") and not norm.startswith("/"))


def files_under(folder):
    """Keys as MLflow finds them: every file below the folder, as a relative path."""
    keys = []
    if not os.path.isdir(folder):
        return keys
    for root, _, files in os.walk(folder):
        for name in files:
            keys.append(os.path.relpath(os.path.join(root, name), folder))
    return sorted(keys)


def require(meta, key, types, where):
    if key not in meta:
        problems.append(f"{where}: no '{key}'")
        return None
    if not isinstance(meta[key], types):
        problems.append(f"{where}: '{key}' is {type(meta[key]).__name__} {meta[key]!r}")
    return meta[key]


def read_run(run_dir, experiment_id):
    where = os.path.relpath(run_dir, sys.argv[1])
    meta_path = os.path.join(run_dir, "meta.yaml")
    if not os.path.isfile(meta_path):
        problems.append(f"{where}: a folder in an experiment without meta.yaml (MLflow takes it for a malformed run)")
        return None
    with open(meta_path, encoding="utf-8") as f:
        meta = yaml.safe_load(f)
    run_id = require(meta, "run_id", str, where)
    run_uuid = require(meta, "run_uuid", str, where)
    if run_id != run_uuid or run_id != os.path.basename(run_dir):
        problems.append(f"{where}: run_id {run_id!r}, run_uuid {run_uuid!r} and the folder disagree")
    exp = require(meta, "experiment_id", (str, int), where)
    if str(exp) != experiment_id:
        problems.append(f"{where}: experiment_id {exp!r} is not the parent folder {experiment_id!r}")
    status = require(meta, "status", int, where)
    if status not in (1, 2, 3, 4, 5):
        problems.append(f"{where}: status {status!r} is none of 1-5")
    start = require(meta, "start_time", int, where)
    end = require(meta, "end_time", (int, type(None)), where)
    for key in ("user_id", "lifecycle_stage", "artifact_uri", "run_name"):
        require(meta, key, str, where)
    run = {"run_id": run_id, "experiment_id": str(exp), "status": status, "start_time": start, "end_time": end,
           "user_id": meta.get("user_id"), "lifecycle_stage": meta.get("lifecycle_stage"),
           "artifact_uri": meta.get("artifact_uri"), "run_name": meta.get("run_name"),
           "params": {}, "tags": {}, "metrics": {}, "artifacts": files_under(os.path.join(run_dir, "artifacts"))}
    for kind in ("params", "tags"):
        for key in files_under(os.path.join(run_dir, kind)):
            if not valid_key(key):
                problems.append(f"{where}/{kind}/{key}: not a valid key")
            with open(os.path.join(run_dir, kind, key), encoding="utf-8") as f:
                run[kind][key] = f.read()
    for key in files_under(os.path.join(run_dir, "metrics")):
        if not valid_key(key):
            problems.append(f"{where}/metrics/{key}: not a valid key")
        points = []
        with open(os.path.join(run_dir, "metrics", key), encoding="utf-8") as f:
            for number, line in enumerate(f.read().splitlines(), 1):
                parts = line.strip().split(" ")
                try:
                    if len(parts) not in (2, 3):
                        raise ValueError(f"{len(parts)} fields")
                    points.append([int(parts[0]), repr(float(parts[1])), int(parts[2]) if len(parts) == 3 else 0])
                except ValueError as e:
                    problems.append(f"{where}/metrics/{key} line {number}: {line!r} ({e})")
        if not points:
            problems.append(f"{where}/metrics/{key}: no data")
        run["metrics"][key] = points
    if run["tags"].get("mlflow.runName") != run["run_name"]:
        problems.append(f"{where}: tag mlflow.runName {run['tags'].get('mlflow.runName')!r} is not run_name {run['run_name']!r}")
    return run


def main():
    root = sys.argv[1]
    experiments = []
    for name in sorted(os.listdir(root)):
        exp_dir = os.path.join(root, name)
        if not os.path.isdir(exp_dir) or name in ROOT_SKIPPED:
            continue
        meta_path = os.path.join(exp_dir, "meta.yaml")
        if not os.path.isfile(meta_path):
            problems.append(f"{name}: a folder in the store without meta.yaml (a malformed experiment)")
            continue
        with open(meta_path, encoding="utf-8") as f:
            meta = yaml.safe_load(f)
        exp_id = require(meta, "experiment_id", (str, int), name)
        if str(exp_id) != name:
            problems.append(f"{name}: experiment_id {exp_id!r} is not the folder's name")
        for key in ("name", "artifact_location", "lifecycle_stage"):
            require(meta, key, str, name)
        for key in ("creation_time", "last_update_time"):
            require(meta, key, int, name)
        runs = []
        for run_name in sorted(os.listdir(exp_dir)):
            run_dir = os.path.join(exp_dir, run_name)
            if os.path.isdir(run_dir) and run_name not in RESERVED_EXPERIMENT_FOLDERS:
                run = read_run(run_dir, name)
                if run is not None:
                    runs.append(run)
        experiments.append({"experiment_id": str(exp_id), "name": meta.get("name"), "artifact_location": meta.get("artifact_location"),
                            "lifecycle_stage": meta.get("lifecycle_stage"), "creation_time": meta.get("creation_time"),
                            "last_update_time": meta.get("last_update_time"), "runs": runs})
    print(json.dumps({"experiments": experiments, "problems": problems, "trash": os.path.isdir(os.path.join(root, ".trash"))}))


main()
