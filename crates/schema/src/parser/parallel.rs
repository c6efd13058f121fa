//! A schema's files parsed on two cores: each file is read and parsed on
//! its own as soon as an `include` directive names it, by whichever thread
//! is free; then the files' expressions and doc comments are put in the
//! order in which reading them one after the other finds them (an included
//! file's in place of its first `include`).
//!
//! The main file is parsed first, on the calling thread; a second thread
//! (the [`crate::helper`]) joins only if it includes other files. Only a schema without errors is
//! read this way: an error in the main file before its first `include` is
//! the error; any other error, an inclusion loop or anything else unusual
//! makes the caller read the files one after the other, to report what QEMU
//! reports.

use super::*;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Condvar, MutexGuard, PoisonError};

/// One `include` directive of a file parsed on its own.
struct Include {
    /// Index of the directive among the file's expressions.
    expr: usize,
    /// The included file's name (joined with the including file's
    /// directory) and its canonical name.
    fname: String,
    canon: String,
    /// How many of the file's doc comments come before the directive.
    docs_before: usize,
}

/// A file parsed on its own.
struct Parsed<'t> {
    canon: String,
    file: Arc<SourceFile>,
    out: RawSchema<'t>,
    includes: Vec<Include>,
}

/// The files to parse, shared by the threads.
struct Pool<'t> {
    state: Mutex<State<'t>>,
    wake: Condvar,
    failed: AtomicBool,
}

struct State<'t> {
    /// Files to parse: name and canonical name.
    jobs: VecDeque<(String, String)>,
    /// Canonical names of every file queued so far.
    seen: Vec<String>,
    /// How many threads are parsing a file.
    busy: usize,
    /// How many threads wait for a file to parse (the others are not
    /// woken: a wake-up is a system call even with nobody waiting).
    waiting: usize,
    done: Vec<Parsed<'t>>,
}

impl<'t> Pool<'t> {
    fn lock(&self) -> MutexGuard<'_, State<'t>> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn failed(&self) -> bool {
        self.failed.load(Ordering::Relaxed)
    }

    /// Queue a file an `include` names, unless it was queued before: at the
    /// back when the main file names it, at the front when another file
    /// does. The main file names most files at its top, and the others are
    /// found later: started first, a late and large one (QEMU's
    /// `block-core.json`) does not end up parsed alone after all the rest.
    fn offer(&self, fname: &str, canon: &str, from_main: bool) {
        let mut st = self.lock();
        if st.seen.iter().any(|s| s == canon) {
            return;
        }
        st.seen.push(canon.to_string());
        let job = (fname.to_string(), canon.to_string());
        if from_main {
            st.jobs.push_back(job);
        } else {
            st.jobs.push_front(job);
        }
        let wake = st.waiting > 0;
        drop(st);
        if wake {
            self.wake.notify_one();
        }
    }

    /// The next file to parse; `None` when every file is parsed (or one
    /// failed).
    fn next_job(&self) -> Option<(String, String)> {
        let mut st = self.lock();
        loop {
            if self.failed() {
                return None;
            }
            if let Some(job) = st.jobs.pop_front() {
                st.busy += 1;
                return Some(job);
            }
            if st.busy == 0 {
                return None;
            }
            st.waiting += 1;
            st = self.wake.wait(st).unwrap_or_else(PoisonError::into_inner);
            st.waiting -= 1;
        }
    }

    fn job_done(&self, parsed: Option<Parsed<'t>>) {
        let mut st = self.lock();
        st.busy -= 1;
        match parsed {
            Some(p) => st.done.push(p),
            None => self.failed.store(true, Ordering::Relaxed),
        }
        // Waiting threads only care when the last file is parsed or one
        // failed.
        let wake = st.waiting > 0 && (st.busy == 0 || self.failed());
        drop(st);
        if wake {
            self.wake.notify_all();
        }
    }
}

/// How doc comments are read: with older QEMU's syntax, keeping their
/// text.
#[derive(Clone, Copy)]
pub(super) struct Docs {
    pub lenient: bool,
    pub keep_text: bool,
}

/// What every thread needs to parse a file.
#[derive(Clone, Copy)]
struct Job<'p, 't> {
    pool: &'p Pool<'t>,
    provider: &'p (dyn SourceProvider + Sync),
    arena: &'t TextArena,
    dialect: Dialect,
    docs: Docs,
}

/// What parsing a file on its own gives.
pub(super) enum Outcome<T> {
    Parsed(T),
    /// An error before the file's first `include`.
    Error(QapiError),
    /// Another error, or one that reading the files in order would report
    /// differently: read them in order.
    Retry,
}

impl<'t> Job<'_, 't> {
    /// Parse files until there are none left.
    fn work(self, stacks: &mut Stacks<'t>, scratch: &mut doc::DocScratch) {
        while let Some((fname, canon)) = self.pool.next_job() {
            let parsed = match self.parse(fname, canon, stacks, scratch, &mut None) {
                Outcome::Parsed(p) => Some(p),
                _ => None,
            };
            self.pool.job_done(parsed);
        }
    }

    /// Read and parse one file, queueing the files it includes. `main` is
    /// given for the main file: it is called at its first `include`.
    fn parse(
        self,
        fname: String,
        canon: String,
        stacks: &mut Stacks<'t>,
        scratch: &mut doc::DocScratch,
        main: &mut Option<&mut dyn FnMut()>,
    ) -> Outcome<Parsed<'t>> {
        let from_main = main.is_some();
        let Ok(text) = self.provider.read(&fname) else {
            return Outcome::Retry;
        };
        let text = self.arena.alloc(with_final_newline(text));
        let file = Arc::new(SourceFile::new(fname, None, text));
        let mut fp = FileParser::new(
            file.clone(),
            text,
            self.dialect,
            (self.docs.lenient, self.docs.keep_text),
            std::mem::take(stacks),
        );
        let mut out = RawSchema::default();
        let mut includes = Vec::new();
        loop {
            let i = match fp.step(&mut out, scratch) {
                Ok(Some(i)) => i,
                Ok(None) => break,
                Err(e) if includes.is_empty() => return Outcome::Error(e),
                Err(_) => return Outcome::Retry,
            };
            let fname = join_include(&file.name, include_name(&out.exprs[i]));
            let canon = self.provider.canonical(&fname);
            self.pool.offer(&fname, &canon, from_main);
            if let Some(first_include) = main.take() {
                first_include();
            }
            includes.push(Include {
                expr: i,
                fname,
                canon,
                docs_before: out.docs.len(),
            });
            if self.pool.failed() {
                return Outcome::Retry;
            }
        }
        match fp.finish(&out) {
            Ok(st) => *stacks = st,
            Err(e) if includes.is_empty() => return Outcome::Error(e),
            Err(_) => return Outcome::Retry,
        }
        Outcome::Parsed(Parsed {
            canon,
            file,
            out,
            includes,
        })
    }
}

/// Parse `fname` and everything it includes on two threads (see the
/// module's documentation).
pub(super) fn parse_files<'t>(
    fname: &str,
    dialect: Dialect,
    provider: &(dyn SourceProvider + Sync),
    docs: Docs,
    arena: &'t TextArena,
) -> Outcome<RawSchema<'t>> {
    let canon = provider.canonical(fname);
    let pool = Pool {
        state: Mutex::new(State {
            jobs: VecDeque::new(),
            seen: vec![canon.clone()],
            busy: 0,
            waiting: 0,
            done: Vec::new(),
        }),
        wake: Condvar::new(),
        failed: AtomicBool::new(false),
    };
    let job = Job {
        pool: &pool,
        provider,
        arena,
        dialect,
        docs,
    };
    let mut stacks = Stacks::default();
    let mut scratch = doc::DocScratch::new();
    // The main file counts as a file being parsed: the second thread waits
    // for the files it names until it is parsed.
    pool.lock().busy = 1;
    let failed = crate::helper::scope(|s| {
        // The second thread (the helper) starts at the main file's first
        // `include`, to be ready by the time the main file is parsed.
        // Without it, the first one parses every file.
        let mut start = || {
            s.spawn(move || job.work(&mut Stacks::default(), &mut doc::DocScratch::new()));
        };
        let main = job.parse(
            fname.to_string(),
            canon.clone(),
            &mut stacks,
            &mut scratch,
            &mut Some(&mut start),
        );
        match main {
            Outcome::Parsed(p) => {
                pool.job_done(Some(p));
                job.work(&mut stacks, &mut scratch);
                None
            }
            other => {
                pool.job_done(None);
                Some(other)
            }
        }
    });
    match failed {
        Some(Outcome::Error(e)) => return Outcome::Error(e),
        Some(_) => return Outcome::Retry,
        None => {}
    }
    if pool.failed() {
        return Outcome::Retry;
    }
    let done = pool
        .state
        .into_inner()
        .unwrap_or_else(PoisonError::into_inner)
        .done;
    let exprs = done.iter().map(|p| p.out.exprs.len()).sum();
    let ndocs = done.iter().map(|p| p.out.docs.len()).sum();
    let mut st = Stitch {
        dialect,
        included: vec![canon.clone()],
        chain: vec![canon.clone()],
        files: done.into_iter().map(Some).collect(),
        out: RawSchema {
            exprs: Vec::with_capacity(exprs),
            docs: Vec::with_capacity(ndocs),
            lenient_docs: docs.lenient,
            ..RawSchema::default()
        },
    };
    match st.position(&canon).and_then(|main| st.put(main, 0)) {
        Some(()) => Outcome::Parsed(st.out),
        None => Outcome::Retry,
    }
}

/// Puts the files parsed on their own in order.
struct Stitch<'t> {
    dialect: Dialect,
    /// As [`Ctx`]'s.
    included: Vec<String>,
    chain: Vec<String>,
    files: Vec<Option<Parsed<'t>>>,
    out: RawSchema<'t>,
}

impl<'t> Stitch<'t> {
    fn position(&self, canon: &str) -> Option<usize> {
        self.files
            .iter()
            .position(|f| f.as_ref().is_some_and(|f| f.canon == canon))
    }

    /// Append file `k`'s expressions and doc comments, each included file's
    /// in place of its first `include`.
    fn put(&mut self, k: usize, depth: usize) -> Option<()> {
        let Parsed {
            out: part,
            includes,
            ..
        } = self.files[k].take()?;
        self.out.old_style_docs |= part.old_style_docs;
        self.out.old_style_blocks += part.old_style_blocks;
        let mut docs = part.docs.into_iter();
        // Where each of the file's doc comments went.
        let mut doc_at: Vec<usize> = Vec::with_capacity(docs.len());
        let mut includes = includes.into_iter().peekable();
        for (i, mut e) in part.exprs.into_iter().enumerate() {
            if let Some(d) = e.doc {
                while doc_at.len() <= d {
                    doc_at.push(self.out.docs.len());
                    self.out.docs.push(docs.next()?);
                }
                e.doc = Some(doc_at[d]);
            }
            if includes.peek().is_some_and(|inc| inc.expr == i) {
                let inc = includes.next()?;
                while doc_at.len() < inc.docs_before {
                    doc_at.push(self.out.docs.len());
                    self.out.docs.push(docs.next()?);
                }
                if self.chain.contains(&inc.canon) {
                    return None;
                }
                let repeated = self.included.contains(&inc.canon);
                let info = e.info.clone();
                e.include = Some((inc.fname.clone(), repeated));
                self.out.exprs.push(e);
                if !repeated {
                    if depth >= MAX_INCLUDE_DEPTH {
                        return None;
                    }
                    let sub = self.position(&inc.canon)?;
                    let file = &self.files[sub].as_ref()?.file;
                    // Named as reading in order names it.
                    if file.name != inc.fname {
                        return None;
                    }
                    file.set_included_from(info);
                    self.included.push(inc.canon.clone());
                    self.chain.push(inc.canon);
                    self.put(sub, depth + 1)?;
                    self.chain.pop();
                }
                continue;
            }
            if let Some(Value::Dict(pairs)) = get(&e.value, "pragma") {
                for (name, value) in pairs {
                    apply_pragma(&mut self.out, self.dialect, name, value, &e.info).ok()?;
                }
            }
            self.out.exprs.push(e);
        }
        self.out.docs.extend(docs);
        Some(())
    }
}
