//! Repository hygiene checked on every test run: files stay under 800 lines, and every
//! path ARCHITECTURE.md names exists (so the map cannot go stale).

use std::path::Path;

fn rust_files(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

#[test]
fn files_stay_under_800_lines() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = Vec::new();
    rust_files(&root.join("src"), &mut files);
    rust_files(&root.join("tests"), &mut files);
    for f in files {
        let lines = std::fs::read_to_string(&f).unwrap().lines().count();
        assert!(lines <= 800, "{} has {lines} lines (limit 800): split it", f.display());
    }
}

#[test]
fn architecture_paths_exist() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let doc = std::fs::read_to_string(root.join("ARCHITECTURE.md")).unwrap();
    let mut checked = 0;
    for token in doc.split('`').skip(1).step_by(2) {
        let looks_like_path = (token.starts_with("src/") || token.starts_with("tests/") || token == "schema.sql")
            && !token.contains(' ');
        if looks_like_path {
            assert!(root.join(token).exists(), "ARCHITECTURE.md names `{token}`, which does not exist");
            checked += 1;
        }
    }
    assert!(checked >= 10, "ARCHITECTURE.md should map the modules (found {checked} paths)");
}
