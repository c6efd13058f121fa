//! The binary's allocator: the system's, until a one-shot command (`qmpkit schema …`) asks for
//! the arena. From then on, allocations come from one region of address space that is never
//! given back: the process ends with the command, so freeing is work nobody needs, and the
//! region is backed by huge pages where the kernel offers them on request
//! (`MADV_HUGEPAGE`), which turns a thousand first-touch page faults into a handful.
//!
//! Each thread takes blocks from a chunk of the region of its own (threads parsing a schema's
//! files side by side do not contend for one pointer); freeing a thread's newest allocation
//! takes it back, and growing the newest grows it in place (the chunk grows with it while it
//! is the region's last), so that a vector built up alone wastes nothing. Other freed blocks
//! of 512 bytes or more (a file's lists once its parts are put in order, a vector's buffer
//! before it grew) are kept on short lists, by size, for later blocks that fit; smaller ones
//! (the parsed text of an expression once it is checked, temporary lists) go on the freeing
//! thread's own lists, one per 16-byte size class, for its next blocks of that class: the
//! less of the region a command touches, the fewer pages the kernel has to clear for it
//! (checking QEMU's schema stays well within two huge pages instead of three). When the region is
//! used up (or cannot be had), allocations fall back to the system's allocator; blocks are
//! told apart by address.
//!
//! A long-running command (`serve`) uses it only while it starts, for what it builds then and
//! mostly keeps for good (the schema model, the machine, its server):
//! [`enable_prefaulted`] takes a small region whose pages are made present in one system call
//! instead of one fault each, on one huge page where the kernel offers it (making a megabyte
//! present takes about 290 small pages, each a page fault's worth of the kernel's work, where
//! one huge page costs less than a third of that on the machines measured), [`pause`] hands
//! allocation back to the system's allocator and the unused rest of the region back to the
//! system. The blocks made meanwhile live in the region (as long as the process; one freed
//! later is not reused, which the region's size bounds).

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

pub struct Alloc;

/// Address space reserved for the arena (nothing is committed until touched).
const RESERVE: usize = 1 << 30;
/// The size of a huge page on x86-64 and arm64 (4 KiB base pages).
const HUGE: usize = 2 << 20;

/// The region `[START, END)`; `START == 0` while the arena is off.
static START: AtomicUsize = AtomicUsize::new(0);
static END: AtomicUsize = AtomicUsize::new(0);
/// The first free byte.
static NEXT: AtomicUsize = AtomicUsize::new(0);
/// New blocks come from the region (false once [`pause`]d).
static ACTIVE: AtomicBool = AtomicBool::new(false);
/// The region came from [`enable_prefaulted`].
static PREFAULTED: AtomicBool = AtomicBool::new(false);
/// The region had no room for a new chunk: blocks that do not fit a thread's chunk go
/// straight to the system's allocator.
static FULL: AtomicBool = AtomicBool::new(false);

/// What a thread takes from the region at a time (more when a block needs more).
const CHUNK: usize = 128 << 10;
/// Chunks start on a cache line of their own.
const LINE: usize = 64;
/// Freed blocks this large or larger are kept for reuse (smaller ones are many, and mostly
/// taken back as a thread's newest block).
const REUSE_MIN_SHIFT: u32 = 9;
const REUSE_MIN: usize = 1 << REUSE_MIN_SHIFT;
/// Kept blocks are sorted by size class (a power of two: 512 bytes to 512 KiB and larger);
/// each class keeps this many (when its list is full, a block is not kept).
const CLASSES: usize = 11;
const PER_CLASS: usize = 32;
/// Which of the classes hold a block (bit `c` for class `c`): an allocation looks at the
/// lists only when one that could hold it is not empty.
static KEPT: AtomicUsize = AtomicUsize::new(0);

/// Smaller freed blocks are kept by the thread that frees them, on lists by 16-byte class:
/// class `c` holds blocks of `16 * c` to `16 * c + 15` bytes and serves requests of
/// `16 * c - 15` to `16 * c` bytes. Only blocks on an 8-byte boundary are kept, for requests
/// aligned to 8 bytes at most.
const SMALL: usize = 16;
const SMALL_CLASSES: usize = REUSE_MIN / SMALL;
const SMALL_ALIGN: usize = 8;

/// Freed blocks of the region, `(start, len)`, by size class, behind a spin lock: blocks this
/// large are a few thousand in a schema check, so the lock is seldom contended and never
/// held for long.
struct FreeList {
    busy: AtomicBool,
    classes: std::cell::UnsafeCell<[Class; CLASSES]>,
}

#[derive(Clone, Copy)]
struct Class {
    n: usize,
    blocks: [(usize, usize); PER_CLASS],
}

// SAFETY: `classes` is only touched while `busy` is held (see `FreeList::with`).
unsafe impl Sync for FreeList {}

static FREE: FreeList = FreeList {
    busy: AtomicBool::new(false),
    classes: std::cell::UnsafeCell::new(
        [Class {
            n: 0,
            blocks: [(0, 0); PER_CLASS],
        }; CLASSES],
    ),
};

/// The size class of a block of `len` bytes (at least [`REUSE_MIN`]).
fn class_of(len: usize) -> usize {
    ((usize::BITS - 1 - len.leading_zeros() - REUSE_MIN_SHIFT) as usize).min(CLASSES - 1)
}

impl FreeList {
    fn with<R>(&self, f: impl FnOnce(&mut [Class; CLASSES]) -> R) -> R {
        while self
            .busy
            .compare_exchange_weak(false, true, Ordering::Acquire, Ordering::Relaxed)
            .is_err()
        {
            std::hint::spin_loop();
        }
        // SAFETY: `busy` is held: no other reference to the classes exists.
        let r = f(unsafe { &mut *self.classes.get() });
        self.busy.store(false, Ordering::Release);
        r
    }

    /// Keep the freed block `[a, a + len)` (when its class has room).
    #[inline(never)]
    fn put(&self, a: usize, len: usize) {
        self.with(|classes| put_in(classes, a, len));
    }

    /// A kept block that holds `layout`, cut to it (a rest large enough is kept again): one
    /// of the block's own class that is large enough, else any of a larger class.
    #[inline(never)]
    fn take(&self, layout: Layout) -> Option<*mut u8> {
        let align = layout.align() - 1;
        let fit = |(a, len): (usize, usize)| {
            let p = a.checked_add(align)? & !align;
            let e = p.checked_add(layout.size())?;
            (e <= a + len).then_some((p, e))
        };
        self.with(|classes| {
            for c in class_of(layout.size())..CLASSES {
                if KEPT.load(Ordering::Relaxed) & (1 << c) == 0 {
                    continue;
                }
                let class = &mut classes[c];
                let Some(k) = (0..class.n).rev().find(|&k| fit(class.blocks[k]).is_some()) else {
                    continue;
                };
                let (a, len) = class.blocks[k];
                class.n -= 1;
                class.blocks[k] = class.blocks[class.n];
                if class.n == 0 {
                    KEPT.fetch_and(!(1 << c), Ordering::Relaxed);
                }
                let (p, e) = fit((a, len))?;
                if a + len - e >= REUSE_MIN {
                    put_in(classes, e, a + len - e);
                }
                return Some(p as *mut u8);
            }
            None
        })
    }
}

fn put_in(classes: &mut [Class; CLASSES], a: usize, len: usize) {
    let c = class_of(len);
    let class = &mut classes[c];
    if class.n < PER_CLASS {
        class.blocks[class.n] = (a, len);
        class.n += 1;
        KEPT.fetch_or(1 << c, Ordering::Relaxed);
    }
}

/// Whether a kept block of class [`class_of`]`(len)` or larger may exist.
#[inline]
fn may_take(len: usize) -> bool {
    KEPT.load(Ordering::Relaxed) >> class_of(len) != 0
}

/// One thread's part of the arena.
struct Local {
    /// The thread's chunk of the region: its first free byte and its end (`(0, 0)` before
    /// the thread's first block).
    chunk: Cell<(usize, usize)>,
    /// The first freed small block of each class (0: none); each block holds the address
    /// of the next in its first word.
    small: [Cell<usize>; SMALL_CLASSES],
}

thread_local! {
    static LOCAL: Local = const {
        Local {
            chunk: Cell::new((0, 0)),
            small: [const { Cell::new(0) }; SMALL_CLASSES],
        }
    };
}

impl Local {
    /// A kept small block for `layout` (at most `REUSE_MIN - 1` bytes, aligned to
    /// [`SMALL_ALIGN`] at most).
    #[inline]
    fn take_small(&self, layout: Layout) -> Option<*mut u8> {
        let head = self.small.get(layout.size().div_ceil(SMALL))?;
        let a = head.get();
        if a == 0 {
            return None;
        }
        // SAFETY: `a` is a freed block of this thread's list (at least 16 bytes, aligned to
        // 8), whose first word holds the next block's address.
        head.set(unsafe { *(a as *const usize) });
        Some(a as *mut u8)
    }

    /// Keep the freed small block `[a, a + len)` (16 to `REUSE_MIN - 1` bytes).
    #[inline]
    fn put_small(&self, a: usize, len: usize) {
        if a % SMALL_ALIGN != 0 {
            return;
        }
        let Some(head) = self.small.get(len / SMALL) else {
            return;
        };
        // SAFETY: the block is freed, lies in the region, is at least 16 bytes long and
        // aligned to 8: its first word can hold the list's link.
        unsafe { *(a as *mut usize) = head.get() };
        head.set(a);
    }
}

/// Serve every allocation from now on from the arena (once; a no-op when the region cannot
/// be reserved).
pub fn enable() {
    if START.load(Ordering::Acquire) != 0 {
        return;
    }
    // What the C library still allocates for itself (a new thread asks it for the thread's
    // attributes) comes from its main heap: a heap of its own for each new thread would be
    // four system calls and a page fault more per thread.
    // SAFETY: plain C call; tuning the C library's allocator before threads exist.
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 1);
    }
    // SAFETY: a fresh private anonymous mapping; no existing memory is affected.
    let p = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            RESERVE,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
            -1,
            0,
        )
    };
    if p == libc::MAP_FAILED || p.is_null() {
        return;
    }
    let start = p as usize;
    let aligned = (start + HUGE - 1) & !(HUGE - 1);
    // SAFETY: advice on the mapping made above; failure only means small pages.
    unsafe {
        libc::madvise(
            aligned as *mut libc::c_void,
            RESERVE - (aligned - start),
            libc::MADV_HUGEPAGE,
        );
    }
    NEXT.store(aligned, Ordering::Relaxed);
    END.store(start + RESERVE, Ordering::Relaxed);
    START.store(start, Ordering::Release);
    ACTIVE.store(true, Ordering::Release);
    // The region's second huge page is made present on another core while this one starts
    // the command (reading options and the first file takes about as long as the kernel
    // takes to clear a huge page): otherwise whichever thread first reaches it clears it
    // in the middle of the work. Where the kernel gives no huge pages, nothing is done. The
    // schema crate's helper thread does it, before the work the schema pipeline gives it.
    let second = aligned + HUGE;
    qmpkit_schema::helper::detach(move || {
        let thp = std::fs::read_to_string("/sys/kernel/mm/transparent_hugepage/enabled");
        if thp.is_ok_and(|t| !t.contains("[never]")) {
            // SAFETY: advice on a range inside the region mapped above, which no block
            // reaches yet; making pages present does not change their contents.
            unsafe {
                libc::madvise(second as *mut libc::c_void, HUGE, libc::MADV_POPULATE_WRITE);
            }
        }
    });
}

/// Serve allocations from a region of `want` bytes at least, present from the start (once; a
/// no-op when the arena was enabled before or the region cannot be had). The region is whole
/// huge pages, on a huge page boundary: where the kernel gives it huge pages, they are all
/// present; elsewhere, the first `want` bytes are, and the rest of it comes on first use. What
/// does not fit goes to the system's allocator.
pub fn enable_prefaulted(want: usize) {
    if START.load(Ordering::Acquire) != 0 {
        return;
    }
    let Some(size) = want.checked_add(HUGE - 1).map(|s| s & !(HUGE - 1)) else {
        return;
    };
    // A huge page's worth more than the region, for room to align it.
    // SAFETY: a fresh private anonymous mapping; no existing memory is affected.
    let p = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            size + HUGE,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            -1,
            0,
        )
    };
    if p == libc::MAP_FAILED || p.is_null() {
        return;
    }
    let mapped = p as usize;
    let start = (mapped + HUGE - 1) & !(HUGE - 1);
    // SAFETY: the ranges given back lie in the mapping made above, outside `[start, start +
    // size)`; the advice concerns that range only (failure only means small pages, made
    // present one by one below).
    unsafe {
        if start > mapped {
            libc::munmap(mapped as *mut libc::c_void, start - mapped);
        }
        let tail = mapped + HUGE - start;
        if tail > 0 {
            libc::munmap((start + size) as *mut libc::c_void, tail);
        }
        libc::madvise(start as *mut libc::c_void, size, libc::MADV_HUGEPAGE);
        if libc::madvise(start as *mut libc::c_void, want, libc::MADV_POPULATE_WRITE) != 0 {
            // Kernels before 5.14: one write per page.
            for a in (start..start + want).step_by(4096) {
                std::ptr::write_volatile(a as *mut u8, 0);
            }
        }
    }
    NEXT.store(start, Ordering::Relaxed);
    END.store(start + size, Ordering::Relaxed);
    PREFAULTED.store(true, Ordering::Release);
    START.store(start, Ordering::Release);
    ACTIVE.store(true, Ordering::Release);
}

/// New blocks come from the system's allocator again; the arena's stay where they are. The
/// pages of a [`enable_prefaulted`] region past the last block are given back to the system
/// (they read as zeros if the newest block grows into them again), and the region is no
/// longer one for huge pages: the kernel's background collapsing would otherwise make the
/// whole huge page present again.
pub fn pause() {
    if !ACTIVE.swap(false, Ordering::AcqRel) || !PREFAULTED.load(Ordering::Acquire) {
        return;
    }
    let page = 4096;
    let used = (NEXT.load(Ordering::Relaxed) + page - 1) & !(page - 1);
    let (start, end) = (START.load(Ordering::Relaxed), END.load(Ordering::Relaxed));
    // SAFETY: advice on the region mapped by `enable_prefaulted`; the range discarded holds
    // no block, and discarding private anonymous pages leaves them mapped, zero-filled on
    // touch.
    unsafe {
        libc::madvise(
            start as *mut libc::c_void,
            end - start,
            libc::MADV_NOHUGEPAGE,
        );
        if used < end {
            libc::madvise(used as *mut libc::c_void, end - used, libc::MADV_DONTNEED);
        }
    }
}

fn in_arena(a: usize) -> bool {
    let start = START.load(Ordering::Acquire);
    start != 0 && a >= start && a < END.load(Ordering::Relaxed)
}

/// `[p, p + len)` from the region's free space, aligned to [`LINE`]; `None` when it does not fit.
fn carve(len: usize) -> Option<usize> {
    let end = END.load(Ordering::Relaxed);
    let mut cur = NEXT.load(Ordering::Relaxed);
    loop {
        let p = cur.checked_add(LINE - 1)? & !(LINE - 1);
        let e = p.checked_add(len)?;
        if e > end {
            return None;
        }
        match NEXT.compare_exchange_weak(cur, e, Ordering::Relaxed, Ordering::Relaxed) {
            Ok(_) => return Some(p),
            Err(c) => cur = c,
        }
    }
}

/// Make this thread's chunk reach `e` at least: in place while the chunk ends where the
/// region's free space starts, otherwise not at all.
fn extend(local: &Cell<(usize, usize)>, e: usize) -> bool {
    let (next, end) = local.get();
    if e <= end {
        return true;
    }
    if end == 0 || e > END.load(Ordering::Relaxed) {
        return false;
    }
    let grown = e.saturating_add(CHUNK).min(END.load(Ordering::Relaxed));
    if NEXT
        .compare_exchange(end, grown, Ordering::Relaxed, Ordering::Relaxed)
        .is_ok()
    {
        local.set((next, grown));
        return true;
    }
    false
}

/// A block from the arena, or `None` when it is off or used up.
fn bump(layout: Layout) -> Option<*mut u8> {
    if !ACTIVE.load(Ordering::Acquire) {
        return None;
    }
    LOCAL
        .try_with(|l| {
            if layout.size() < REUSE_MIN && layout.align() <= SMALL_ALIGN {
                if let Some(p) = l.take_small(layout) {
                    return Some(p);
                }
            }
            let local = &l.chunk;
            let align = layout.align() - 1;
            let (next, end) = local.get();
            let p = next.checked_add(align)? & !align;
            let e = p.checked_add(layout.size())?;
            if end != 0 && (e <= end || extend(local, e)) {
                local.set((e, local.get().1));
                return Some(p as *mut u8);
            }
            // A new chunk, large enough for the block.
            if FULL.load(Ordering::Relaxed) {
                return None;
            }
            let need = layout.size().checked_add(align)?;
            let (start, len) = match carve(need.max(CHUNK)) {
                Some(start) => (start, need.max(CHUNK)),
                None => match carve(need) {
                    Some(start) => (start, need),
                    None => {
                        FULL.store(true, Ordering::Relaxed);
                        return None;
                    }
                },
            };
            // Within the chunk: `p - start <= align`.
            let p = (start + align) & !align;
            let e = p + layout.size();
            local.set((e, start + len));
            Some(p as *mut u8)
        })
        .ok()
        .flatten()
}

// SAFETY: every block handed out is either the system allocator's (and goes back to it) or
// a range of the arena that no other live block overlaps: the bump pointer only moves back
// over the newest block, when that block is freed or resized, and a kept block is on one
// list at most, from the time it is freed until it is handed out again.
unsafe impl GlobalAlloc for Alloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if layout.size() >= REUSE_MIN && may_take(layout.size()) && ACTIVE.load(Ordering::Acquire) {
            if let Some(p) = FREE.take(layout) {
                return p;
            }
        }
        match bump(layout) {
            Some(p) => p,
            None => System.alloc(layout),
        }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        let a = ptr as usize;
        if in_arena(a) {
            // This thread's newest block is taken back; any other of 16 bytes or more is
            // kept for reuse while the arena serves blocks (a smaller one stays: the
            // process ends soon).
            let size = layout.size();
            let newest = LOCAL
                .try_with(|l| {
                    let (next, end) = l.chunk.get();
                    if a.checked_add(size) == Some(next) {
                        l.chunk.set((a, end));
                        return true;
                    }
                    if (SMALL..REUSE_MIN).contains(&size) && ACTIVE.load(Ordering::Acquire) {
                        l.put_small(a, size);
                        return true;
                    }
                    false
                })
                .unwrap_or(false);
            if !newest && size >= REUSE_MIN && ACTIVE.load(Ordering::Acquire) {
                FREE.put(a, size);
            }
            return;
        }
        System.dealloc(ptr, layout)
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let a = ptr as usize;
        if !in_arena(a) {
            return System.realloc(ptr, layout, new_size);
        }
        // This thread's newest block grows or shrinks in place.
        let in_place = LOCAL
            .try_with(|l| {
                let local = &l.chunk;
                let (next, _) = local.get();
                let Some(e) = a.checked_add(new_size) else {
                    return false;
                };
                if a.checked_add(layout.size()) != Some(next) || !extend(local, e) {
                    return false;
                }
                local.set((e, local.get().1));
                true
            })
            .unwrap_or(false);
        if in_place {
            return ptr;
        }
        if new_size <= layout.size() {
            return ptr;
        }
        // SAFETY: `layout.align()` is a valid alignment and the caller guarantees that
        // `new_size`, rounded up to it, does not overflow.
        let new_layout = Layout::from_size_align_unchecked(new_size, layout.align());
        let p = self.alloc(new_layout);
        if !p.is_null() {
            // SAFETY: both blocks are live and at least `layout.size()` long; a new block
            // never overlaps a live one.
            std::ptr::copy_nonoverlapping(ptr, p, layout.size());
            self.dealloc(ptr, layout);
        }
        p
    }
}
