//! Block status through a node's layers, as QEMU reports it to the jobs that copy by it:
//! from an offset, how far one kind of data goes. A run is data or zeroes and comes from one
//! layer: a qcow2 image's run of clusters that sit one after the other in its file (or of
//! zero clusters), the backing file's own run where the image has nothing, a host file's
//! data or hole (its first 4 KiB always count as data, as QEMU's file driver says of them),
//! a null node's whole disk (zeroes with `read-zeroes`). Filters and pass-through raw nodes
//! show their child's runs.

use std::os::unix::io::AsRawFd;
use std::path::Path;

use super::{BlockGraph, ChildRole, Data};
use crate::image::{Image, ImageFormat, LayerStatus};
use crate::{Error, Result};

/// What a run of the disk reads as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunKind {
    Data,
    Zero,
}

/// How much of a host file's start QEMU's file driver always reports as data.
const FILE_HEAD: u64 = 4096;

impl BlockGraph {
    /// The run of `name`'s disk that starts at `offset`: its kind and length (at least one
    /// byte, at most `max`).
    pub fn block_status(&self, name: &str, offset: u64, max: u64) -> Result<(RunKind, u64)> {
        let max = max.max(1);
        let mut cur = name;
        for _ in 0..256 {
            let node = self.node(cur)?;
            if let Some(c) = self.passes_to(node) {
                cur = c;
                continue;
            }
            return match &node.data {
                Data::Null(size, zeroes) => {
                    if offset >= *size || *zeroes {
                        Ok((RunKind::Zero, max))
                    } else {
                        Ok((RunKind::Data, max.min(size - offset)))
                    }
                }
                Data::Quorum(_) => Ok((RunKind::Data, max)),
                Data::Image(i) => {
                    let g = i
                        .read()
                        .map_err(|_| Error::generic("image lock poisoned"))?;
                    self.image_status(cur, &g, offset, max)
                }
            };
        }
        Ok((RunKind::Data, max))
    }

    fn image_status(
        &self,
        name: &str,
        img: &Image,
        offset: u64,
        max: u64,
    ) -> Result<(RunKind, u64)> {
        if offset >= img.size() {
            return Ok((RunKind::Zero, max));
        }
        let max = max.min(img.size() - offset);
        if img.format() == ImageFormat::Raw {
            return file_status(img.path(), offset, max);
        }
        let (status, n) = img.layer_status(offset, max)?;
        let n = n.clamp(1, max);
        Ok(match status {
            LayerStatus::Data => (RunKind::Data, n),
            LayerStatus::Zero => (RunKind::Zero, n),
            LayerStatus::Backing => match self.child(name, ChildRole::Backing) {
                // Where the backing file holds nothing, or ends, the disk reads as zeroes.
                Some(b) => {
                    let b = self.below_job_filters(&b);
                    let (kind, m) = self.block_status(&b, offset, n)?;
                    (kind, m.clamp(1, n))
                }
                None => (RunKind::Zero, n),
            },
        })
    }
}

/// A host file's run at `offset` (within its length): data up to the next hole, or a hole
/// up to the next data.
fn file_status(path: &Path, offset: u64, max: u64) -> Result<(RunKind, u64)> {
    let Ok(file) = std::fs::File::open(path) else {
        return Ok((RunKind::Data, max));
    };
    let len = file.metadata().map(|m| m.len()).unwrap_or(0);
    if offset >= len {
        // The tail of a partial last sector reads as zeroes.
        return Ok((RunKind::Zero, max));
    }
    let fd = file.as_raw_fd();
    let seek = |whence: libc::c_int| -> Option<u64> {
        let at = libc::off_t::try_from(offset).ok()?;
        // SAFETY: lseek on a descriptor this function owns, with no memory passed.
        let r = unsafe { libc::lseek(fd, at, whence) };
        u64::try_from(r).ok()
    };
    let data = seek(libc::SEEK_DATA).unwrap_or(len);
    let (kind, end) = if data <= offset {
        let hole = seek(libc::SEEK_HOLE).unwrap_or(len);
        (RunKind::Data, hole.max(offset + 1))
    } else if offset < FILE_HEAD {
        (RunKind::Data, data.min(FILE_HEAD))
    } else {
        (RunKind::Zero, data)
    };
    Ok((kind, (end - offset).clamp(1, max)))
}
