"""Refreshes deny/advisories.json from a clone of the RustSec advisory database
(https://github.com/rustsec/advisory-db; read at its HEAD commit): the advisories of every crate named in Cargo.lock, with
the versions each leaves safe. `make test` checks the lock file against that list offline
(tests/advisories.rs); run this after `git pull` in the database to take its new advisories in.

usage: python3 scripts/advisories.py PATH/TO/advisory-db"""

import json
import re
import subprocess
import sys
import tomllib
from pathlib import Path

db = Path(sys.argv[1])
locked = set(re.findall(r'^name = "([^"]+)"$', Path("Cargo.lock").read_text(), re.M))
def git(*args):
    return subprocess.run(["git", "-C", str(db), *args], capture_output=True, text=True, check=True).stdout


advisories = []
for name in git("ls-tree", "-r", "--name-only", "HEAD", "crates/").split():
    crate = name.split("/")[1]
    if crate not in locked or not name.endswith(".md"):
        continue
    text = git("show", f"HEAD:{name}")
    data = tomllib.loads(text.split("```toml", 1)[1].split("```", 1)[0])
    advisory, versions = data["advisory"], data.get("versions", {})
    if advisory.get("withdrawn"):
        continue
    advisories.append({
        "id": advisory["id"],
        "package": advisory["package"],
        "kind": advisory.get("informational", "vulnerability"),
        "patched": versions.get("patched", []),
        "unaffected": versions.get("unaffected", []),
        "title": text.split("```", 2)[2].strip().splitlines()[0].lstrip("# "),
    })
commit = git("log", "-1", "--format=%h %cs").strip()
out = {"database": f"rustsec/advisory-db {commit}", "advisories": advisories}
Path("deny/advisories.json").write_text(json.dumps(out, indent=1) + "\n")
print(f"{len(advisories)} advisories for crates in Cargo.lock, from rustsec/advisory-db {commit}")
