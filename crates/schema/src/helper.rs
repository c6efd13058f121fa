//! One helper thread, started on first use and kept for the life of the process, that runs
//! the work the pipeline hands to a second core (the files parsed beside the main file, the
//! expressions checked beside those being defined), and whatever a program gives it to do in
//! the background first ([`detach`]). Starting a thread costs more than a dozen system
//! calls (its stack, its signal stack, its exit); a one-shot command that would start three
//! starts one.
//!
//! The helper takes a job while it is idle or busy with a [`detach`]ed one (the job then
//! waits for it); when it is busy with another caller's work (programs that load several
//! schemas at once), the job gets a thread of its own, as before. A job's panic is raised
//! again in the thread that waits for it.
//!
//! A program that checks one schema and ends says so ([`one_shot`]): the helper's thread
//! then ends as soon as the checks it shares are done (the model's own checks last), rather
//! than being woken at the process's exit only to end then (which the process's parent
//! would wait for).

use std::any::Any;
use std::collections::VecDeque;
use std::marker::PhantomData;
use std::panic::{catch_unwind, resume_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock, PoisonError};

type Job = Box<dyn FnOnce() + Send + 'static>;

/// What the helper is asked to do.
enum Msg {
    /// Run a job; with a ticket, someone waits for it.
    Run(Job, Option<Arc<Ticket>>),
    /// End the thread.
    Stop,
}

/// The program is a one-shot check (see [`one_shot`]).
static ONE_SHOT: AtomicBool = AtomicBool::new(false);

/// Where a job's outcome is left for the thread that waits for it.
#[derive(Default)]
struct Ticket {
    done: Mutex<Option<Result<(), Box<dyn Any + Send>>>>,
    cv: Condvar,
}

impl Ticket {
    fn finish(&self, r: Result<(), Box<dyn Any + Send>>) {
        *lock(&self.done) = Some(r);
        self.cv.notify_all();
    }

    fn wait(&self) -> Result<(), Box<dyn Any + Send>> {
        let mut d = lock(&self.done);
        loop {
            if let Some(r) = d.take() {
                return r;
            }
            d = self.cv.wait(d).unwrap_or_else(PoisonError::into_inner);
        }
    }
}

struct Helper {
    state: Mutex<State>,
    wake: Condvar,
}

#[derive(Default)]
struct State {
    queue: VecDeque<Msg>,
    /// The helper runs a job a caller waits for.
    busy: bool,
    /// Whether the thread is waiting for a job.
    idle: bool,
    /// The thread was asked to end: it takes no more jobs.
    stopping: bool,
}

/// Start `run` on a thread of its own, on another core than this thread's where there is
/// one. A new thread starts on its creator's core otherwise, and may wait there a millisecond
/// or more before the scheduler moves one of the two (seen on Linux 6.x, where the two then
/// take turns). The new thread may go to any core again once it runs.
fn spawn_elsewhere(run: impl FnOnce() + Send + 'static) -> bool {
    #[cfg(target_os = "linux")]
    {
        use std::os::unix::thread::JoinHandleExt;
        use std::sync::atomic::AtomicU8;
        // Who came first: the new thread (`RAN`), or this one, which moves it away
        // (`MOVING`, then `MOVED`); the new thread gets its cores back once it is moved, and
        // is not moved once it runs.
        const RAN: u8 = 1;
        const MOVING: u8 = 2;
        const MOVED: u8 = 3;
        let size = std::mem::size_of::<libc::cpu_set_t>();
        // SAFETY: plain C calls on a zeroed CPU set of the right size.
        let (here, all) = unsafe {
            let mut all: libc::cpu_set_t = std::mem::zeroed();
            let ok = libc::sched_getaffinity(0, size, &mut all) == 0;
            (libc::sched_getcpu(), ok.then_some(all))
        };
        let state = Arc::new(AtomicU8::new(0));
        let theirs = state.clone();
        let spawned = std::thread::Builder::new().spawn(move || {
            if theirs
                .compare_exchange(0, RAN, Ordering::AcqRel, Ordering::Acquire)
                .is_err()
            {
                while theirs.load(Ordering::Acquire) != MOVED {
                    std::thread::yield_now();
                }
                if let Some(all) = all {
                    // SAFETY: a valid CPU set; failure leaves the thread where it is.
                    unsafe { libc::sched_setaffinity(0, size, &all) };
                }
            }
            run()
        });
        let Ok(t) = spawned else {
            return false;
        };
        if let Some(mut away) = all.filter(|_| here >= 0) {
            if state
                .compare_exchange(0, MOVING, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
            {
                // SAFETY: as above; `t` is a thread of this process that has not begun
                // `run` (it waits for `MOVED`), whose handle is kept until the call returns.
                unsafe {
                    libc::CPU_CLR(here as usize, &mut away);
                    if libc::CPU_COUNT(&away) > 0 {
                        libc::pthread_setaffinity_np(t.as_pthread_t(), size, &away);
                    }
                }
                state.store(MOVED, Ordering::Release);
            }
        }
        true
    }
    #[cfg(not(target_os = "linux"))]
    std::thread::Builder::new().spawn(run).is_ok()
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

static HELPER: OnceLock<Option<&'static Helper>> = OnceLock::new();

/// The helper, started on first use (`None` when no thread could be started).
fn helper() -> Option<&'static Helper> {
    *HELPER.get_or_init(|| {
        let h: &'static Helper = Box::leak(Box::new(Helper {
            state: Mutex::new(State::default()),
            wake: Condvar::new(),
        }));
        spawn_elsewhere(move || h.run()).then_some(h)
    })
}

impl Helper {
    fn run(&self) {
        let mut st = lock(&self.state);
        loop {
            let (job, ticket) = match st.queue.pop_front() {
                Some(Msg::Run(job, ticket)) => (job, ticket),
                Some(Msg::Stop) => return,
                None => {
                    st.idle = true;
                    st = self.wake.wait(st).unwrap_or_else(PoisonError::into_inner);
                    st.idle = false;
                    continue;
                }
            };
            st.busy = ticket.is_some();
            drop(st);
            let r = catch_unwind(AssertUnwindSafe(job));
            // Free before the waiter hears of it: a caller that goes on to hand over its
            // next job finds the helper free, rather than starting a thread for it.
            st = lock(&self.state);
            st.busy = false;
            if let Some(t) = ticket {
                t.finish(r);
            }
        }
    }

    /// Queue `job` unless the helper is ending or, for a job someone waits for, has such a
    /// job already (running or queued).
    fn offer(&self, job: Job, ticket: Option<Arc<Ticket>>) -> Result<(), Job> {
        let st = lock(&self.state);
        let taken = st.busy || st.queue.iter().any(|m| matches!(m, Msg::Run(_, Some(_))));
        if st.stopping || (taken && ticket.is_some()) {
            return Err(job);
        }
        self.send(st, Msg::Run(job, ticket));
        Ok(())
    }

    fn send(&self, mut st: MutexGuard<'_, State>, msg: Msg) {
        st.queue.push_back(msg);
        // One wake-up is enough: the thread takes every message queued before it waits again.
        let wake = std::mem::replace(&mut st.idle, false);
        drop(st);
        if wake {
            self.wake.notify_one();
        }
    }

    /// End the thread once the jobs queued so far are done.
    fn stop(&self) {
        let mut st = lock(&self.state);
        if !st.stopping {
            st.stopping = true;
            self.send(st, Msg::Stop);
        }
    }
}

/// Say that the program checks one schema and ends (see the module's documentation).
pub fn one_shot() {
    ONE_SHOT.store(true, Ordering::Relaxed);
}

/// The work a check shares is done: in a one-shot program, the helper's thread ends (jobs
/// handed over later get threads of their own).
pub(crate) fn shared_work_done() {
    if ONE_SHOT.load(Ordering::Relaxed) {
        if let Some(Some(h)) = HELPER.get() {
            h.stop();
        }
    }
}

/// Run `job` on the helper thread, in the background: nobody waits for it, and a job handed
/// over later waits until it is done. Where no thread can be started, `job` is not run.
pub fn detach(job: impl FnOnce() + Send + 'static) {
    let job: Job = Box::new(job);
    let job = match helper() {
        Some(h) => match h.offer(job, None) {
            Ok(()) => return,
            Err(job) => job,
        },
        None => job,
    };
    let _ = std::thread::Builder::new().spawn(job);
}

/// Jobs that borrow from the caller's frame: [`scope`] returns only once they are done.
pub(crate) struct Scope<'env> {
    tickets: Mutex<Vec<Arc<Ticket>>>,
    _env: PhantomData<&'env mut &'env ()>,
}

impl<'env> Scope<'env> {
    /// Run `job` on the helper (or, while another caller's job has it, on a thread of its
    /// own). False when no thread could take it.
    pub(crate) fn spawn(&self, job: impl FnOnce() + Send + 'env) -> bool {
        let job: Box<dyn FnOnce() + Send + 'env> = Box::new(job);
        // SAFETY: the job only borrows what lives for `'env`, which outlives the call to
        // `scope` that made this scope (a lifetime parameter of that function); `scope`
        // waits on every ticket handed out here before it returns or unwinds, so the job
        // never runs after its borrows end.
        let job: Job = unsafe { std::mem::transmute::<Box<dyn FnOnce() + Send + 'env>, Job>(job) };
        let ticket = Arc::new(Ticket::default());
        let job = match helper() {
            Some(h) => match h.offer(job, Some(ticket.clone())) {
                Ok(()) => {
                    lock(&self.tickets).push(ticket);
                    return true;
                }
                Err(job) => job,
            },
            None => job,
        };
        let t = ticket.clone();
        let spawned = std::thread::Builder::new()
            .spawn(move || t.finish(catch_unwind(AssertUnwindSafe(job))))
            .is_ok();
        if spawned {
            lock(&self.tickets).push(ticket);
        }
        spawned
    }
}

/// Call `f` with a [`Scope`] whose jobs may borrow from the caller; return once they are all
/// done. A job's panic (or `f`'s) is raised again here, after the jobs are done.
pub(crate) fn scope<'env, R>(f: impl FnOnce(&Scope<'env>) -> R) -> R {
    let s = Scope {
        tickets: Mutex::new(Vec::new()),
        _env: PhantomData,
    };
    let r = catch_unwind(AssertUnwindSafe(|| f(&s)));
    let mut panicked = None;
    for t in std::mem::take(&mut *lock(&s.tickets)) {
        if let Err(p) = t.wait() {
            panicked.get_or_insert(p);
        }
    }
    match (r, panicked) {
        (Err(p), _) | (Ok(_), Some(p)) => resume_unwind(p),
        (Ok(r), None) => r,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// The cores a thread may run on, as a count.
    #[cfg(target_os = "linux")]
    fn cores_allowed() -> i32 {
        // SAFETY: plain C call on a zeroed CPU set of the right size.
        unsafe {
            let mut set: libc::cpu_set_t = std::mem::zeroed();
            assert_eq!(
                libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set),
                0
            );
            libc::CPU_COUNT(&set)
        }
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn a_thread_started_elsewhere_runs_with_every_core_back() {
        let all = cores_allowed();
        for _ in 0..200 {
            let (tx, rx) = std::sync::mpsc::channel();
            assert!(spawn_elsewhere(move || {
                let _ = tx.send(cores_allowed());
            }));
            assert_eq!(rx.recv().unwrap(), all);
        }
    }

    #[test]
    fn scoped_jobs_finish_before_scope_returns() {
        let n = AtomicUsize::new(0);
        for _ in 0..100 {
            scope(|s| {
                assert!(s.spawn(|| {
                    std::thread::yield_now();
                    n.fetch_add(1, Ordering::SeqCst);
                }));
                n.fetch_add(1, Ordering::SeqCst);
            });
        }
        assert_eq!(n.load(Ordering::SeqCst), 200);
    }

    #[test]
    fn a_busy_helper_leaves_the_job_to_a_thread_of_its_own() {
        let (tx, rx) = std::sync::mpsc::channel::<()>();
        let n = AtomicUsize::new(0);
        scope(|outer| {
            // The helper (or a thread of its own) waits until the inner scope is done.
            outer.spawn(move || {
                let _ = rx.recv();
            });
            scope(|inner| {
                assert!(inner.spawn(|| {
                    n.fetch_add(1, Ordering::SeqCst);
                }));
            });
            assert_eq!(n.load(Ordering::SeqCst), 1);
            let _ = tx.send(());
        });
    }

    #[test]
    fn a_job_panic_is_raised_in_the_waiting_thread() {
        let r = catch_unwind(|| {
            scope(|s| {
                s.spawn(|| panic!("job"));
            })
        });
        assert!(r.is_err());
        // The helper survives it.
        let n = AtomicUsize::new(0);
        scope(|s| {
            s.spawn(|| {
                n.fetch_add(1, Ordering::SeqCst);
            });
        });
        assert_eq!(n.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn jobs_still_run_once_a_one_shot_helper_ended() {
        // Other tests of this binary may find the helper ended: their jobs get threads of
        // their own, as these do.
        one_shot();
        shared_work_done();
        let n = AtomicUsize::new(0);
        scope(|s| {
            assert!(s.spawn(|| {
                n.fetch_add(1, Ordering::SeqCst);
            }));
        });
        assert_eq!(n.load(Ordering::SeqCst), 1);
        let (tx, rx) = std::sync::mpsc::channel();
        detach(move || {
            let _ = tx.send(2);
        });
        assert_eq!(rx.recv().ok(), Some(2));
    }

    #[test]
    fn detached_jobs_run_before_later_ones() {
        let (tx, rx) = std::sync::mpsc::channel();
        detach(move || {
            let _ = tx.send(1);
        });
        let n = AtomicUsize::new(0);
        scope(|s| {
            s.spawn(|| {
                n.fetch_add(1, Ordering::SeqCst);
            });
        });
        assert_eq!(n.load(Ordering::SeqCst), 1);
        assert_eq!(rx.recv().ok(), Some(1));
    }
}
