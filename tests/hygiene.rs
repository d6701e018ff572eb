//! The crate's `unsafe` rules, checked on its source: `unsafe` appears only under
//! `src/kernels/`; every `unsafe fn` there documents `# Safety`; every `unsafe`
//! block or impl is preceded by a `// SAFETY:` comment.

use std::path::{Path, PathBuf};

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// Lines of code (comments and string-free enough for this check) that use `unsafe`.
fn unsafe_lines(text: &str) -> Vec<(usize, &str)> {
    text.lines()
        .enumerate()
        .filter(|(_, l)| {
            let code = l.split("//").next().unwrap_or("");
            code.contains("unsafe ") || code.contains("unsafe{")
        })
        .filter(|(_, l)| !l.contains("unsafe_op_in_unsafe_fn"))
        .collect()
}

#[test]
fn unsafe_lives_only_in_kernels_and_is_documented() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&root, &mut files);
    let mut problems = Vec::new();
    for f in files {
        let text = std::fs::read_to_string(&f).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        let in_kernels = f.starts_with(root.join("kernels"));
        for (i, line) in unsafe_lines(&text) {
            let at = format!("{}:{}", f.display(), i + 1);
            if !in_kernels {
                problems.push(format!("{at}: unsafe outside src/kernels"));
                continue;
            }
            let before = &lines[i.saturating_sub(12)..i];
            if line.contains("unsafe fn") {
                if !before.iter().any(|l| l.contains("# Safety")) {
                    problems.push(format!("{at}: unsafe fn without a `# Safety` section"));
                }
            } else if !before[before.len().saturating_sub(6)..]
                .iter()
                .chain(std::iter::once(&line))
                .any(|l| l.contains("SAFETY:"))
            {
                problems.push(format!("{at}: unsafe block without a `// SAFETY:` comment"));
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}
