"""Unpacks mlflow/ (and its license) from a git mirror of github.com/mlflow/mlflow into a folder, for the tests
that read our stores with MLflow's own code. A mirror may lack its largest blobs (media, generated Java): those,
and symlinks, are skipped; MLflow's Python reads none of them. Usage: unpack_mlflow.py GIT_DIR DEST"""
import os
import subprocess
import sys

mirror, dest = sys.argv[1], sys.argv[2]
git = ["git", f"--git-dir={mirror}"]
listing = subprocess.run(git + ["ls-tree", "-r", "-z", "HEAD", "--", "mlflow", "LICENSE.txt"], capture_output=True, check=True).stdout
wanted = []
for entry in filter(None, listing.split(b"\0")):
    meta, path = entry.split(b"\t", 1)
    mode, kind, sha = meta.split()
    if kind == b"blob" and mode != b"120000":
        wanted.append((sha, path.decode()))
if not wanted:
    sys.exit(f"{mirror}: no mlflow/ folder at HEAD")
out = subprocess.run(git + ["cat-file", "--batch"], input=b"".join(sha + b"\n" for sha, _ in wanted), capture_output=True, check=True).stdout
at, written = 0, 0
for sha, path in wanted:
    end = out.index(b"\n", at)
    header = out[at:end].split()
    at = end + 1
    if header[-1] == b"missing":
        continue
    size = int(header[2])
    data = out[at:at + size]
    at += size + 1
    target = os.path.join(dest, path)
    os.makedirs(os.path.dirname(target), exist_ok=True)
    with open(target, "wb") as f:
        f.write(data)
    written += 1
print(f"unpacked {written} of {len(wanted)} files of mlflow/ into {dest}")
