//! Property tests of remediate's parsers of untrusted input: runbook files
//! (YAML, then validation), parameter files (`--params`) and the YAML
//! reader under them. Mutations of the bundled runbooks and garbage; each
//! must give a value or an error, never a panic. See `stdx::fuzz` for the
//! seed and replay.

use std::path::Path;

use remediate::runbook::{detector_params_from_source, yaml};
use remediate::RunbookSet;
use stdx::fuzz::{check, garbage, mutated, Rng};

/// The bundled runbook sets: `runbooks/` (three files) and the lab's.
fn bundled() -> Vec<Vec<(std::path::PathBuf, String)>> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    ["runbooks", "lab/runbooks"]
        .iter()
        .map(|dir| {
            let mut files: Vec<_> = std::fs::read_dir(root.join(dir))
                .unwrap()
                .map(|e| e.unwrap().path())
                .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
                .collect();
            files.sort();
            files
                .into_iter()
                .map(|p| {
                    let text = std::fs::read_to_string(&p).unwrap();
                    (p, text)
                })
                .collect()
        })
        .collect()
}

#[test]
fn runbooks_never_panic() {
    let sets = bundled();
    for set in &sets {
        RunbookSet::from_sources(set).unwrap_or_else(|e| panic!("a bundled runbook set: {e}"));
    }
    check(
        "runbooks",
        3000,
        |rng: &mut Rng| {
            // One file of a set mutated (or replaced by garbage), the others
            // as they are: cross-file checks run on every case.
            let mut set = rng.pick(&sets).clone();
            let i = rng.below(set.len());
            let bytes = if rng.one_in(10) {
                garbage(rng, 512)
            } else {
                mutated(rng, set[i].1.as_bytes(), 8)
            };
            set[i].1 = String::from_utf8_lossy(&bytes).into_owned();
            set
        },
        |set| {
            if let Err(e) = RunbookSet::from_sources(set) {
                // Every message renders (positions, paths, escapes).
                let _ = e.to_string();
            }
        },
    );
}

#[test]
fn params_files_never_panic() {
    let base = "direction: up\nlimit_above: 10\nwarmup: 120\n";
    detector_params_from_source(Path::new("p.yaml"), base).expect("the base is valid");
    check(
        "params",
        3000,
        |rng| {
            let bytes = if rng.one_in(10) {
                garbage(rng, 256)
            } else {
                mutated(rng, base.as_bytes(), 6)
            };
            String::from_utf8_lossy(&bytes).into_owned()
        },
        |text| {
            let _ = detector_params_from_source(Path::new("p.yaml"), text);
        },
    );
}

#[test]
fn yaml_with_anchors_aliases_and_nesting_is_bounded() {
    // Random documents built from anchors, aliases, tags and nesting: the
    // reader must stay within its alias budget and depth, whatever the mix.
    check(
        "yaml_structures",
        3000,
        |rng| {
            let mut text = String::new();
            // Anchor `a{i}` is defined on line `i`; aliases refer to earlier ones.
            for i in 0..1 + rng.below(12) {
                let anchors = i;
                let refs: Vec<String> = (0..1 + rng.below(12))
                    .map(|_| match (anchors, rng.below(5)) {
                        (0, _) | (_, 0) => format!("{}", rng.below(100)),
                        (_, 1) => "[".repeat(rng.below(80)) + &"]".repeat(rng.below(80)),
                        (_, 2) => "!x y".to_owned(),
                        _ => format!("*a{}", rng.below(anchors)),
                    })
                    .collect();
                text.push_str(&format!("k{i}: &a{anchors} [{}]\n", refs.join(", ")));
            }
            text
        },
        |text| {
            let _ = yaml::parse(text);
        },
    );
}
