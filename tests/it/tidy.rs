//! Repository hygiene checked on every test run: files stay under 800 lines, every path
//! ARCHITECTURE.md names exists (so the map cannot go stale), and the top-level modules
//! import only what ARCHITECTURE.md's allowed-imports table says, with no cycle but the
//! known exceptions listed there.

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

/// The top-level module a file of `src/` belongs to (`src/http/router.rs` → `http`).
fn module_of(src: &Path, file: &Path) -> String {
    let rel = file.strip_prefix(src).unwrap();
    let first = rel.components().next().unwrap().as_os_str().to_string_lossy().into_owned();
    first.trim_end_matches(".rs").to_string()
}

/// `crate::name` references in a file (use lines and paths alike).
fn crate_refs(text: &str) -> std::collections::BTreeSet<String> {
    let mut out = std::collections::BTreeSet::new();
    for (i, _) in text.match_indices("crate::") {
        let before = text[..i].chars().next_back();
        if before.is_some_and(|c| c.is_alphanumeric() || c == '_') {
            continue; // e.g. `scimd_crate::`
        }
        let name: String = text[i + 7..].chars().take_while(|c| c.is_ascii_lowercase() || *c == '_' || c.is_ascii_digit()).collect();
        if !name.is_empty() {
            out.insert(name);
        }
    }
    out
}

#[test]
fn modules_import_only_what_architecture_md_allows() {
    use std::collections::{BTreeMap, BTreeSet};
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let doc = std::fs::read_to_string(root.join("ARCHITECTURE.md")).unwrap();
    let list = |cell: &str| -> BTreeSet<String> { cell.split(',').map(|w| w.trim().to_string()).filter(|w| !w.is_empty() && w != "—").collect() };
    let mut allowed: BTreeMap<String, (BTreeSet<String>, BTreeSet<String>)> = BTreeMap::new();
    for line in doc.lines().filter(|l| l.starts_with("| `")) {
        let cells: Vec<&str> = line.trim_matches('|').split('|').map(str::trim).collect();
        if cells.len() == 3 {
            allowed.insert(cells[0].trim_matches('`').to_string(), (list(cells[1]), list(cells[2])));
        }
    }
    let exceptions: BTreeSet<(String, String)> = doc
        .lines()
        .filter_map(|l| l.strip_prefix("- exception: `"))
        .filter_map(|l| l.split('`').next())
        .filter_map(|edge| edge.split_once(" -> "))
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect();
    assert!(allowed.len() >= 10, "ARCHITECTURE.md's allowed-imports table was not found");

    let src = root.join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let mut edges: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut problems = Vec::new();
    for file in files {
        let module = module_of(&src, &file);
        if module == "lib" || module == "main" {
            continue;
        }
        let Some((may, crates)) = allowed.get(&module) else {
            problems.push(format!("module {module} ({}) has no row in ARCHITECTURE.md's allowed-imports table", file.display()));
            continue;
        };
        let text = std::fs::read_to_string(&file).unwrap();
        for used in crate_refs(&text) {
            if used == module || !allowed.contains_key(&used) {
                continue;
            }
            edges.entry(module.clone()).or_default().insert(used.clone());
            if !may.contains(&used) && !exceptions.contains(&(module.clone(), used.clone())) {
                problems.push(format!("{} imports crate::{used}, which `{module}` may not", file.display()));
            }
        }
        for layer_crate in ["rusqlite", "hyper"] {
            let named = text.contains(&format!("{layer_crate}::")) || text.contains(&format!("use {layer_crate}"));
            if named && !crates.contains(layer_crate) {
                problems.push(format!("{} uses {layer_crate}, which `{module}` may not", file.display()));
            }
        }
    }
    for (from, to) in &exceptions {
        if !edges.get(from).is_some_and(|e| e.contains(to)) {
            problems.push(format!("the exception `{from} -> {to}` is gone: remove it from ARCHITECTURE.md"));
        }
    }
    // No cycle once the exception edges are left out (depth-first search).
    fn visit(n: &str, edges: &BTreeMap<String, BTreeSet<String>>, skip: &BTreeSet<(String, String)>, path: &mut Vec<String>, done: &mut BTreeSet<String>, cycles: &mut Vec<String>) {
        if let Some(at) = path.iter().position(|p| p == n) {
            cycles.push(format!("{} -> {n}", path[at..].join(" -> ")));
            return;
        }
        if !done.insert(n.to_string()) {
            return;
        }
        path.push(n.to_string());
        for next in edges.get(n).into_iter().flatten() {
            if !skip.contains(&(n.to_string(), next.clone())) {
                visit(next, edges, skip, path, done, cycles);
            }
        }
        path.pop();
    }
    let mut cycles = Vec::new();
    let mut done = BTreeSet::new();
    for n in edges.keys() {
        visit(n, &edges, &exceptions, &mut Vec::new(), &mut done, &mut cycles);
    }
    problems.extend(cycles.into_iter().map(|c| format!("import cycle: {c}")));
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

/// ARCHITECTURE.md: only `src/tenant.rs` (and `src/tenant/`) builds paths inside the data
/// directory. A `.root().join(` elsewhere is a second copy of the layout (`backups/` was one).
#[test]
fn only_tenant_builds_data_directory_paths() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = Vec::new();
    rust_files(&root.join("src"), &mut files);
    for f in files {
        let rel = f.strip_prefix(root).unwrap().to_string_lossy().replace('\\', "/");
        if rel == "src/tenant.rs" || rel.starts_with("src/tenant/") {
            continue;
        }
        let text = std::fs::read_to_string(&f).unwrap();
        for (n, line) in text.lines().enumerate() {
            assert!(!line.contains("root().join("), "{rel}:{}: builds a data-directory path; add it to DataDir in src/tenant.rs", n + 1);
        }
    }
}

/// The string literals of a Rust source (plain and raw), comments left out. Simple on
/// purpose: it knows `//` and `/* */` comments, escapes, `r#"…"#` and char literals.
fn string_literals(text: &str) -> Vec<String> {
    let b = text.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'/' if b.get(i + 1) == Some(&b'/') => i = text[i..].find('\n').map_or(b.len(), |n| i + n),
            b'/' if b.get(i + 1) == Some(&b'*') => i = text[i + 2..].find("*/").map_or(b.len(), |n| i + 2 + n + 2),
            b'\'' => {
                // '"' or '\"' (a char literal), else a lifetime: step over the quote.
                if b.get(i + 2) == Some(&b'\'') {
                    i += 3;
                } else if b.get(i + 1) == Some(&b'\\') && b.get(i + 3) == Some(&b'\'') {
                    i += 4;
                } else {
                    i += 1;
                }
            }
            b'r' if (b.get(i + 1) == Some(&b'"') || b.get(i + 1) == Some(&b'#')) && (i == 0 || !(b[i - 1].is_ascii_alphanumeric() || b[i - 1] == b'_')) => {
                let hashes = b[i + 1..].iter().take_while(|&&c| c == b'#').count();
                if b.get(i + 1 + hashes) != Some(&b'"') {
                    i += 1;
                    continue;
                }
                let start = i + 2 + hashes;
                let close = format!("\"{}", "#".repeat(hashes));
                let end = text[start..].find(&close).map_or(b.len(), |n| start + n);
                out.push(text[start..end].to_string());
                i = end + close.len();
            }
            b'"' => {
                let mut j = i + 1;
                while j < b.len() && b[j] != b'"' {
                    j += if b[j] == b'\\' { 2 } else { 1 };
                }
                out.push(text[i + 1..j.min(b.len())].to_string());
                i = j + 1;
            }
            _ => i += 1,
        }
    }
    out
}

/// SQL keywords in capitals; PRAGMA only opening the literal, since help text names
/// `PRAGMA integrity_check` in prose.
fn looks_like_sql(s: &str) -> bool {
    s.trim_start().starts_with("PRAGMA ") || ["SELECT ", "INSERT INTO", "DELETE FROM"].iter().any(|k| s.contains(k)) || s.find("UPDATE ").is_some_and(|at| s[at..].contains(" SET"))
}

/// ARCHITECTURE.md: the store is the only place with SQL text.
#[test]
fn only_the_store_has_sql_text() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let mut problems = Vec::new();
    for file in files.iter().filter(|f| !f.starts_with(src.join("store"))) {
        let text = std::fs::read_to_string(file).unwrap();
        for lit in string_literals(&text).into_iter().filter(|l| looks_like_sql(l)) {
            problems.push(format!("{}: {lit:?}", file.display()));
        }
    }
    assert!(problems.is_empty(), "SQL text outside src/store/:\n{}", problems.join("\n"));
}

#[test]
fn string_literals_skip_comments_and_find_raw_strings() {
    let text = "// \"SELECT x\"\nlet a = \"DELETE FROM t\"; let c = '\"'; let d = r#\"PRAGMA x\"#; /* \"UPDATE t SET\" */ fn f<'a>() {}";
    assert_eq!(string_literals(text), ["DELETE FROM t", "PRAGMA x"]);
    assert!(looks_like_sql("UPDATE users SET a = 1") && !looks_like_sql("UPDATE the docs") && !looks_like_sql("select users") && !looks_like_sql("checks it with PRAGMA integrity_check"));
}
