//! Source locations as QEMU reports them.
//!
//! An [`Info`] names a position in a schema file: the file (with the chain
//! of files that included it), a line, and, once expression checking has
//! started, the definition the position belongs to. Its `Display` is the
//! prefix QEMU prints before a message:
//!
//! ```text
//! In file included from a.json:1:
//! b.json: In struct 'Foo':
//! b.json:7
//! ```

use std::fmt;
use std::sync::Arc;

/// Which generation of the QAPI language a schema is written in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Dialect {
    /// QEMU 10.0's language (docs/devel/qapi-code-gen.rst).
    #[default]
    Modern,
    /// What QEMU's generator accepted from 1.0 to 2.12.
    Legacy,
}

impl Dialect {
    /// The dialect a schema's text declares by using what only the legacy
    /// language has: a top-level expression keyed `type` (QEMU 1.x's
    /// `struct`), or the `returns-whitelist` / `name-case-whitelist`
    /// pragmas (QEMU 2.x). Anything else is modern.
    pub fn declared_by(text: &str) -> Dialect {
        let top_level_type = text.lines().any(|l| {
            l.strip_prefix('{')
                .map(str::trim_start)
                .is_some_and(|r| r.starts_with("'type'") || r.starts_with("\"type\""))
        });
        let pragma = text.contains("'returns-whitelist'")
            || text.contains("'name-case-whitelist'")
            || text.contains("\"returns-whitelist\"")
            || text.contains("\"name-case-whitelist\"");
        if top_level_type || pragma {
            Dialect::Legacy
        } else {
            Dialect::Modern
        }
    }

    /// [`Dialect::declared_by`] of the file at `path` (modern when it
    /// cannot be read: loading it reports why).
    pub fn declared_by_file(path: &std::path::Path) -> Dialect {
        match std::fs::read_to_string(path) {
            Ok(t) => Dialect::declared_by(&t),
            Err(_) => Dialect::Modern,
        }
    }
}

/// One opened schema file and where it was included from.
#[derive(Debug)]
pub struct SourceFile {
    /// The file name as QEMU prints it (the path as given / as joined with
    /// the including file's directory).
    pub name: String,
    /// The include directive that opened this file, if any (set once: a
    /// file parsed on its own learns it when the files are put in order).
    included_from: std::sync::OnceLock<Info>,
    /// Address and length of the file's text while it is parsed: a name
    /// the parser borrowed from it is found by its address
    /// ([`Info::at_text`]), which costs the parser nothing.
    pub(crate) text_at: (usize, usize),
}

impl SourceFile {
    pub fn new(name: String, included_from: Option<Info>, text: &str) -> SourceFile {
        let f = SourceFile {
            name,
            included_from: std::sync::OnceLock::new(),
            text_at: (text.as_ptr() as usize, text.len()),
        };
        if let Some(i) = included_from {
            f.set_included_from(i);
        }
        f
    }

    /// The include directive that opened this file, if any.
    pub fn included_from(&self) -> Option<&Info> {
        self.included_from.get()
    }

    /// Record the include directive that opened this file (the first one
    /// recorded stands).
    pub(crate) fn set_included_from(&self, info: Info) {
        let _ = self.included_from.set(info);
    }
}

impl PartialEq for SourceFile {
    fn eq(&self, other: &SourceFile) -> bool {
        self.name == other.name && self.included_from() == other.included_from()
    }
}

impl Eq for SourceFile {}

/// A position in a schema, plus the definition it belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Info {
    pub file: Arc<SourceFile>,
    /// 1-based line; 0 means "the whole file" (printed without a line).
    pub line: u32,
    /// `(meta, name)`, e.g. `("struct", "Foo")`, printed as the
    /// "F: In struct 'Foo':" context line.
    pub defn: Option<Arc<(String, String)>>,
    /// Byte offset in the file of the name this position is about (a
    /// member of the definition), for pointing at it in a source snippet.
    /// Not part of QEMU's text: QEMU reports the definition's line.
    pub spot: Option<u32>,
}

impl Info {
    pub fn new(file: Arc<SourceFile>, line: u32) -> Info {
        Info {
            file,
            line,
            defn: None,
            spot: None,
        }
    }

    /// The same position, now known to belong to definition `meta` `name`.
    pub fn with_defn(&self, meta: &str, name: &str) -> Info {
        Info {
            file: self.file.clone(),
            line: self.line,
            defn: Some(Arc::new((meta.to_string(), name.to_string()))),
            spot: self.spot,
        }
    }

    /// The same position, about `name`: when `name` was borrowed from this
    /// file's text (names written without escapes are), its offset there.
    pub fn at_text(&self, name: &str) -> Info {
        let (base, len) = self.file.text_at;
        let p = name.as_ptr() as usize;
        let mut info = self.clone();
        if p >= base && p < base + len {
            info.spot = u32::try_from(p - base).ok();
        }
        info
    }

    /// "F:L" (or "F" when the line is 0), without include path or context.
    pub fn loc(&self) -> String {
        if self.line > 0 {
            format!("{}:{}", self.file.name, self.line)
        } else {
            self.file.name.clone()
        }
    }

    /// The "In file included from F:L:" lines, outermost first as QEMU
    /// prints them.
    pub fn include_path(&self) -> String {
        let mut chain = Vec::new();
        let mut parent = self.file.included_from();
        while let Some(p) = parent {
            chain.push(p);
            parent = p.file.included_from();
        }
        let mut out = String::new();
        for p in chain.iter().rev() {
            out.push_str("In file included from ");
            out.push_str(&p.loc());
            out.push_str(":\n");
        }
        out
    }

    /// The "F: In meta 'name':" line, if a definition is known.
    pub fn in_defn(&self) -> String {
        match &self.defn {
            Some(d) => format!("{}: In {} '{}':\n", self.file.name, d.0, d.1),
            None => String::new(),
        }
    }
}

impl fmt::Display for Info {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}{}{}", self.include_path(), self.in_defn(), self.loc())
    }
}

/// Largest schema file accepted (a guard against reading unbounded data
/// such as `/dev/zero`).
pub const MAX_FILE_SIZE: u64 = 256 * 1024 * 1024;

/// Why a schema file could not be read. `Display` gives the text QEMU
/// prints after "can't read schema file 'X': ", e.g.
/// "No such file or directory".
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadError(pub String);

impl fmt::Display for ReadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<std::io::Error> for ReadError {
    fn from(e: std::io::Error) -> ReadError {
        ReadError(strerror(&e))
    }
}

/// The C library's wording of an I/O error, without Rust's
/// " (os error N)" suffix.
pub fn strerror(e: &std::io::Error) -> String {
    let s = e.to_string();
    match s.rfind(" (os error ") {
        Some(i) if s.ends_with(')') => s[..i].to_string(),
        _ => s,
    }
}

/// Where schema files come from: the real file system, or an in-memory
/// map of path → text (for schemas embedded with `include_str!`).
///
/// Paths are the names QEMU uses: the main file as given, and each include
/// joined with the including file's directory (see [`join_include`]).
pub trait SourceProvider {
    /// The whole text of `path`. Must fail cleanly (not hang, not read
    /// more than [`MAX_FILE_SIZE`] bytes) on directories, devices and huge
    /// files; must reject text that is not UTF-8.
    fn read(&self, path: &str) -> Result<String, ReadError>;

    /// A canonical name for `path`, used to detect repeated includes and
    /// inclusion loops (QEMU compares `os.path.abspath` names).
    fn canonical(&self, path: &str) -> String;

    /// The same provider, when it may be used from several threads at once
    /// (a schema's files are then read and parsed on two cores).
    fn shared(&self) -> Option<&(dyn SourceProvider + Sync)> {
        None
    }
}

/// Reads schema files from the file system, relative to the current
/// directory.
#[derive(Debug, Clone, Copy, Default)]
pub struct FsProvider;

impl SourceProvider for FsProvider {
    fn shared(&self) -> Option<&(dyn SourceProvider + Sync)> {
        Some(self)
    }

    fn read(&self, path: &str) -> Result<String, ReadError> {
        use std::io::Read;
        let file = std::fs::File::open(path)?;
        let meta = file.metadata()?;
        if meta.is_dir() {
            return Err(ReadError("Is a directory".to_string()));
        }
        if meta.len() > MAX_FILE_SIZE {
            return Err(too_large());
        }
        // One spare byte: reading to the end needs room to see the end.
        let mut buf = Vec::with_capacity((meta.len() as usize).saturating_add(1));
        if meta.is_file() && meta.len() > 0 {
            // A regular file is read up to the size it has (as it has it
            // now): reading ends there, without a further read that finds
            // nothing (a system call for each of a schema's files).
            file.take(meta.len()).read_to_end(&mut buf)?;
        } else {
            // `take` bounds devices and files that grow while being read.
            file.take(MAX_FILE_SIZE + 1).read_to_end(&mut buf)?;
        }
        if buf.len() as u64 > MAX_FILE_SIZE {
            return Err(too_large());
        }
        into_utf8(buf)
    }

    fn canonical(&self, path: &str) -> String {
        let p = std::path::Path::new(path);
        if p.is_absolute() {
            normalize(path)
        } else {
            match std::env::current_dir() {
                Ok(cwd) => normalize(&format!("{}/{}", cwd.display(), path)),
                Err(_) => normalize(path),
            }
        }
    }
}

/// Reads schema files as [`FsProvider`] does, for one schema: the main
/// file's text, when it was read already (to see what kind of file it is),
/// is not read again, and the current directory is looked up once, not for
/// every file the schema includes.
pub(crate) struct SchemaFiles {
    main: String,
    text: std::sync::Mutex<Option<String>>,
    cwd: Option<String>,
}

impl SchemaFiles {
    /// Files for the schema `main`, whose text is `text` when given.
    pub(crate) fn new(main: &str, text: Option<String>) -> SchemaFiles {
        let cwd = if main.starts_with('/') {
            None
        } else {
            std::env::current_dir()
                .ok()
                .map(|d| d.display().to_string())
        };
        SchemaFiles {
            main: main.to_string(),
            text: std::sync::Mutex::new(text.filter(|t| t.len() as u64 <= MAX_FILE_SIZE)),
            cwd,
        }
    }
}

impl SourceProvider for SchemaFiles {
    fn shared(&self) -> Option<&(dyn SourceProvider + Sync)> {
        Some(self)
    }

    fn read(&self, path: &str) -> Result<String, ReadError> {
        if path == self.main {
            let text = self.text.lock().map(|mut t| t.take());
            if let Ok(Some(text)) = text {
                return Ok(text);
            }
        }
        FsProvider.read(path)
    }

    fn canonical(&self, path: &str) -> String {
        match &self.cwd {
            Some(cwd) if !path.starts_with('/') => normalize(&format!("{cwd}/{path}")),
            _ => FsProvider.canonical(path),
        }
    }
}

fn too_large() -> ReadError {
    ReadError(format!("file too large (more than {MAX_FILE_SIZE} bytes)"))
}

fn into_utf8(buf: Vec<u8>) -> Result<String, ReadError> {
    String::from_utf8(buf).map_err(|e| {
        let off = e.utf8_error().valid_up_to();
        ReadError(format!("invalid UTF-8 at byte offset {off}"))
    })
}

/// Reads schema files from the file system, resolving relative names
/// against a directory instead of the current one (the names in messages
/// stay relative, as when QEMU runs in that directory).
#[derive(Debug, Clone, Default)]
pub struct DirProvider {
    pub root: std::path::PathBuf,
}

impl DirProvider {
    pub fn new(root: impl Into<std::path::PathBuf>) -> DirProvider {
        DirProvider { root: root.into() }
    }

    fn resolve(&self, path: &str) -> String {
        if path.starts_with('/') {
            return path.to_string();
        }
        match self.root.to_str() {
            Some(root) => {
                let mut p = String::with_capacity(root.len() + 1 + path.len());
                p.push_str(root);
                p.push('/');
                p.push_str(path);
                p
            }
            None => format!("{}/{}", self.root.display(), path),
        }
    }
}

impl SourceProvider for DirProvider {
    fn shared(&self) -> Option<&(dyn SourceProvider + Sync)> {
        Some(self)
    }

    fn read(&self, path: &str) -> Result<String, ReadError> {
        FsProvider.read(&self.resolve(path))
    }

    fn canonical(&self, path: &str) -> String {
        FsProvider.canonical(&self.resolve(path))
    }
}

/// Schema files held in memory: path → text.
#[derive(Debug, Clone, Default)]
pub struct MemoryProvider {
    files: std::collections::HashMap<String, String>,
}

impl MemoryProvider {
    pub fn new() -> MemoryProvider {
        MemoryProvider::default()
    }

    /// Add (or replace) a file. `path` is normalised, so `a/./b.json` and
    /// `a/b.json` name the same file.
    pub fn add(&mut self, path: &str, text: impl Into<String>) -> &mut Self {
        self.files.insert(normalize(path), text.into());
        self
    }

    /// Build from `(path, text)` pairs, e.g. `include_str!` contents.
    pub fn from_files<'a>(files: impl IntoIterator<Item = (&'a str, &'a str)>) -> MemoryProvider {
        let mut m = MemoryProvider::new();
        for (p, t) in files {
            m.add(p, t);
        }
        m
    }
}

impl SourceProvider for MemoryProvider {
    fn shared(&self) -> Option<&(dyn SourceProvider + Sync)> {
        Some(self)
    }

    fn read(&self, path: &str) -> Result<String, ReadError> {
        match self.files.get(&normalize(path)) {
            Some(t) if t.len() as u64 > MAX_FILE_SIZE => Err(too_large()),
            Some(t) => Ok(t.clone()),
            None => Err(ReadError("No such file or directory".to_string())),
        }
    }

    fn canonical(&self, path: &str) -> String {
        normalize(path)
    }
}

/// Lexical path normalisation as Python's `os.path.normpath` does it:
/// collapses `//`, `.` and `dir/..`; no file system access.
pub fn normalize(path: &str) -> String {
    let abs = path.starts_with('/');
    // Already normal: no empty, `.` or `..` component.
    let body = if abs { &path[1..] } else { path };
    if !body.is_empty()
        && body
            .split('/')
            .all(|c| !c.is_empty() && c != "." && c != "..")
    {
        return path.to_string();
    }
    let mut parts: Vec<&str> = Vec::new();
    for c in path.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                if matches!(parts.last(), Some(p) if *p != "..") {
                    parts.pop();
                } else if !abs {
                    parts.push("..");
                }
            }
            c => parts.push(c),
        }
    }
    let body = parts.join("/");
    match (abs, body.is_empty()) {
        (true, _) => format!("/{body}"),
        (false, true) => ".".to_string(),
        (false, false) => body,
    }
}

/// The name QEMU gives an included file: `os.path.join(dirname(including),
/// name)` (an absolute `name` stands alone).
pub fn join_include(including: &str, name: &str) -> String {
    if name.starts_with('/') {
        return name.to_string();
    }
    let dir = match including.rfind('/') {
        Some(0) => "/",
        Some(i) => &including[..i],
        None => "",
    };
    if dir.is_empty() {
        name.to_string()
    } else if dir.ends_with('/') {
        format!("{dir}{name}")
    } else {
        format!("{dir}/{name}")
    }
}

#[cfg(test)]
mod tests {
    use super::{normalize, FsProvider, SourceProvider};

    /// Regular files are read whole (with or without a final newline,
    /// empty or not); a file whose size the system reports as 0 although
    /// it has text (`/proc`) is read to its end all the same.
    #[test]
    fn files_are_read_whole() {
        let dir = std::env::temp_dir().join(format!("qmpkit-read-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        for text in [
            "",
            "{ 'enum': 'E', 'data': [] }\n",
            "# no newline",
            "\u{e9}\n",
        ] {
            let f = dir.join("f.json");
            std::fs::write(&f, text).unwrap();
            assert_eq!(FsProvider.read(f.to_str().unwrap()).unwrap(), text);
        }
        std::fs::remove_dir_all(&dir).unwrap();
        if std::fs::metadata("/proc/self/status").is_ok_and(|m| m.len() == 0) {
            let status = FsProvider.read("/proc/self/status").unwrap();
            assert!(status.starts_with("Name:"), "{status:?}");
        }
    }

    #[test]
    fn normalize_like_normpath() {
        for (p, want) in [
            ("a/b.json", "a/b.json"),
            ("/abs/a/b.json", "/abs/a/b.json"),
            ("a", "a"),
            ("", "."),
            (".", "."),
            ("/", "/"),
            ("a//b", "a/b"),
            ("a/./b", "a/b"),
            ("a/../b", "b"),
            ("../a", "../a"),
            ("/../a", "/a"),
            ("a/", "a"),
            ("./a", "a"),
        ] {
            assert_eq!(normalize(p), want, "{p}");
        }
    }
}
