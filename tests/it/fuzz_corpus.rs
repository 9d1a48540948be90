//! The fuzz targets' seed corpus (and the findings committed there as
//! seeds) replayed through the same entry points, on stable: a regression
//! the fuzzer once found fails here without the fuzzer.

use std::path::Path;

fn replay(target: &str, run: fn(&[u8])) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/corpus")
        .join(target);
    let mut files: Vec<_> = match std::fs::read_dir(&dir) {
        Ok(entries) => entries.filter_map(|e| e.ok().map(|e| e.path())).collect(),
        Err(e) => panic!("{}: {e}", dir.display()),
    };
    files.sort();
    assert!(!files.is_empty(), "{}: no seeds", dir.display());
    for file in files {
        let data = match std::fs::read(&file) {
            Ok(d) => d,
            Err(e) => panic!("{}: {e}", file.display()),
        };
        if std::panic::catch_unwind(|| run(&data)).is_err() {
            panic!("{target}: {} fails", file.display());
        }
    }
}

#[test]
fn loader() {
    replay("loader", hoist::fuzz::loader);
}

#[test]
fn rewriter() {
    replay("rewriter", hoist::fuzz::rewriter);
}

#[test]
fn marker() {
    replay("marker", hoist::fuzz::marker);
}

#[test]
fn webhook_payload() {
    replay("webhook_payload", hoist::fuzz::webhook_payload);
}

#[test]
fn webhook_signature() {
    replay("webhook_signature", hoist::fuzz::webhook_signature);
}

#[test]
fn registry_headers() {
    replay("registry_headers", hoist::fuzz::registry_headers);
}
