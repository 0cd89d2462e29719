//! The modules of `tether-proto` (and, once its cycles are gone, of
//! `tether`) import one another without cycles.
//!
//! For every `.rs` file under a crate's `src/`, the test lists the paths it
//! names through `crate::`, `super::` and `self::` (in `use` declarations,
//! groups included, and anywhere else in the code), resolves them to the
//! top-level module they lead into (a direct child of `src/`: `foo.rs` and
//! `foo/mod.rs` are module `foo`, and so are the files under `foo/`), and
//! fails if that graph has a cycle, printing the edges of each cycle with
//! the files and paths behind them. `crate::Name` re-exported by the crate
//! root (`pub use foo::Name;` in `lib.rs`) counts as an edge to `foo`.
//! Comments, doc links and string literals are ignored.
//!
//! To see the whole graph: `cargo test -p tether-proto --test import_cycles
//! -- --nocapture --include-ignored`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

#[test]
fn tether_proto_modules_have_no_import_cycle() {
    assert_no_cycle("tether-proto");
}

#[test]
fn tether_modules_have_no_import_cycle() {
    assert_no_cycle("tether");
}

fn assert_no_cycle(krate: &str) {
    // Both crates sit side by side under `crates/`.
    let crates = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the crates directory");
    let src = crates.join(krate).join("src");
    let files = read_sources(&src);
    assert!(!files.is_empty(), "no sources under {}", src.display());
    let graph = Graph::build(&files);
    println!("{krate} ({}):\n{}", src.display(), graph.describe());
    let cycles = graph.cycles();
    assert!(
        cycles.is_empty(),
        "{krate}: import cycles between top-level modules:\n{}",
        graph.describe_cycles(&cycles)
    );
}

/// Every `.rs` file under `src`, as (path relative to `src`, text).
fn read_sources(src: &Path) -> Vec<(PathBuf, String)> {
    let mut out = Vec::new();
    let mut dirs = vec![src.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        let entries = std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
        for entry in entries {
            let path = entry.expect("a directory entry").path();
            if path.is_dir() {
                dirs.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                let text = std::fs::read_to_string(&path)
                    .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
                let rel = path.strip_prefix(src).expect("under src").to_path_buf();
                out.push((rel, text));
            }
        }
    }
    out.sort();
    out
}

/// The module path of a file: `lib.rs` is the root (empty), `a/mod.rs` and
/// `a.rs` are `[a]`, `a/b.rs` is `[a, b]`.
fn module_path(rel: &Path) -> Vec<String> {
    let mut segs: Vec<String> = rel
        .iter()
        .map(|s| s.to_string_lossy().into_owned())
        .collect();
    let last = segs.pop().expect("a file name");
    let stem = last.trim_end_matches(".rs");
    if !(segs.is_empty() && (stem == "lib" || stem == "main")) && stem != "mod" {
        segs.push(stem.to_string());
    }
    segs
}

/// The module graph of one crate, at the level of top-level modules.
struct Graph {
    modules: BTreeSet<String>,
    /// (from, to) -> the (file, path) pairs behind the edge.
    edges: BTreeMap<(String, String), BTreeSet<(String, String)>>,
}

impl Graph {
    fn build(files: &[(PathBuf, String)]) -> Graph {
        let known: BTreeSet<Vec<String>> = files.iter().map(|(p, _)| module_path(p)).collect();
        let modules: BTreeSet<String> = known.iter().filter_map(|m| m.first().cloned()).collect();
        let scanned: Vec<(&PathBuf, Vec<String>, Vec<Found>)> = files
            .iter()
            .map(|(p, text)| (p, module_path(p), scan(text, &module_path(p), &known)))
            .collect();
        // Names the crate root imports (`pub use foo::Name;`), by module.
        let mut root_names = BTreeMap::new();
        for (_, m, found) in &scanned {
            if !m.is_empty() {
                continue;
            }
            for f in found.iter().filter(|f| f.in_use) {
                let (Some(top), Some(name)) = (f.resolved.first(), &f.name) else {
                    continue;
                };
                if modules.contains(top) && name != "*" {
                    root_names.insert(name.clone(), top.clone());
                }
            }
        }
        let mut edges: BTreeMap<(String, String), BTreeSet<(String, String)>> = BTreeMap::new();
        for (file, m, found) in &scanned {
            let Some(from) = m.first() else { continue };
            for f in found {
                let Some(first) = f.resolved.first() else {
                    continue;
                };
                let targets: Vec<&String> = if modules.contains(first) {
                    vec![first]
                } else if first == "*" {
                    // `use crate::*`: everything the root re-exports.
                    root_names.values().collect()
                } else {
                    root_names.get(first).into_iter().collect()
                };
                for to in targets {
                    if to != from {
                        edges
                            .entry((from.clone(), to.clone()))
                            .or_default()
                            .insert((file.display().to_string(), f.written.clone()));
                    }
                }
            }
        }
        Graph { modules, edges }
    }

    /// The strongly connected components with more than one module
    /// (Tarjan's algorithm), each sorted.
    fn cycles(&self) -> Vec<Vec<String>> {
        struct Tarjan<'a> {
            g: &'a Graph,
            index: BTreeMap<&'a str, usize>,
            low: BTreeMap<&'a str, usize>,
            stack: Vec<&'a str>,
            out: Vec<Vec<String>>,
        }
        impl<'a> Tarjan<'a> {
            fn visit(&mut self, v: &'a str) {
                let i = self.index.len();
                self.index.insert(v, i);
                self.low.insert(v, i);
                self.stack.push(v);
                for (from, to) in self.g.edges.keys() {
                    if from != v {
                        continue;
                    }
                    if !self.index.contains_key(to.as_str()) {
                        self.visit(to);
                        let l = self.low[v].min(self.low[to.as_str()]);
                        self.low.insert(v, l);
                    } else if self.stack.contains(&to.as_str()) {
                        let l = self.low[v].min(self.index[to.as_str()]);
                        self.low.insert(v, l);
                    }
                }
                if self.low[v] == self.index[v] {
                    let mut scc = Vec::new();
                    loop {
                        let w = self.stack.pop().expect("on the stack");
                        scc.push(w.to_string());
                        if w == v {
                            break;
                        }
                    }
                    if scc.len() > 1 {
                        scc.sort();
                        self.out.push(scc);
                    }
                }
            }
        }
        let mut t = Tarjan {
            g: self,
            index: BTreeMap::new(),
            low: BTreeMap::new(),
            stack: Vec::new(),
            out: Vec::new(),
        };
        for m in &self.modules {
            if !t.index.contains_key(m.as_str()) {
                t.visit(m);
            }
        }
        t.out.sort();
        t.out
    }

    fn describe(&self) -> String {
        let mut s = format!(
            "  {} top-level modules, {} edges\n",
            self.modules.len(),
            self.edges.len()
        );
        for ((from, to), why) in &self.edges {
            let (file, path) = why.iter().next().expect("an edge has a reason");
            let more = match why.len() {
                1 => String::new(),
                n => format!(" and {} more", n - 1),
            };
            s += &format!("  {from} -> {to}  ({file}: {path}{more})\n");
        }
        s
    }

    fn describe_cycles(&self, cycles: &[Vec<String>]) -> String {
        let mut s = String::new();
        for scc in cycles {
            s += &format!("cycle among {}:\n", scc.join(", "));
            for ((from, to), why) in &self.edges {
                if scc.contains(from) && scc.contains(to) {
                    s += &format!("  {from} -> {to}\n");
                    for (file, path) in why {
                        s += &format!("      {file}: {path}\n");
                    }
                }
            }
        }
        s
    }
}

/// A path found in a file.
#[derive(Debug)]
struct Found {
    /// As written, `::`-joined.
    written: String,
    /// Resolved to an absolute path from the crate root.
    resolved: Vec<String>,
    /// The name it brings into scope (last segment or alias), for `use`.
    name: Option<String>,
    in_use: bool,
}

/// Finds the module paths that `text` names, in a file of module `module`.
fn scan(text: &str, module: &[String], known: &BTreeSet<Vec<String>>) -> Vec<Found> {
    let toks = tokens(&strip(text));
    let mut out = Vec::new();
    // Inline modules (`mod tests { .. }`) open at a brace depth.
    let mut inline: Vec<(String, usize)> = Vec::new();
    let mut depth = 0usize;
    let mut i = 0;
    while i < toks.len() {
        let cur: Vec<String> = module
            .iter()
            .cloned()
            .chain(inline.iter().map(|(m, _)| m.clone()))
            .collect();
        let t = toks[i].as_str();
        match t {
            "{" => depth += 1,
            "}" => {
                depth = depth.saturating_sub(1);
                if inline.last().is_some_and(|(_, d)| *d > depth) {
                    inline.pop();
                }
            }
            "mod" if toks.get(i + 2).is_some_and(|t| t == "{") => {
                depth += 1;
                inline.push((toks[i + 1].clone(), depth));
                i += 3;
                continue;
            }
            "use" => {
                let end = toks[i..]
                    .iter()
                    .position(|t| t == ";")
                    .map_or(toks.len(), |p| i + p);
                let mut leaves = Vec::new();
                use_tree(&toks[i + 1..end], &[], &mut leaves);
                for (segs, name) in leaves {
                    if let Some(resolved) = resolve(&cur, &segs, known) {
                        out.push(Found {
                            written: segs.join("::"),
                            resolved,
                            name,
                            in_use: true,
                        });
                    }
                }
                i = end + 1;
                continue;
            }
            "crate" | "super" | "self"
                if toks.get(i + 1).is_some_and(|t| t == "::")
                    && (i == 0 || toks[i - 1] != "in") =>
            {
                let mut segs = vec![t.to_string()];
                let mut j = i + 1;
                while toks.get(j).is_some_and(|t| t == "::")
                    && toks.get(j + 1).is_some_and(|t| is_ident(t))
                {
                    segs.push(toks[j + 1].clone());
                    j += 2;
                }
                if let Some(resolved) = resolve(&cur, &segs, known) {
                    out.push(Found {
                        written: segs.join("::"),
                        resolved,
                        name: None,
                        in_use: false,
                    });
                }
                i = j;
                continue;
            }
            _ => {}
        }
        i += 1;
    }
    out
}

/// Expands a use tree (`a::{b, c::d as e, f::*}`) into its leaf paths, each
/// with the name it binds.
fn use_tree(toks: &[String], prefix: &[String], out: &mut Vec<(Vec<String>, Option<String>)>) {
    let mut path = prefix.to_vec();
    let mut i = 0;
    while i < toks.len() {
        match toks[i].as_str() {
            "::" => {}
            "{" => {
                // Split the group's items at top-level commas.
                let mut level = 0;
                let mut start = i + 1;
                let mut j = i + 1;
                while j < toks.len() {
                    match toks[j].as_str() {
                        "{" => level += 1,
                        "}" if level == 0 => break,
                        "}" => level -= 1,
                        "," if level == 0 => {
                            use_tree(&toks[start..j], &path, out);
                            start = j + 1;
                        }
                        _ => {}
                    }
                    j += 1;
                }
                use_tree(&toks[start..j.min(toks.len())], &path, out);
                return;
            }
            "as" => {
                let alias = toks.get(i + 1).cloned().filter(|a| a != "_");
                out.push((path, alias));
                return;
            }
            "*" => {
                path.push("*".into());
                out.push((path, Some("*".into())));
                return;
            }
            t if is_ident(t) => path.push(t.to_string()),
            _ => {}
        }
        i += 1;
    }
    if path.len() > prefix.len() {
        // `use a::{self}` binds `a`.
        if path.last().is_some_and(|l| l == "self") && path.len() > 1 {
            path.pop();
        }
        let name = path.last().cloned();
        out.push((path, name));
    }
}

/// Resolves `segs` written in module `cur` to an absolute path; `None` for
/// a path into another crate.
fn resolve(cur: &[String], segs: &[String], known: &BTreeSet<Vec<String>>) -> Option<Vec<String>> {
    let (first, rest) = segs.split_first()?;
    let mut abs: Vec<String> = match first.as_str() {
        "crate" => Vec::new(),
        "self" => cur.to_vec(),
        "super" => cur[..cur.len().checked_sub(1)?].to_vec(),
        name => {
            // A relative path into a child module; anything else is a crate.
            let mut child = cur.to_vec();
            child.push(name.to_string());
            if !known.contains(&child) {
                return None;
            }
            child
        }
    };
    for s in rest {
        match s.as_str() {
            "super" => {
                abs.pop()?;
            }
            "self" => {}
            _ => abs.push(s.clone()),
        }
    }
    Some(abs)
}

fn is_ident(t: &str) -> bool {
    t.chars()
        .next()
        .is_some_and(|c| c.is_alphabetic() || c == '_')
}

/// Identifiers, `::`, and single punctuation characters.
fn tokens(code: &str) -> Vec<String> {
    let chars: Vec<char> = code.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c.is_alphanumeric() || c == '_' {
            let start = i;
            while i < chars.len() && (chars[i].is_alphanumeric() || chars[i] == '_') {
                i += 1;
            }
            out.push(chars[start..i].iter().collect::<String>());
            continue;
        }
        if c == ':' && chars.get(i + 1) == Some(&':') {
            out.push("::".into());
            i += 2;
            continue;
        }
        if !c.is_whitespace() {
            out.push(c.to_string());
        }
        i += 1;
    }
    out
}

/// The code with comments and string and character literals blanked out.
fn strip(src: &str) -> String {
    let c: Vec<char> = src.chars().collect();
    let mut out = String::with_capacity(src.len());
    let mut i = 0;
    while i < c.len() {
        let at = |k: usize| c.get(i + k).copied().unwrap_or('\0');
        // Line comments, doc comments included.
        if at(0) == '/' && at(1) == '/' {
            while i < c.len() && c[i] != '\n' {
                i += 1;
            }
            continue;
        }
        // Block comments, which nest.
        if at(0) == '/' && at(1) == '*' {
            let mut level = 0;
            while i < c.len() {
                if c[i] == '/' && c.get(i + 1) == Some(&'*') {
                    level += 1;
                    i += 2;
                } else if c[i] == '*' && c.get(i + 1) == Some(&'/') {
                    level -= 1;
                    i += 2;
                    if level == 0 {
                        break;
                    }
                } else {
                    i += 1;
                }
            }
            out.push(' ');
            continue;
        }
        // Raw strings: r"..", r#".."#, br#".."#.
        let raw_start = match (at(0), at(1)) {
            ('r', '"' | '#') => Some(1),
            ('b', 'r') if matches!(at(2), '"' | '#') => Some(2),
            _ => None,
        };
        let prev_ident = i > 0 && (c[i - 1].is_alphanumeric() || c[i - 1] == '_');
        if let (Some(skip), false) = (raw_start, prev_ident) {
            let mut j = i + skip;
            let mut hashes = 0;
            while c.get(j) == Some(&'#') {
                hashes += 1;
                j += 1;
            }
            if c.get(j) == Some(&'"') {
                j += 1;
                loop {
                    if j >= c.len() {
                        break;
                    }
                    if c[j] == '"' && (1..=hashes).all(|h| c.get(j + h) == Some(&'#')) {
                        j += 1 + hashes;
                        break;
                    }
                    j += 1;
                }
                i = j;
                out.push_str(" \"\" ");
                continue;
            }
        }
        if at(0) == '"' {
            i += 1;
            while i < c.len() && c[i] != '"' {
                i += if c[i] == '\\' { 2 } else { 1 };
            }
            i += 1;
            out.push_str(" \"\" ");
            continue;
        }
        // A character literal ('x', '\n', '\u{1F600}'), not a lifetime.
        if at(0) == '\'' && (at(1) == '\\' || (at(1) != '\'' && at(2) == '\'')) {
            i += 1;
            while i < c.len() && c[i] != '\'' {
                i += if c[i] == '\\' { 2 } else { 1 };
            }
            i += 1;
            out.push_str(" ' ");
            continue;
        }
        out.push(c[i]);
        i += 1;
    }
    out
}

/// The checker on made-up crates.
mod checker {
    use super::*;

    fn graph(files: &[(&str, &str)]) -> Graph {
        let files: Vec<(PathBuf, String)> = files
            .iter()
            .map(|(p, t)| (PathBuf::from(p), t.to_string()))
            .collect();
        Graph::build(&files)
    }

    fn edges(g: &Graph) -> Vec<String> {
        g.edges.keys().map(|(a, b)| format!("{a}->{b}")).collect()
    }

    #[test]
    fn finds_use_groups_expressions_and_root_reexports() {
        let g = graph(&[
            (
                "lib.rs",
                "mod a; mod b; mod c; mod d; pub use d::{Thing as Other, More};",
            ),
            (
                "a.rs",
                "use crate::{b::X, c};\nfn f() -> crate::Other { todo!() }",
            ),
            ("b/mod.rs", "mod inner;\npub struct X;"),
            (
                "b/inner.rs",
                "use super::X; use super::super::c::Y; fn g(_: crate::More) {}",
            ),
            ("c.rs", "pub struct Y;"),
            ("d.rs", "pub struct Thing; pub struct More;"),
        ]);
        assert_eq!(edges(&g), ["a->b", "a->c", "a->d", "b->c", "b->d"]);
        assert!(g.cycles().is_empty());
    }

    #[test]
    fn ignores_comments_strings_doc_links_and_own_children() {
        let g = graph(&[
            ("lib.rs", "mod a; mod b;"),
            (
                "a.rs",
                r##"//! See [`crate::b::X`].
                /* crate::b::X /* nested */ crate::b::X */
                const S: &str = "crate::b::X"; const R: &str = r#"crate::b::X"#;
                const C: char = '"'; fn f<'a>(x: &'a str) -> &'a str { x }
                mod tests { use super::*; use self::super::f; }"##,
            ),
            (
                "b.rs",
                "pub struct X; pub(crate) fn g() {} pub(in crate::b) fn h() {}",
            ),
        ]);
        assert_eq!(edges(&g), Vec::<String>::new());
    }

    #[test]
    fn reports_a_cycle_through_three_modules() {
        let g = graph(&[
            ("lib.rs", "mod a; mod b; mod c; mod d;"),
            ("a.rs", "use crate::b::X;"),
            ("b.rs", "pub struct X; fn f() { crate::c::g() }"),
            ("c.rs", "pub fn g() { let _ = super::a::Y; }"),
            ("d.rs", "use crate::a::Y;"),
        ]);
        assert_eq!(g.cycles(), [["a", "b", "c"]]);
        let text = g.describe_cycles(&g.cycles());
        assert!(text.contains("c -> a\n      c.rs: super::a::Y"), "{text}");
    }
}
