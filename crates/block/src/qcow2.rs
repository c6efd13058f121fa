//! The qcow2 header as stored in an image file: parsing (the bytes are untrusted) and the one
//! header edit the block layer makes itself, changing the backing file.
//!
//! Layout facts follow the published qcow2 format (big-endian header, header extensions
//! of type/length/padded data, the snapshot table and the bitmap directory).

use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::Path;

/// The four magic bytes every qcow2 file starts with.
pub const MAGIC: [u8; 4] = *b"QFI\xfb";
/// Header extension: the backing file's format name.
pub const EXT_BACKING_FORMAT: u32 = 0xe279_2aca;
/// Header extension: names of the feature bits.
pub const EXT_FEATURE_TABLE: u32 = 0x6803_f857;
/// Header extension: the bitmap directory.
pub const EXT_BITMAPS: u32 = 0x2385_2875;
/// Header extension: full disk encryption header pointer.
pub const EXT_CRYPTO: u32 = 0x0537_be77;
/// Header extension: name of the external data file.
pub const EXT_DATA_FILE: u32 = 0x4441_5441;

/// Incompatible feature bit: the image was not closed cleanly (refcounts may be stale).
pub const INCOMPAT_DIRTY: u64 = 1;
/// Incompatible feature bit: the image is corrupt.
pub const INCOMPAT_CORRUPT: u64 = 2;
/// Incompatible feature bit: guest data lives in an external data file.
pub const INCOMPAT_DATA_FILE: u64 = 4;
/// Incompatible feature bit: a compression type other than zlib is in the header.
pub const INCOMPAT_COMPRESSION: u64 = 8;
/// Incompatible feature bit: L2 entries carry subcluster bitmaps.
pub const INCOMPAT_EXTENDED_L2: u64 = 16;
/// Compatible feature bit: lazy refcounts.
pub const COMPAT_LAZY_REFCOUNTS: u64 = 1;
/// Autoclear feature bit: the external data file is a valid raw image.
pub const AUTOCLEAR_DATA_FILE_RAW: u64 = 2;

/// Largest header area (first cluster) this parser reads: the largest cluster size.
pub const MAX_HEADER_READ: usize = 2 * 1024 * 1024;
const MAX_SNAPSHOTS: u32 = 65536;
const MAX_BITMAPS: u32 = 65535;

/// Why a header could not be understood.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HeaderError {
    #[error("Image is not in qcow2 format")]
    NotQcow2,
    #[error("Unsupported qcow2 version {0}")]
    Version(u32),
    #[error("qcow2 header truncated")]
    Truncated,
    #[error("{0}")]
    Invalid(String),
}

/// One header extension as found (unknown ones are kept so an edit can write them back).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Extension {
    pub kind: u32,
    pub data: Vec<u8>,
}

/// An internal snapshot's table entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot {
    pub id: String,
    pub name: String,
    pub date_sec: u32,
    pub date_nsec: u32,
    pub vm_clock_nsec: u64,
    pub vm_state_size: u64,
    pub icount: Option<u64>,
    pub disk_size: Option<u64>,
}

/// A persistent dirty bitmap's directory entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bitmap {
    pub name: String,
    pub granularity: u64,
    pub in_use: bool,
    pub auto: bool,
}

/// The parsed header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    pub version: u32,
    pub backing_file_offset: u64,
    pub backing_file_size: u32,
    pub cluster_bits: u32,
    pub size: u64,
    pub crypt_method: u32,
    pub l1_size: u32,
    pub l1_table_offset: u64,
    pub refcount_table_offset: u64,
    pub refcount_table_clusters: u32,
    pub nb_snapshots: u32,
    pub snapshots_offset: u64,
    pub incompatible_features: u64,
    pub compatible_features: u64,
    pub autoclear_features: u64,
    pub refcount_order: u32,
    pub header_length: u32,
    pub compression_type: u8,
    pub extensions: Vec<Extension>,
    /// The backing file name as stored (not resolved against the image's directory).
    pub backing_file: Option<String>,
}

fn be32(b: &[u8], at: usize) -> Result<u32, HeaderError> {
    let s = b.get(at..at + 4).ok_or(HeaderError::Truncated)?;
    Ok(u32::from_be_bytes([s[0], s[1], s[2], s[3]]))
}

fn be64(b: &[u8], at: usize) -> Result<u64, HeaderError> {
    let hi = be32(b, at)? as u64;
    let lo = be32(b, at + 4)? as u64;
    Ok(hi << 32 | lo)
}

fn be16(b: &[u8], at: usize) -> Result<u16, HeaderError> {
    let s = b.get(at..at + 2).ok_or(HeaderError::Truncated)?;
    Ok(u16::from_be_bytes([s[0], s[1]]))
}

fn align8(n: usize) -> usize {
    n.div_ceil(8) * 8
}

impl Header {
    /// Parses the header from the first bytes of a file (at least the first cluster's worth
    /// where extensions and the backing name live; fewer bytes give `Truncated` if needed).
    pub fn parse(b: &[u8]) -> Result<Header, HeaderError> {
        if b.len() < 4 || b[..4] != MAGIC {
            return Err(HeaderError::NotQcow2);
        }
        let version = be32(b, 4)?;
        if version != 2 && version != 3 {
            return Err(HeaderError::Version(version));
        }
        let cluster_bits = be32(b, 20)?;
        if !(9..=21).contains(&cluster_bits) {
            return Err(HeaderError::Invalid(format!(
                "Unsupported cluster size: 2^{cluster_bits}"
            )));
        }
        let mut h = Header {
            version,
            backing_file_offset: be64(b, 8)?,
            backing_file_size: be32(b, 16)?,
            cluster_bits,
            size: be64(b, 24)?,
            crypt_method: be32(b, 32)?,
            l1_size: be32(b, 36)?,
            l1_table_offset: be64(b, 40)?,
            refcount_table_offset: be64(b, 48)?,
            refcount_table_clusters: be32(b, 56)?,
            nb_snapshots: be32(b, 60)?,
            snapshots_offset: be64(b, 64)?,
            incompatible_features: 0,
            compatible_features: 0,
            autoclear_features: 0,
            refcount_order: 4,
            header_length: 72,
            compression_type: 0,
            extensions: Vec::new(),
            backing_file: None,
        };
        if version == 3 {
            h.incompatible_features = be64(b, 72)?;
            h.compatible_features = be64(b, 80)?;
            h.autoclear_features = be64(b, 88)?;
            h.refcount_order = be32(b, 96)?;
            h.header_length = be32(b, 100)?;
            if h.header_length < 104 {
                return Err(HeaderError::Invalid("qcow2 header too short".into()));
            }
            if h.refcount_order > 6 {
                return Err(HeaderError::Invalid(
                    "Refcount width must be a power of two and may not exceed 64 bits".into(),
                ));
            }
            if h.header_length > 104 {
                h.compression_type = *b.get(104).ok_or(HeaderError::Truncated)?;
            }
        }
        let cluster_size = 1usize << cluster_bits;
        let header_length = h.header_length as usize;
        if header_length > cluster_size {
            return Err(HeaderError::Invalid(
                "qcow2 header exceeds cluster size".into(),
            ));
        }
        // Extensions: until the end marker, the cluster's end or the backing file name.
        let limit = if h.backing_file_offset != 0 {
            (h.backing_file_offset as usize).min(cluster_size)
        } else {
            cluster_size
        };
        let mut at = align8(header_length);
        while at + 8 <= limit {
            let kind = be32(b, at)?;
            let len = be32(b, at + 4)? as usize;
            if kind == 0 {
                break;
            }
            let start = at + 8;
            let end = start
                .checked_add(len)
                .filter(|&e| e <= limit)
                .ok_or_else(|| HeaderError::Invalid("Invalid header extension length".into()))?;
            let data = b.get(start..end).ok_or(HeaderError::Truncated)?.to_vec();
            h.extensions.push(Extension { kind, data });
            at = align8(end);
        }
        if h.backing_file_offset != 0 {
            let off = h.backing_file_offset as usize;
            let len = h.backing_file_size as usize;
            if len > 1023 || !off.checked_add(len).is_some_and(|e| e <= cluster_size) {
                return Err(HeaderError::Invalid("Backing file name too long".into()));
            }
            let name = b.get(off..off + len).ok_or(HeaderError::Truncated)?;
            h.backing_file = Some(String::from_utf8_lossy(name).into_owned());
        }
        Ok(h)
    }

    pub fn cluster_size(&self) -> u64 {
        1u64 << self.cluster_bits
    }

    pub fn extension(&self, kind: u32) -> Option<&[u8]> {
        self.extensions
            .iter()
            .find(|e| e.kind == kind)
            .map(|e| e.data.as_slice())
    }

    /// The backing format named in the header extension, if any.
    pub fn backing_format(&self) -> Option<String> {
        self.extension(EXT_BACKING_FORMAT).map(|d| {
            String::from_utf8_lossy(d)
                .trim_end_matches('\0')
                .to_string()
        })
    }

    /// The external data file's name, if any.
    pub fn data_file(&self) -> Option<String> {
        self.extension(EXT_DATA_FILE).map(|d| {
            String::from_utf8_lossy(d)
                .trim_end_matches('\0')
                .to_string()
        })
    }

    pub fn dirty(&self) -> bool {
        self.incompatible_features & INCOMPAT_DIRTY != 0
    }

    pub fn corrupt(&self) -> bool {
        self.incompatible_features & INCOMPAT_CORRUPT != 0
    }

    pub fn extended_l2(&self) -> bool {
        self.incompatible_features & INCOMPAT_EXTENDED_L2 != 0
    }

    pub fn lazy_refcounts(&self) -> bool {
        self.compatible_features & COMPAT_LAZY_REFCOUNTS != 0
    }

    pub fn refcount_bits(&self) -> u64 {
        1u64 << self.refcount_order
    }

    /// "0.10" for version 2, "1.1" for version 3, as QEMU names the compatibility levels.
    pub fn compat(&self) -> &'static str {
        if self.version == 2 {
            "0.10"
        } else {
            "1.1"
        }
    }

    pub fn compression_type_name(&self) -> &'static str {
        if self.compression_type == 1 {
            "zstd"
        } else {
            "zlib"
        }
    }

    /// Where the bitmap directory is and how many entries it has, from the bitmaps extension.
    pub fn bitmap_directory(&self) -> Option<(u32, u64, u64)> {
        let d = self.extension(EXT_BITMAPS)?;
        Some((be32(d, 0).ok()?, be64(d, 8).ok()?, be64(d, 16).ok()?))
    }

    /// Serialises the header with a new backing file (or none): the fixed header unchanged
    /// but for the backing fields, the extensions with the backing format replaced, then the
    /// name. Fails when it no longer fits in the first cluster.
    /// The feature name table is informative only: it is left out when nothing else fits.
    pub fn with_backing(
        &self,
        backing: Option<(&str, &str)>,
        original: &[u8],
    ) -> Result<Vec<u8>, HeaderError> {
        match self.serialise(backing, original, true) {
            Err(HeaderError::Invalid(_)) if self.extension(EXT_FEATURE_TABLE).is_some() => {
                self.serialise(backing, original, false)
            }
            r => r,
        }
    }

    /// Serialises the header with its extensions and backing file as they are now (after a
    /// caller changed the extension list).
    pub fn serialise_as_is(&self, original: &[u8]) -> Result<Vec<u8>, HeaderError> {
        let exts: Vec<(u32, &[u8])> = self
            .extensions
            .iter()
            .map(|e| (e.kind, e.data.as_slice()))
            .collect();
        self.assemble(original, exts, self.backing_file.as_deref())
    }

    fn serialise(
        &self,
        backing: Option<(&str, &str)>,
        original: &[u8],
        feature_table: bool,
    ) -> Result<Vec<u8>, HeaderError> {
        let mut exts: Vec<(u32, &[u8])> = self
            .extensions
            .iter()
            .filter(|e| e.kind != EXT_BACKING_FORMAT)
            .filter(|e| feature_table || e.kind != EXT_FEATURE_TABLE)
            .map(|e| (e.kind, e.data.as_slice()))
            .collect();
        if let Some((_, fmt)) = backing {
            exts.insert(0, (EXT_BACKING_FORMAT, fmt.as_bytes()));
        }
        self.assemble(original, exts, backing.map(|(name, _)| name))
    }

    /// The fixed header from `original`, then the extensions, the end marker and the backing
    /// file name, with the backing fields pointing at the name.
    fn assemble(
        &self,
        original: &[u8],
        exts: Vec<(u32, &[u8])>,
        backing_name: Option<&str>,
    ) -> Result<Vec<u8>, HeaderError> {
        let header_length = self.header_length as usize;
        let mut out = original
            .get(..header_length)
            .ok_or(HeaderError::Truncated)?
            .to_vec();
        out.resize(align8(header_length), 0);
        for (kind, data) in exts {
            out.extend_from_slice(&kind.to_be_bytes());
            out.extend_from_slice(&(data.len() as u32).to_be_bytes());
            out.extend_from_slice(data);
            out.resize(align8(out.len()), 0);
        }
        out.extend_from_slice(&[0u8; 8]);
        let (off, len) = match backing_name {
            Some(name) => {
                if name.len() > 1023 {
                    return Err(HeaderError::Invalid("Backing file name too long".into()));
                }
                let off = out.len();
                out.extend_from_slice(name.as_bytes());
                (off as u64, name.len() as u32)
            }
            None => (0, 0),
        };
        if out.len() as u64 > self.cluster_size() {
            return Err(HeaderError::Invalid(
                "Header extensions and backing file name do not fit in the first cluster".into(),
            ));
        }
        out[8..16].copy_from_slice(&off.to_be_bytes());
        out[16..20].copy_from_slice(&len.to_be_bytes());
        Ok(out)
    }
}

fn read_at(f: &mut File, off: u64, len: usize) -> std::io::Result<Vec<u8>> {
    let mut buf = vec![0u8; len];
    f.seek(SeekFrom::Start(off))?;
    let mut got = 0;
    while got < len {
        let n = f.read(&mut buf[got..])?;
        if n == 0 {
            break;
        }
        got += n;
    }
    buf.truncate(got);
    Ok(buf)
}

/// Reads the first cluster (at most [`MAX_HEADER_READ`] bytes) of a file.
pub fn read_header_area(path: &Path) -> std::io::Result<Vec<u8>> {
    let mut f = File::open(path)?;
    read_at(&mut f, 0, MAX_HEADER_READ)
}

/// Parses the snapshot table a header points at; `file` holds the bytes from the table's start.
pub fn parse_snapshots(h: &Header, file: &[u8]) -> Result<Vec<Snapshot>, HeaderError> {
    if h.nb_snapshots > MAX_SNAPSHOTS {
        return Err(HeaderError::Invalid("Too many snapshots".into()));
    }
    let mut out = Vec::new();
    let mut at = 0usize;
    for _ in 0..h.nb_snapshots {
        let id_len = be16(file, at + 12)? as usize;
        let name_len = be16(file, at + 14)? as usize;
        let date_sec = be32(file, at + 16)?;
        let date_nsec = be32(file, at + 20)?;
        let vm_clock_nsec = be64(file, at + 24)?;
        let vm_state_small = be32(file, at + 32)? as u64;
        let extra = be32(file, at + 36)? as usize;
        let extra_at = at + 40;
        let get = |o: usize| {
            (o + 8 <= extra)
                .then(|| be64(file, extra_at + o).ok())
                .flatten()
        };
        let vm_state_size = get(0).unwrap_or(vm_state_small);
        let disk_size = get(8);
        let icount = get(16).filter(|&v| v != u64::MAX);
        let id_at = extra_at + extra;
        let id = file
            .get(id_at..id_at + id_len)
            .ok_or(HeaderError::Truncated)?;
        let name = file
            .get(id_at + id_len..id_at + id_len + name_len)
            .ok_or(HeaderError::Truncated)?;
        out.push(Snapshot {
            id: String::from_utf8_lossy(id).into_owned(),
            name: String::from_utf8_lossy(name).into_owned(),
            date_sec,
            date_nsec,
            vm_clock_nsec,
            vm_state_size,
            icount,
            disk_size,
        });
        at = align8(id_at + id_len + name_len);
    }
    Ok(out)
}

/// Parses the bitmap directory a header's bitmaps extension points at; `file` holds the bytes
/// from the directory's start.
pub fn parse_bitmaps(h: &Header, file: &[u8]) -> Result<Vec<Bitmap>, HeaderError> {
    let Some((count, _size, _offset)) = h.bitmap_directory() else {
        return Ok(Vec::new());
    };
    if count > MAX_BITMAPS {
        return Err(HeaderError::Invalid("Too many bitmaps".into()));
    }
    let mut at = 0usize;
    let mut out = Vec::new();
    for _ in 0..count {
        let flags = be32(file, at + 12)?;
        let granularity_bits = *file.get(at + 17).ok_or(HeaderError::Truncated)?;
        let name_len = be16(file, at + 18)? as usize;
        let extra = be32(file, at + 20)? as usize;
        let name_at = at + 24 + extra;
        let name = file
            .get(name_at..name_at + name_len)
            .ok_or(HeaderError::Truncated)?;
        if granularity_bits > 63 {
            return Err(HeaderError::Invalid(
                "Bitmap granularity out of range".into(),
            ));
        }
        out.push(Bitmap {
            name: String::from_utf8_lossy(name).into_owned(),
            granularity: 1u64 << granularity_bits,
            in_use: flags & 1 != 0,
            auto: flags & 2 != 0,
        });
        at = align8(name_at + name_len);
    }
    Ok(out)
}

/// Reads a byte range of a file for the snapshot table or bitmap directory (bounded).
pub fn read_table(path: &Path, offset: u64, len: usize) -> std::io::Result<Vec<u8>> {
    let mut f = File::open(path)?;
    read_at(&mut f, offset, len.min(MAX_HEADER_READ * 8))
}

/// Rewrites the backing file name and format of a qcow2 file (no handle may be open on it).
pub fn change_backing_file(path: &Path, backing: Option<(&str, &str)>) -> Result<(), crate::Error> {
    let area = read_header_area(path)?;
    let h = Header::parse(&area)?;
    let bytes = h.with_backing(backing, &area)?;
    let mut f = std::fs::OpenOptions::new().write(true).open(path)?;
    f.seek(SeekFrom::Start(0))?;
    f.write_all(&bytes)?;
    f.sync_data()?;
    Ok(())
}
