//! The layer rule of `src/lib.rs` holds: no module of the library imports a higher layer.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};

/// Each top-level module and its layer, as the Layout section of `src/lib.rs` lists them.
const LAYERS: &[(&str, u8)] = &[
    ("timestamp", 0),
    ("telemetry", 0),
    ("config", 1),
    ("reload", 1),
    ("api", 2),
    ("snapshot", 3),
    ("lifecycle", 3),
    ("collector", 4),
    ("metrics", 5),
    ("web", 6),
    ("landing", 6),
    ("server", 6),
];

fn layer(module: &str) -> u8 {
    LAYERS
        .iter()
        .find(|(name, _)| *name == module)
        .map(|(_, layer)| *layer)
        .unwrap_or_else(|| panic!("module {module} is not in the layer table"))
}

fn sources(dir: &Path, found: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            sources(&path, found);
        } else if path.extension().is_some_and(|e| e == "rs") {
            found.push(path);
        }
    }
}

/// The top-level module a file of `src/` belongs to; `None` for the crate root and the
/// binary's files, which wire everything together.
fn module_of(src: &Path, file: &Path) -> Option<String> {
    let relative = file.strip_prefix(src).unwrap();
    let first = relative.components().next()?.as_os_str().to_str()?;
    let name = first.trim_end_matches(".rs");
    (!matches!(name, "lib" | "main" | "demo")).then(|| name.to_string())
}

#[test]
fn no_module_imports_a_higher_layer() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    sources(&src, &mut files);
    let mut modules_seen = Vec::new();
    let mut violations = Vec::new();
    for file in &files {
        let Some(module) = module_of(&src, file) else {
            continue;
        };
        modules_seen.push(module.clone());
        let text = std::fs::read_to_string(file).unwrap();
        for (at, _) in text.match_indices("crate::") {
            let rest = &text[at + "crate::".len()..];
            let imported: String = rest
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            if imported.is_empty() || imported == module {
                continue;
            }
            if layer(&imported) > layer(&module) {
                violations.push(format!(
                    "{} imports crate::{imported} (layer {}) from layer {}",
                    file.display(),
                    layer(&imported),
                    layer(&module)
                ));
            }
        }
    }
    assert!(violations.is_empty(), "{}", violations.join("\n"));
    // Every module of the table exists, so the table cannot go stale unnoticed.
    for (name, _) in LAYERS {
        assert!(modules_seen.iter().any(|m| m == name), "no module {name}");
    }
}

#[test]
fn the_crate_docs_list_every_module() {
    let lib = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/src/lib.rs")).unwrap();
    let layout = lib
        .split("# Layout")
        .nth(1)
        .and_then(|rest| rest.split("\n\n").next())
        .expect("src/lib.rs has a Layout section");
    for (name, _) in LAYERS {
        assert!(
            layout.contains(&format!("[`{name}`]")),
            "the Layout section of src/lib.rs does not name {name}"
        );
    }
}
