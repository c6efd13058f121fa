//! Host files as imago's storage, counting where writes to them end: QEMU's
//! `wr_highest_offset` of a file's node, which sees every write of the formats above it
//! (data and metadata).

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use imago::file::File as ImagoFile;
use imago::io_buffers::{IoVector, IoVectorMut};
use imago::storage::drivers::CommonStorageHelper;
use imago::storage::PreallocateMode;
use imago::{Storage, StorageOpenOptions};

/// Where the writes through a node ended, at the highest (shared by the node and the images
/// opened over its file).
#[derive(Debug, Clone, Default)]
pub struct WriteMark(Arc<AtomicU64>);

impl WriteMark {
    pub fn new() -> WriteMark {
        WriteMark::default()
    }

    /// A write ended at `end`.
    pub fn record(&self, end: u64) {
        self.0.fetch_max(end, Ordering::Relaxed);
    }

    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// A host file whose writes are counted in a [`WriteMark`]. A write past the length the
/// file had when opened fills a cluster the image has just allocated: QEMU writes such a
/// cluster whole (its untouched parts as zeroes), so the write counts to the cluster's end.
#[derive(Debug)]
pub struct CountedFile {
    inner: ImagoFile,
    mark: WriteMark,
    opened_len: u64,
    cluster: u64,
}

impl CountedFile {
    /// Opens `path`, counting into `mark`; `cluster`: the image's cluster size (1 for raw
    /// data).
    pub fn open_counted(
        path: &Path,
        writable: bool,
        mark: WriteMark,
        cluster: u64,
    ) -> io::Result<CountedFile> {
        let inner =
            <ImagoFile as Storage>::open(StorageOpenOptions::new().filename(path).write(writable))?;
        let opened_len = inner.size()?;
        Ok(CountedFile {
            inner,
            mark,
            opened_len,
            cluster: cluster.max(1),
        })
    }

    fn wrote(&self, offset: u64, len: u64) {
        let mut end = offset.saturating_add(len);
        if end > self.opened_len {
            end = end.div_ceil(self.cluster).saturating_mul(self.cluster);
        }
        self.mark.record(end);
    }
}

impl fmt::Display for CountedFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.inner, f)
    }
}

impl Storage for CountedFile {
    fn open(opts: StorageOpenOptions) -> io::Result<Self> {
        let inner = <ImagoFile as Storage>::open(opts)?;
        let opened_len = inner.size()?;
        Ok(CountedFile {
            inner,
            mark: WriteMark::new(),
            opened_len,
            cluster: 1,
        })
    }

    fn mem_align(&self) -> usize {
        self.inner.mem_align()
    }

    fn req_align(&self) -> usize {
        self.inner.req_align()
    }

    fn zero_align(&self) -> usize {
        self.inner.zero_align()
    }

    fn discard_align(&self) -> usize {
        self.inner.discard_align()
    }

    fn size(&self) -> io::Result<u64> {
        self.inner.size()
    }

    fn resolve_relative_path<P: AsRef<Path>>(&self, relative: P) -> io::Result<PathBuf> {
        self.inner.resolve_relative_path(relative)
    }

    fn get_filename(&self) -> Option<PathBuf> {
        self.inner.get_filename()
    }

    unsafe fn pure_readv(&self, bufv: IoVectorMut<'_>, offset: u64) -> io::Result<()> {
        // Safety: the caller's guarantees, passed on unchanged.
        unsafe { self.inner.pure_readv(bufv, offset) }
    }

    unsafe fn pure_writev(&self, bufv: IoVector<'_>, offset: u64) -> io::Result<()> {
        let len = bufv.len();
        // Safety: the caller's guarantees, passed on unchanged.
        unsafe { self.inner.pure_writev(bufv, offset) }?;
        self.wrote(offset, len);
        Ok(())
    }

    unsafe fn pure_write_zeroes(&self, offset: u64, length: u64) -> io::Result<()> {
        // Safety: the caller's guarantees, passed on unchanged.
        unsafe { self.inner.pure_write_zeroes(offset, length) }?;
        self.wrote(offset, length);
        Ok(())
    }

    unsafe fn pure_write_allocated_zeroes(&self, offset: u64, length: u64) -> io::Result<()> {
        // Safety: the caller's guarantees, passed on unchanged.
        unsafe { self.inner.pure_write_allocated_zeroes(offset, length) }?;
        self.wrote(offset, length);
        Ok(())
    }

    unsafe fn pure_discard(&self, offset: u64, length: u64) -> io::Result<()> {
        // Safety: the caller's guarantees, passed on unchanged.
        unsafe { self.inner.pure_discard(offset, length) }
    }

    fn flush(&self) -> io::Result<()> {
        self.inner.flush()
    }

    fn sync(&self) -> io::Result<()> {
        self.inner.sync()
    }

    fn settle_writes(&self) -> io::Result<()> {
        self.inner.settle_writes()
    }

    unsafe fn invalidate_cache(&self) -> io::Result<()> {
        // Safety: the caller's guarantees, passed on unchanged.
        unsafe { self.inner.invalidate_cache() }
    }

    fn get_storage_helper(&self) -> &CommonStorageHelper {
        self.inner.get_storage_helper()
    }

    fn resize(&self, new_size: u64, prealloc_mode: PreallocateMode) -> io::Result<()> {
        self.inner.resize(new_size, prealloc_mode)
    }
}
