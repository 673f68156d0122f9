//! Rendering of templates/ with Tera: autoescape off, every context key passed every time, and a
//! lint that rejects any name a template uses that is not a context key (Tera treats an undefined
//! name in `{% if %}` as false, so a misspelled axis would silently take the other branch).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use crate::space::{Budget, Value};
use crate::variant::Variant;

/// One rendered kernel.
#[derive(Clone, Debug)]
pub struct Generated {
    pub variant: Variant,
    pub budget: Budget,
    pub source: String,
    /// xxh64 (seed 0) of `source`.
    pub hash: u64,
}

/// The workspace root (parent of the codegen crate).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("codegen sits in the workspace")
        .to_path_buf()
}

/// Why templates/ could not be loaded, linted or rendered.
#[derive(Debug, thiserror::Error)]
pub enum RenderError {
    #[error("{path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    /// Tera's parse or render error, with its causes, for `what` (a template and variant).
    #[error("{what}: {detail}")]
    Tera { what: String, detail: String },
    #[error("templates/{template} does not exist (needed by {variant})")]
    MissingTemplate {
        template: &'static str,
        variant: Variant,
    },
    #[error("templates/{template} includes missing {include}")]
    MissingInclude { template: String, include: String },
    /// The lint: a name that is neither a context key nor bound by the template.
    #[error("templates/{file}: `{tag}` uses `{ident}`, which is not a context key of {template} (keys: {keys})")]
    NotAKey {
        file: String,
        tag: String,
        ident: String,
        template: String,
        keys: String,
    },
}

/// All templates under `templates/`, loaded once, with the lint applied.
pub struct Templates {
    tera: tera::Tera,
    /// Template name (path under templates/, `/`-separated) → source.
    sources: BTreeMap<String, String>,
}

impl Templates {
    /// Loads every `*.tera` file under `dir`.
    pub fn load(dir: &Path) -> Result<Templates, RenderError> {
        let mut sources = BTreeMap::new();
        collect(dir, dir, &mut sources)?;
        let mut tera = tera::Tera::default();
        tera.autoescape_on(vec![]); // CUDA, not HTML: `<`, `&` and quotes must pass through verbatim
        let marked: Vec<(String, String)> = sources
            .iter()
            .map(|(n, s)| (n.clone(), mark_tag_lines(s)))
            .collect();
        tera.add_raw_templates(marked.iter().map(|(n, s)| (n.as_str(), s.as_str())))
            .map_err(|e| RenderError::Tera {
                what: "templates/".to_string(),
                detail: chain(&e),
            })?;
        Ok(Templates { tera, sources })
    }

    pub fn has(&self, name: &str) -> bool {
        self.sources.contains_key(name)
    }

    /// Renders one variant: the generated-by header, then the template with the budget's constants.
    pub fn render(&self, v: &Variant, budget: &Budget) -> Result<String, RenderError> {
        let template = budget.template();
        if !self.has(template) {
            return Err(RenderError::MissingTemplate {
                template,
                variant: *v,
            });
        }
        let constants = budget.constants();
        self.lint(template, &constants)?;
        let mut ctx = tera::Context::new();
        for (key, value) in &constants {
            match value {
                Value::Int(x) => ctx.insert(*key, x),
                Value::Bool(b) => ctx.insert(*key, b),
                Value::Str(s) => ctx.insert(*key, s),
            }
        }
        let body = self
            .tera
            .render(template, &ctx)
            .map_err(|e| RenderError::Tera {
                what: format!("templates/{template} for {v}"),
                detail: chain(&e),
            })?;
        let mut out = header(v, template);
        out.push_str(&tidy(&body));
        Ok(out)
    }

    /// Fails when `template` or anything it includes names something that is neither a context
    /// key of this family nor bound by the template itself (`for x in`, `set x =`).
    fn lint(&self, template: &str, constants: &[(&'static str, Value)]) -> Result<(), RenderError> {
        let keys: BTreeSet<&str> = constants.iter().map(|(k, _)| *k).collect();
        let mut seen = BTreeSet::new();
        let mut todo = vec![template.to_string()];
        while let Some(name) = todo.pop() {
            if !seen.insert(name.clone()) {
                continue;
            }
            let src = self
                .sources
                .get(&name)
                .ok_or_else(|| RenderError::MissingInclude {
                    template: template.to_string(),
                    include: name.clone(),
                })?;
            let names = template_names(src);
            todo.extend(names.includes.iter().cloned());
            for (ident, tag) in &names.free {
                if !keys.contains(ident.as_str()) && !names.bound.contains(ident) {
                    return Err(RenderError::NotAKey {
                        file: name.clone(),
                        tag: tag.clone(),
                        ident: ident.clone(),
                        template: template.to_string(),
                        keys: keys.iter().copied().collect::<Vec<_>>().join(", "),
                    });
                }
            }
        }
        Ok(())
    }
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> RenderError + '_ {
    move |source| RenderError::Io {
        path: path.display().to_string(),
        source,
    }
}

fn collect(root: &Path, dir: &Path, out: &mut BTreeMap<String, String>) -> Result<(), RenderError> {
    let entries = std::fs::read_dir(dir).map_err(io(dir))?;
    for entry in entries {
        let path = entry.map_err(io(dir))?.path();
        if path.is_dir() {
            collect(root, &path, out)?;
        } else if path.extension().is_some_and(|x| x == "tera") {
            let src = std::fs::read_to_string(&path).map_err(io(&path))?;
            let rel = path
                .strip_prefix(root)
                .expect("under root")
                .to_string_lossy()
                .replace('\\', "/");
            out.insert(rel, src.replace("\r\n", "\n"));
        }
    }
    Ok(())
}

/// ``// Generated by `cargo xtask gen-kernels` from templates/<t>; do not edit by hand.`` + parameters.
fn header(v: &Variant, template: &str) -> String {
    let mut h = format!("// Generated by `cargo xtask gen-kernels` from templates/{template}; do not edit by hand.\n");
    match v {
        Variant::Rmm(r) => writeln!(
            h,
            "// Variant {v}: pipeline = {}, tile_n = {}, stages = {}, transpose = {}.",
            r.operand.as_str(),
            r.tile_n,
            r.stages,
            r.transpose
        ),
        Variant::Huff(x) => writeln!(h, "// Variant {v}: output = {}.", x.output.as_str()),
        Variant::Act(x) => writeln!(h, "// Variant {v}: op = {}.", x.op.as_str()),
        Variant::Relayout(x) => writeln!(h, "// Variant {v}: elem = {}.", x.elem.as_str()),
    }
    .expect("write to String");
    h
}

/// Marks lines that hold only `{% %}` tags: Tera would leave them as blank lines in the output.
const TAG_LINE: char = '\u{7}';

fn mark_tag_lines(src: &str) -> String {
    let mut out = String::with_capacity(src.len());
    for line in src.split_inclusive('\n') {
        let t = line.trim();
        if t.starts_with("{%") && t.ends_with("%}") {
            out.push_str(line.trim_end_matches('\n'));
            out.push(TAG_LINE);
            if line.ends_with('\n') {
                out.push('\n');
            }
        } else {
            out.push_str(line);
        }
    }
    out
}

/// Drops the lines that held only tags, trailing blanks, and ends the file with one `\n`.
fn tidy(body: &str) -> String {
    let mut out = String::with_capacity(body.len());
    for line in body.lines() {
        if line.contains(TAG_LINE) && line.chars().all(|c| c == TAG_LINE || c.is_whitespace()) {
            continue;
        }
        out.push_str(line.replace(TAG_LINE, "").trim_end());
        out.push('\n');
    }
    while out.ends_with("\n\n") {
        out.pop();
    }
    out
}

/// A Tera error with its causes, on one line (Tera puts the useful part in `source()`).
fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        write!(s, ": {c}").expect("write to String");
        cur = c.source();
    }
    s
}

/// Names a template refers to.
#[derive(Default, Debug)]
struct TemplateNames {
    /// (identifier, the tag it occurs in) for every name read from the context.
    free: Vec<(String, String)>,
    /// Names the template binds itself.
    bound: BTreeSet<String>,
    includes: Vec<String>,
}

/// Tera keywords, testers, filters and loop attributes that are never context keys.
const NOT_KEYS: &[&str] = &[
    "if",
    "elif",
    "else",
    "endif",
    "for",
    "in",
    "endfor",
    "set",
    "set_global",
    "include",
    "import",
    "as",
    "macro",
    "endmacro",
    "block",
    "endblock",
    "extends",
    "filter",
    "endfilter",
    "raw",
    "endraw",
    "not",
    "and",
    "or",
    "is",
    "true",
    "false",
    "True",
    "False",
    "loop",
    "break",
    "continue",
    "ignore",
    "missing",
    "super",
    "defined",
    "undefined",
    "odd",
    "even",
    "divisibleby",
    "starting_with",
    "ending_with",
    "containing",
    "matching",
    "string",
    "number",
    "iterable",
    "object",
];

fn template_names(src: &str) -> TemplateNames {
    let mut names = TemplateNames::default();
    let mut rest = src;
    while let Some(start) = rest.find('{') {
        let after = &rest[start + 1..];
        let close = match after.chars().next() {
            Some('{') => "}}",
            Some('%') => "%}",
            Some('#') => "#}",
            _ => {
                rest = after;
                continue;
            }
        };
        let Some(end) = after[1..].find(close) else {
            break;
        };
        let inner = &after[1..1 + end];
        rest = &after[1 + end + 2..];
        if close == "#}" {
            continue;
        }
        let tag = format!(
            "{}{}{}",
            &after[..1].replace('{', "{{").replace('%', "{%"),
            inner,
            close
        );
        scan_tag(
            inner.trim_matches(|c| c == '-' || c == ' ' || c == '\n'),
            &tag,
            &mut names,
        );
    }
    names
}

fn scan_tag(inner: &str, tag: &str, names: &mut TemplateNames) {
    // String literals: include targets, otherwise ignored.
    let mut code = String::new();
    let mut strings = Vec::new();
    let mut quote = None;
    let mut lit = String::new();
    for c in inner.chars() {
        match quote {
            Some(q) if c == q => {
                strings.push(std::mem::take(&mut lit));
                quote = None;
                code.push(' ');
            }
            Some(_) => lit.push(c),
            None if c == '"' || c == '\'' || c == '`' => quote = Some(c),
            None => code.push(c),
        }
    }
    let words: Vec<&str> = code.split_whitespace().collect();
    if words.first() == Some(&"include") {
        names.includes.extend(strings);
        return;
    }
    if matches!(words.first(), Some(&"for")) {
        // `for x in ...` / `for k, v in ...`
        for w in words[1..].iter().take_while(|w| **w != "in") {
            names.bound.insert(w.trim_matches(',').to_string());
        }
    }
    if matches!(words.first(), Some(&"set") | Some(&"set_global")) {
        if let Some(w) = words.get(1) {
            names.bound.insert(w.trim_end_matches('=').to_string());
        }
    }
    let bytes: Vec<char> = code.chars().collect();
    let mut i = 0;
    while i < bytes.len() {
        let c = bytes[i];
        if c.is_ascii_alphabetic() || c == '_' {
            let s = i;
            while i < bytes.len() && (bytes[i].is_ascii_alphanumeric() || bytes[i] == '_') {
                i += 1;
            }
            let ident: String = bytes[s..i].iter().collect();
            let prev = bytes[..s]
                .iter()
                .rev()
                .find(|c| !c.is_whitespace())
                .copied();
            let next = bytes[i..].iter().find(|c| !c.is_whitespace()).copied();
            let attribute_or_filter = matches!(prev, Some('.') | Some('|'));
            let call_or_kwarg = matches!(next, Some('(') | Some('='))
                && !(next == Some('=')
                    && bytes[i..].iter().filter(|c| !c.is_whitespace()).nth(1) == Some(&'='));
            if !attribute_or_filter && !call_or_kwarg && !NOT_KEYS.contains(&ident.as_str()) {
                names.free.push((ident, tag.to_string()));
            }
        } else if c.is_ascii_digit() {
            while i < bytes.len() && (bytes[i].is_ascii_alphanumeric() || bytes[i] == '.') {
                i += 1;
            }
        } else {
            i += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lint_sees_conditions_loops_and_includes() {
        let n = template_names(
            "{% include \"partials/a.tera\" %}{% if tranpose %}x{% endif %}\
             {% for i in range(end=acc_regs) %}{{ i }}{% if not loop.last %},{% endif %}{% endfor %}\
             {{ a == b }}{# {% if ignored %} #}",
        );
        let free: Vec<&str> = n.free.iter().map(|(i, _)| i.as_str()).collect();
        assert_eq!(free, ["tranpose", "i", "acc_regs", "i", "a", "b"]);
        assert!(n.bound.contains("i"));
        assert_eq!(n.includes, ["partials/a.tera"]);
    }

    #[test]
    fn a_misspelled_key_fails_the_render_naming_file_tag_and_key() {
        let dir = std::env::temp_dir().join(format!("unweight-lint-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("huff.cu.tera"), "{% if is_bf61 %}x{% endif %}\n").unwrap();
        let templates = Templates::load(&dir).unwrap();
        let v = crate::variant::HuffVariant {
            output: crate::variant::HuffOutput::Bf16,
            refill: crate::variant::HuffRefill::Vec4,
        };
        let budget = Budget::Huff(crate::space::HuffBudget::new(&v));
        let err = templates.render(&Variant::Huff(v), &budget).unwrap_err();
        std::fs::remove_dir_all(&dir).unwrap();
        let RenderError::NotAKey {
            file, ident, tag, ..
        } = &err
        else {
            panic!("expected NotAKey, got {err}")
        };
        assert_eq!((file.as_str(), ident.as_str()), ("huff.cu.tera", "is_bf61"));
        assert!(tag.contains("if is_bf61"), "{tag}");
        assert!(
            err.to_string()
                .contains("not a context key of huff.cu.tera"),
            "{err}"
        );
    }
}
