//! No crate the product runs on has a RustSec advisory (a vulnerability or unsoundness), by the
//! pinned list `deny/advisories.json` (taken from the RustSec database by
//! `scripts/advisories.py`; nothing is fetched here). The runtime tree is `cargo tree`'s normal
//! and build dependencies on Linux (this host; the Lambda's arm64 Linux takes the same crates):
//! test-only crates (rsa, for test keys) are not in it.

use std::collections::BTreeSet;
use std::process::Command;

use semver::{Version, VersionReq};
use serde::Deserialize;

#[derive(Deserialize)]
struct Pinned {
    database: String,
    advisories: Vec<Advisory>,
}

#[derive(Deserialize)]
struct Advisory {
    id: String,
    package: String,
    kind: String,
    patched: Vec<String>,
    unaffected: Vec<String>,
    title: String,
}

impl Advisory {
    /// Affected unless a patched or unaffected range holds the version.
    fn affects(&self, version: &Version) -> bool {
        let safe = self.patched.iter().chain(&self.unaffected);
        !safe.filter_map(|req| VersionReq::parse(req).ok()).any(|req| req.matches(version))
    }
}

fn pinned() -> Pinned {
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/deny/advisories.json")).expect("the list");
    serde_json::from_str(&text).expect("deny/advisories.json as scripts/advisories.py writes it")
}

/// (name, version) of every crate in the product's runtime tree.
fn runtime_tree() -> BTreeSet<(String, Version)> {
    let output = Command::new(env!("CARGO"))
        .args(["tree", "--offline", "--locked", "-p", "github-audit-sekoia", "-e", "normal,build"])
        .args(["--prefix", "none", "--format", "{p}"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("cargo tree runs");
    assert!(output.status.success(), "cargo tree: {}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter_map(|line| {
            let mut words = line.split_whitespace();
            let name = words.next()?.to_owned();
            Some((name, Version::parse(words.next()?.strip_prefix('v')?).ok()?))
        })
        .collect()
}

#[test]
fn no_crate_of_the_runtime_tree_has_a_vulnerability_or_unsoundness_advisory() {
    let (pinned, tree) = (pinned(), runtime_tree());
    assert!(tree.iter().any(|(name, _)| name == "aws-sdk-s3"), "the tree was read: {} crates", tree.len());
    let mut found = Vec::new();
    for advisory in pinned.advisories.iter().filter(|a| a.kind == "vulnerability" || a.kind == "unsound") {
        for (name, version) in tree.iter().filter(|(name, _)| *name == advisory.package) {
            if advisory.affects(version) {
                found.push(format!(
                    "{} {name} {version}: {} (safe: {:?})",
                    advisory.id, advisory.title, advisory.patched
                ));
            }
        }
    }
    assert!(found.is_empty(), "by {}:\n{}", pinned.database, found.join("\n"));
}

#[test]
fn a_version_outside_every_safe_range_is_affected() {
    let pinned = pinned();
    let lru = pinned.advisories.iter().find(|a| a.id == "RUSTSEC-2026-0253").expect("lru's advisory is pinned");
    assert!(lru.affects(&Version::new(0, 16, 4)), "the version aws-sdk-s3 1.122 brought");
    assert!(!lru.affects(&Version::new(0, 18, 5)));
}
