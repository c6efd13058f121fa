//! Image files: what a file says about itself (`qemu-img info`'s facts), creating raw and
//! qcow2 files (what `blockdev-create` does), overlays, resizing, and data access through
//! imago with the backing chain the file names.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// A qcow2 image's cluster size when none is asked for.
pub const DEFAULT_CLUSTER_SIZE: u64 = 65536;

use imago::file::File as ImagoFile;
use imago::qcow2::Qcow2;
use imago::raw::Raw;
use imago::{
    FormatAccess, FormatCreateBuilder, FormatDriverBuilder, PermissiveImplicitOpenGate,
    ShallowMapping,
};

use crate::counted::{CountedFile, WriteMark};
use crate::qcow2::{self, Header};
use crate::{Error, Result};

/// The image formats with real data behind them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ImageFormat {
    Raw,
    Qcow2,
}

impl ImageFormat {
    /// QEMU's driver name.
    pub fn name(self) -> &'static str {
        match self {
            ImageFormat::Raw => "raw",
            ImageFormat::Qcow2 => "qcow2",
        }
    }

    pub fn from_name(name: &str) -> Option<ImageFormat> {
        match name {
            "raw" => Some(ImageFormat::Raw),
            "qcow2" => Some(ImageFormat::Qcow2),
            _ => None,
        }
    }
}

/// Guesses the format from the file's first bytes (qcow2's magic, else raw), as QEMU probes.
pub fn probe_format(path: &Path) -> Result<ImageFormat> {
    use std::io::Read;
    let mut f = std::fs::File::open(path).map_err(|e| open_error(path, e))?;
    let mut magic = [0u8; 4];
    let mut got = 0;
    while got < 4 {
        let n = f.read(&mut magic[got..])?;
        if n == 0 {
            break;
        }
        got += n;
    }
    Ok(if got == 4 && magic == qcow2::MAGIC {
        ImageFormat::Qcow2
    } else {
        ImageFormat::Raw
    })
}

/// The C library's words for an I/O error (Rust's " (os error N)" left out).
pub fn os_reason(e: &std::io::Error) -> String {
    let s = e.to_string();
    match s.rfind(" (os error ") {
        Some(i) if s.ends_with(')') => s[..i].to_string(),
        _ => s,
    }
}

/// What QEMU's driver `format` says of a file that opened but is not an image of that
/// format (`None`: the file's header is one of that format, or the format reads any file).
/// Only the image formats whose data the block layer does not read are judged here (raw and
/// qcow2 open for real); `shown` is the file's name as the error shows it. Each driver looks
/// at its own header fields, in its own order, and words its refusal its own way.
pub fn foreign_format_error(path: &Path, shown: &str, format: &str) -> Option<String> {
    use std::io::{Read, Seek, SeekFrom};
    let mut f = std::fs::File::open(path).ok()?;
    // The block layer sees a file's length in whole sectors.
    let size = f.metadata().ok()?.len().div_ceil(512) * 512;
    let mut head = vec![0u8; 1024];
    let mut got = 0;
    while got < head.len() {
        match f.read(&mut head[got..]) {
            Ok(0) | Err(_) => break,
            Ok(n) => got += n,
        }
    }
    // Bytes past the end of the file read as zeroes.
    let be32 = |o: usize| u32::from_be_bytes([head[o], head[o + 1], head[o + 2], head[o + 3]]);
    let le32 = |o: usize| u32::from_le_bytes([head[o], head[o + 1], head[o + 2], head[o + 3]]);
    let le64 = |o: usize| {
        let mut b = [0u8; 8];
        b.copy_from_slice(&head[o..o + 8]);
        u64::from_le_bytes(b)
    };
    let starts = |m: &[u8]| head.starts_with(m);
    match format {
        "vmdk" => {
            if size == 0 {
                return Some("File is too small, not a valid image".into());
            }
            let text = b"# Disk DescriptorFile";
            (!(starts(b"KDMV") || starts(b"COWD") || starts(text)))
                .then(|| "invalid VMDK image descriptor".into())
        }
        "vdi" => {
            const MAX: u64 = 0x1_ffff_f800_0000;
            let disk_size = le64(368);
            if disk_size > MAX {
                return Some(format!(
                    "Unsupported VDI image size (size is 0x{disk_size:x}, max supported is 0x{MAX:x})"
                ));
            }
            let sig = le32(64);
            (sig != 0xbeda_107f)
                .then(|| format!("Image not in VDI format (bad signature {sig:08x})"))
        }
        "qed" => (!starts(b"QED\0")).then(|| "Image not in QED format".into()),
        "vhdx" => {
            (!starts(b"vhdxfile")).then(|| format!("Could not open '{shown}': Invalid argument"))
        }
        "qcow" => {
            if !starts(b"QFI\xfb") {
                return Some("Image not in qcow format".into());
            }
            let v = be32(4);
            (v != 1).then(|| format!("qcow (v1) does not support qcow version {v}"))
        }
        "vpc" => {
            if size < 512 {
                return Some("File too small for a VHD header".into());
            }
            if starts(b"conectix") {
                return None;
            }
            // A fixed-size image has its footer at the end only.
            let mut tail = [0u8; 8];
            let found = f.seek(SeekFrom::Start(size - 512)).is_ok()
                && f.read_exact(&mut tail).is_ok()
                && &tail == b"conectix";
            (!found).then(|| "invalid VPC image".into())
        }
        "parallels" => (!(starts(b"WithoutFreeSpace") || starts(b"WithouFreSpacExt")))
            .then(|| "Image not in Parallels format".into()),
        "dmg" => {
            if size < 512 {
                return Some("dmg file must be at least 512 bytes long".into());
            }
            let mut tail = [0u8; 4];
            let found = f.seek(SeekFrom::Start(size - 512)).is_ok()
                && f.read_exact(&mut tail).is_ok()
                && &tail == b"koly";
            (!found).then(|| "Could not locate UDIF trailer in dmg file".into())
        }
        "bochs" => (!starts(b"Bochs Virtual HD Image")).then(|| "Image not in Bochs format".into()),
        "cloop" => {
            let bs = be32(128);
            if bs == 0 {
                Some("block_size cannot be zero".into())
            } else if bs % 512 != 0 {
                Some(format!("block_size {bs} must be a multiple of 512"))
            } else if bs > 64 << 20 {
                Some(format!("block_size {bs} must be 64 MB or less"))
            } else {
                None
            }
        }
        "host_device" | "host_cdrom" => Some(format!(
            "'{format}' driver requires '{shown}' to be either a character or block device"
        )),
        "luks" => Some("Parameter 'key-secret' is required for cipher".into()),
        _ => None,
    }
}

/// QEMU's words for a file that cannot be opened.
pub fn open_error(path: &Path, e: std::io::Error) -> Error {
    Error::generic(format!(
        "Could not open '{}': {}",
        path.display(),
        os_reason(&e)
    ))
}

/// QEMU's words for an image file that cannot be created (a missing directory, a directory
/// in its place, no right to write there).
pub fn create_error(path: &Path, e: std::io::Error) -> Error {
    Error::generic(format!(
        "Could not create '{}': {}",
        path.display(),
        os_reason(&e)
    ))
}

/// Qcow2's format-specific facts (`ImageInfoSpecificQCow2`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Qcow2Info {
    pub compat: String,
    pub compression_type: String,
    /// The next three are only reported for version 3 ("1.1") images.
    pub lazy_refcounts: Option<bool>,
    pub refcount_bits: u64,
    pub corrupt: Option<bool>,
    pub extended_l2: Option<bool>,
    pub data_file: Option<String>,
    pub data_file_raw: Option<bool>,
    pub bitmaps: Vec<qcow2::Bitmap>,
}

/// What an image file says about itself (`ImageInfo`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageInfo {
    pub filename: String,
    pub format: ImageFormat,
    pub virtual_size: u64,
    pub actual_size: Option<u64>,
    pub cluster_size: Option<u64>,
    pub dirty_flag: bool,
    /// Whether the driver tells facts of its kind (a null node does not, nor a raw node
    /// over one): without them QEMU shows no `dirty-flag`.
    pub has_info: bool,
    pub encrypted: bool,
    pub backing_filename: Option<String>,
    pub full_backing_filename: Option<String>,
    pub backing_filename_format: Option<String>,
    pub snapshots: Vec<qcow2::Snapshot>,
    pub qcow2: Option<Qcow2Info>,
}

/// Resolves a backing file name against the directory of the image that names it, as QEMU
/// does: absolute names and names with a protocol prefix (`json:{…}`, `nbd:…`: a colon
/// before any slash) stay, relative ones are joined to the image's directory.
pub fn full_backing_path(image: &str, backing: &str) -> String {
    let protocol = backing
        .find(':')
        .is_some_and(|colon| !backing[..colon].contains('/'));
    if backing.starts_with('/') || protocol {
        return backing.to_string();
    }
    match image.rfind('/') {
        Some(i) => format!("{}{}", &image[..=i], backing),
        None => backing.to_string(),
    }
}

/// Reads an image file's facts. With `format` None the format is probed.
pub fn image_info(path: &Path, format: Option<ImageFormat>) -> Result<ImageInfo> {
    let meta = std::fs::metadata(path).map_err(|e| open_error(path, e))?;
    let format = match format {
        Some(f) => f,
        None => probe_format(path)?,
    };
    let filename = path.to_string_lossy().into_owned();
    let actual_size = Some(meta.blocks() * 512);
    match format {
        // QEMU counts a file's length in whole 512-byte sectors.
        ImageFormat::Raw => Ok(ImageInfo {
            filename,
            format,
            virtual_size: meta.len().div_ceil(512) * 512,
            actual_size,
            cluster_size: None,
            dirty_flag: false,
            has_info: true,
            encrypted: false,
            backing_filename: None,
            full_backing_filename: None,
            backing_filename_format: None,
            snapshots: Vec::new(),
            qcow2: None,
        }),
        ImageFormat::Qcow2 => {
            let area = qcow2::read_header_area(path)?;
            let h = Header::parse(&area)?;
            let snapshots = if h.nb_snapshots > 0 {
                let want = (h.nb_snapshots as usize).saturating_mul(1024) + 65536;
                let table = qcow2::read_table(path, h.snapshots_offset, want)?;
                qcow2::parse_snapshots(&h, &table)?
            } else {
                Vec::new()
            };
            let bitmaps = match h.bitmap_directory() {
                Some((_, size, offset)) if size > 0 => {
                    let dir = qcow2::read_table(path, offset, size as usize)?;
                    qcow2::parse_bitmaps(&h, &dir)?
                }
                _ => Vec::new(),
            };
            let v3 = h.version >= 3;
            let full = h
                .backing_file
                .as_deref()
                .map(|b| full_backing_path(&filename, b));
            Ok(ImageInfo {
                virtual_size: h.size,
                actual_size,
                cluster_size: Some(h.cluster_size()),
                dirty_flag: h.dirty(),
                has_info: true,
                encrypted: h.crypt_method != 0,
                backing_filename: h.backing_file.clone(),
                full_backing_filename: full,
                backing_filename_format: h.backing_format(),
                snapshots,
                qcow2: Some(Qcow2Info {
                    compat: h.compat().to_string(),
                    compression_type: h.compression_type_name().to_string(),
                    lazy_refcounts: v3.then(|| h.lazy_refcounts()),
                    refcount_bits: h.refcount_bits(),
                    corrupt: v3.then(|| h.corrupt()),
                    extended_l2: v3.then(|| h.extended_l2()),
                    data_file: h.data_file(),
                    data_file_raw: h
                        .data_file()
                        .map(|_| h.autoclear_features & qcow2::AUTOCLEAR_DATA_FILE_RAW != 0),
                    bitmaps,
                }),
                filename,
                format,
            })
        }
    }
}

/// The image and every backing file below it, top first (at most 256 deep).
pub fn backing_chain(path: &Path, format: Option<ImageFormat>) -> Result<Vec<ImageInfo>> {
    let mut out = vec![image_info(path, format)?];
    while let Some(last) = out.last() {
        let Some(full) = last.full_backing_filename.clone() else {
            break;
        };
        if out.len() >= 256 {
            return Err(Error::generic("Backing chain too deep"));
        }
        let fmt = last
            .backing_filename_format
            .as_deref()
            .and_then(ImageFormat::from_name);
        out.push(image_info(Path::new(&full), fmt)?);
    }
    Ok(out)
}

/// What to create (`BlockdevCreateOptions` for file+raw and qcow2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CreateOptions {
    pub format: ImageFormat,
    pub size: u64,
    /// qcow2 only; 64 KiB when absent.
    pub cluster_size: Option<u64>,
    /// qcow2 only; 16 when absent.
    pub refcount_bits: Option<u64>,
    /// qcow2 only: the backing file name written into the header, as given.
    pub backing_file: Option<String>,
    pub backing_format: Option<ImageFormat>,
}

impl CreateOptions {
    pub fn new(format: ImageFormat, size: u64) -> CreateOptions {
        CreateOptions {
            format,
            size,
            cluster_size: None,
            refcount_bits: None,
            backing_file: None,
            backing_format: None,
        }
    }
}

/// The checks of the options themselves, which come before the image is opened: a qcow2
/// image's cluster size, size and refcount width.
pub fn check_create_options(opts: &CreateOptions) -> Result<()> {
    if opts.format != ImageFormat::Qcow2 {
        return Ok(());
    }
    let cluster = opts.cluster_size.unwrap_or(DEFAULT_CLUSTER_SIZE);
    if !cluster.is_power_of_two() || !(512..=2 * 1024 * 1024).contains(&cluster) {
        return Err(Error::generic(
            "Cluster size must be a power of two between 512 and 2048k",
        ));
    }
    if opts.size % 512 != 0 {
        return Err(Error::generic("Image size must be a multiple of 512 bytes"));
    }
    let refcount = opts.refcount_bits.unwrap_or(16);
    if !refcount.is_power_of_two() || refcount > 64 {
        return Err(Error::generic(
            "Refcount width must be a power of two and may not exceed 64 bits",
        ));
    }
    Ok(())
}

/// Creates (or overwrites) an image file.
pub fn create(path: &Path, opts: &CreateOptions) -> Result<()> {
    match opts.format {
        ImageFormat::Raw => {
            let f = std::fs::OpenOptions::new()
                .create(true)
                .write(true)
                .truncate(true)
                .open(path)
                .map_err(|e| create_error(path, e))?;
            f.set_len(opts.size)?;
            Ok(())
        }
        ImageFormat::Qcow2 => create_qcow2(path, opts, qcow2_backing(path, opts), 0).map(|_| ()),
    }
}

/// The backing file name and format a new qcow2 image's header records (the format probed
/// where not given).
fn qcow2_backing(path: &Path, opts: &CreateOptions) -> Option<(String, String)> {
    opts.backing_file.as_ref().map(|b| {
        let fmt = match opts.backing_format {
            Some(f) => f,
            None => probe_format(Path::new(&full_backing_path(&path.to_string_lossy(), b)))
                .unwrap_or(ImageFormat::Raw),
        };
        (b.clone(), fmt.name().to_string())
    })
}

/// Creates an image in an existing file (`blockdev-create` over a node): as [`create`], but a
/// qcow2 image leaves the file as long as it was where that is longer. Returns where the
/// image written ends (a raw image: its size).
pub fn create_in_place(path: &Path, opts: &CreateOptions) -> Result<u64> {
    let old = std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
    match opts.format {
        ImageFormat::Qcow2 => create_qcow2(path, opts, qcow2_backing(path, opts), old),
        ImageFormat::Raw => create(path, opts).map(|()| opts.size),
    }
}

/// Creates a qcow2 image with `backing` (its name and format as the header records them).
/// A file that is longer keeps its length (`keep_length`: what it had, when QEMU writes the
/// image into an existing file).
fn create_qcow2(
    path: &Path,
    opts: &CreateOptions,
    backing: Option<(String, String)>,
    keep_length: u64,
) -> Result<u64> {
    check_create_options(opts)?;
    let cluster = opts.cluster_size.unwrap_or(DEFAULT_CLUSTER_SIZE);
    let refcount = opts.refcount_bits.unwrap_or(16);
    let f = std::fs::OpenOptions::new()
        .create(true)
        .read(true)
        .write(true)
        .truncate(true)
        .open(path)
        .map_err(|e| create_error(path, e))?;
    let storage = ImagoFile::from_open_file(
        f,
        imago::StorageOpenOptions::new().filename(path).write(true),
    )?;
    let mut builder = Qcow2::<ImagoFile>::create_builder(storage)
        .size(opts.size)
        .cluster_size(cluster as usize)
        .refcount_width(refcount as usize);
    if let Some((name, format)) = backing {
        builder = builder.backing(name, format);
    }
    builder.create()?;
    fit_l1_table(path, opts.size, cluster, keep_length)
}

/// Gives a new qcow2 image the L1 table QEMU gives it: as many entries as its size needs,
/// written without the rest of their cluster (the file ends where they end, unless it was
/// longer already: `keep_length`). Returns where the image written ends.
fn fit_l1_table(path: &Path, size: u64, cluster: u64, keep_length: u64) -> Result<u64> {
    use std::io::{Read, Seek, SeekFrom, Write};
    let mut f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .map_err(|e| open_error(path, e))?;
    let mut header = [0u8; 48];
    f.read_exact(&mut header)?;
    let l1_size = u32::from_be_bytes([header[36], header[37], header[38], header[39]]);
    let mut offset = [0u8; 8];
    offset.copy_from_slice(&header[40..48]);
    let l1_offset = u64::from_be_bytes(offset);
    // Each L1 entry maps an L2 table of a cluster's worth of 8-byte entries.
    let per_entry = cluster.saturating_mul(cluster / 8).max(1);
    let needed = u32::try_from(size.div_ceil(per_entry)).unwrap_or(u32::MAX);
    if needed == 0 || needed > l1_size || l1_offset == 0 {
        let end = f.metadata()?.len();
        if keep_length > end {
            f.set_len(keep_length)?;
        }
        return Ok(end);
    }
    f.seek(SeekFrom::Start(36))?;
    f.write_all(&needed.to_be_bytes())?;
    let end = l1_offset + u64::from(needed) * 8;
    f.set_len(end.max(keep_length))?;
    Ok(end)
}

/// Creates a qcow2 overlay of `size` over a backing that is no image file (a null node),
/// named and of the driver as given: what `blockdev-snapshot-sync` makes of such a node.
pub fn create_overlay_over(overlay: &Path, backing: &str, driver: &str, size: u64) -> Result<()> {
    let opts = CreateOptions::new(ImageFormat::Qcow2, size);
    create_qcow2(
        overlay,
        &opts,
        Some((backing.to_string(), driver.to_string())),
        0,
    )
    .map(|_| ())
}

/// Creates a qcow2 overlay whose backing file is `backing` (named as given, format recorded),
/// of the backing image's size: what `blockdev-snapshot-sync` makes.
pub fn create_overlay(overlay: &Path, backing: &str, backing_format: ImageFormat) -> Result<()> {
    let full = full_backing_path(&overlay.to_string_lossy(), backing);
    let size = image_info(Path::new(&full), Some(backing_format))?.virtual_size;
    let mut opts = CreateOptions::new(ImageFormat::Qcow2, size);
    opts.backing_file = Some(backing.to_string());
    opts.backing_format = Some(backing_format);
    create(overlay, &opts)
}

/// An open image with its backing chain (backing files opened read-only).
pub struct Image {
    path: PathBuf,
    format: ImageFormat,
    writable: bool,
    access: FormatAccess<CountedFile>,
    /// A qcow2 image whose own structures the refcounts do not count: writes fail (see
    /// `qcow2_file::structures_counted`).
    broken: bool,
    /// A qcow2 image's cluster size (0 for raw).
    cluster: u64,
}

/// A qcow2 image's cluster size from its header (0 for raw or unreadable).
fn cluster_of(path: &Path, format: ImageFormat) -> u64 {
    match format {
        ImageFormat::Raw => 0,
        ImageFormat::Qcow2 => image_info(path, Some(ImageFormat::Qcow2))
            .ok()
            .and_then(|i| i.cluster_size)
            .unwrap_or(DEFAULT_CLUSTER_SIZE),
    }
}

/// Whether a writable image of `format` at `path` must refuse writes.
fn broken(path: &Path, format: ImageFormat, writable: bool) -> bool {
    writable && format == ImageFormat::Qcow2 && !crate::qcow2_file::structures_counted(path)
}

/// What a write to a broken image fails with (QEMU's EIO).
fn io_error() -> Error {
    Error::generic("Input/output error")
}

impl std::fmt::Debug for Image {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Image")
            .field("path", &self.path)
            .field("format", &self.format)
            .field("writable", &self.writable)
            .finish()
    }
}

/// What one layer says of a run of its disk ([`Image::layer_status`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LayerStatus {
    Data,
    Zero,
    /// The backing file's data shows through.
    Backing,
}

/// How to open an image with an explicit backing chain (the graph's, not the header's).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainSpec {
    pub path: PathBuf,
    pub format: ImageFormat,
    /// For qcow2: the backing below (None: no backing at all).
    pub backing: Option<Box<ChainSpec>>,
}

fn open_access(
    path: &Path,
    format: ImageFormat,
    writable: bool,
    backing: Option<&ChainSpec>,
    depth: u32,
    mark: WriteMark,
) -> Result<FormatAccess<CountedFile>> {
    if depth > 256 {
        return Err(Error::generic("Backing chain too deep"));
    }
    std::fs::metadata(path).map_err(|e| open_error(path, e))?;
    let gate = PermissiveImplicitOpenGate::default();
    Ok(match format {
        ImageFormat::Raw => {
            let file = CountedFile::open_counted(path, writable, mark, 1)?;
            FormatAccess::new(
                Raw::<CountedFile>::builder(file)
                    .write(writable)
                    .open(gate)?,
            )
        }
        ImageFormat::Qcow2 => {
            let b = match backing {
                Some(spec) => Some(open_access(
                    &spec.path,
                    spec.format,
                    false,
                    spec.backing.as_deref(),
                    depth + 1,
                    WriteMark::new(),
                )?),
                None => None,
            };
            let cluster = image_info(path, Some(ImageFormat::Qcow2))?
                .cluster_size
                .unwrap_or(DEFAULT_CLUSTER_SIZE);
            let file = CountedFile::open_counted(path, writable, mark, cluster)?;
            FormatAccess::new(
                Qcow2::<CountedFile>::builder(file)
                    .write(writable)
                    .backing(b)
                    .open(gate)?,
            )
        }
    })
}

impl Image {
    /// Opens `path`; with `format` None the format is probed.
    pub fn open(path: &Path, format: Option<ImageFormat>, writable: bool) -> Result<Image> {
        let format = match format {
            Some(f) => f,
            None => probe_format(path)?,
        };
        std::fs::metadata(path).map_err(|e| open_error(path, e))?;
        let gate = PermissiveImplicitOpenGate::default();
        let access = match format {
            ImageFormat::Raw => FormatAccess::new(
                Raw::<CountedFile>::builder_path(path)
                    .write(writable)
                    .open(gate)?,
            ),
            ImageFormat::Qcow2 => FormatAccess::new(
                Qcow2::<CountedFile>::builder_path(path)
                    .write(writable)
                    .open(gate)?,
            ),
        };
        Ok(Image {
            path: path.to_path_buf(),
            format,
            writable,
            access,
            broken: broken(path, format, writable),
            cluster: cluster_of(path, format),
        })
    }

    /// Opens `path` with the backing chain given (None: no backing), not the one the header
    /// names.
    pub fn open_with_backing(
        path: &Path,
        format: ImageFormat,
        writable: bool,
        backing: Option<&ChainSpec>,
    ) -> Result<Image> {
        Image::open_marked(path, format, writable, backing, WriteMark::new())
    }

    /// [`Image::open_with_backing`], counting where writes to the file end in `mark` (the
    /// file's node's).
    pub fn open_marked(
        path: &Path,
        format: ImageFormat,
        writable: bool,
        backing: Option<&ChainSpec>,
        mark: WriteMark,
    ) -> Result<Image> {
        let access = open_access(path, format, writable, backing, 0, mark)?;
        Ok(Image {
            path: path.to_path_buf(),
            format,
            writable,
            access,
            broken: broken(path, format, writable),
            cluster: cluster_of(path, format),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn format(&self) -> ImageFormat {
        self.format
    }

    pub fn writable(&self) -> bool {
        self.writable
    }

    /// The virtual disk size (a raw file's in whole 512-byte sectors, as QEMU counts it: the
    /// tail of a partial sector reads as zeroes).
    pub fn size(&self) -> u64 {
        match self.format {
            ImageFormat::Raw => self.access.size().div_ceil(512).saturating_mul(512),
            ImageFormat::Qcow2 => self.access.size(),
        }
    }

    fn check_range(&self, offset: u64, len: usize) -> Result<()> {
        match offset.checked_add(len as u64) {
            Some(end) if end <= self.size() => Ok(()),
            _ => Err(Error::generic("Request beyond the end of the image")),
        }
    }

    /// Reads `buf.len()` bytes at `offset` (through the backing chain).
    pub fn read(&self, buf: &mut [u8], offset: u64) -> Result<()> {
        self.check_range(offset, buf.len())?;
        if buf.is_empty() {
            return Ok(());
        }
        // A raw file's partial last sector reads as zeroes past the file's end.
        let stored = self.access.size();
        let end = offset + buf.len() as u64;
        if end > stored {
            let within = stored.saturating_sub(offset).min(buf.len() as u64) as usize;
            buf[within..].fill(0);
            if within > 0 {
                self.access.read(&mut buf[..within], offset)?;
            }
            return Ok(());
        }
        self.access.read(buf, offset)?;
        Ok(())
    }

    /// A raw file whose partial last sector is written grows to the sector's end first.
    fn grow_for(&self, offset: u64, len: u64) -> Result<()> {
        let end = offset.saturating_add(len);
        if self.format == ImageFormat::Raw && end > self.access.size() {
            self.access
                .resize_grow(self.size(), imago::format::PreallocateMode::None)
                .map_err(|e| Error::generic(e.to_string()))?;
        }
        Ok(())
    }

    pub fn write(&self, buf: &[u8], offset: u64) -> Result<()> {
        self.check_range(offset, buf.len())?;
        if !self.writable {
            return Err(Error::generic("Image is read-only"));
        }
        if self.broken {
            return Err(io_error());
        }
        if buf.is_empty() {
            return Ok(());
        }
        self.grow_for(offset, buf.len() as u64)?;
        self.access.write(buf, offset)?;
        Ok(())
    }

    pub fn write_zeroes(&self, offset: u64, len: u64) -> Result<()> {
        self.check_range(offset, usize::try_from(len).unwrap_or(usize::MAX))?;
        if !self.writable {
            return Err(Error::generic("Image is read-only"));
        }
        if self.broken {
            return Err(io_error());
        }
        self.grow_for(offset, len)?;
        // A last cluster that the disk's end cuts short is zeroed by writing zeroes into
        // it (imago cannot zero it as a whole).
        let end = offset.saturating_add(len);
        let whole = if self.cluster > 0 {
            self.size() / self.cluster * self.cluster
        } else {
            end
        };
        if offset < whole {
            self.access.write_zeroes(offset, end.min(whole) - offset)?;
        }
        let tail = offset.max(whole);
        if tail < end {
            let zeroes = vec![0u8; usize::try_from(end - tail).unwrap_or(0)];
            self.write(&zeroes, tail)?;
        }
        Ok(())
    }

    /// Discards a range (it reads as zeroes afterwards, as NBD's TRIM allows).
    pub fn discard(&mut self, offset: u64, len: u64) -> Result<()> {
        self.check_range(offset, usize::try_from(len).unwrap_or(usize::MAX))?;
        if !self.writable {
            return Err(Error::generic("Image is read-only"));
        }
        if self.broken {
            return Err(io_error());
        }
        self.access.discard_to_zero(offset, len)?;
        Ok(())
    }

    pub fn flush(&self) -> Result<()> {
        if self.writable {
            self.access.flush()?;
        }
        Ok(())
    }

    /// Grows or shrinks the virtual disk (`block_resize`).
    pub fn resize(&mut self, new_size: u64) -> Result<()> {
        self.check_resize(new_size)?;
        self.access
            .resize(new_size, imago::format::PreallocateMode::None)
            .map_err(|e| Error::generic(e.to_string()))?;
        self.access.flush()?;
        Ok(())
    }

    /// Why the image cannot take `new_size`, if it cannot.
    pub fn check_resize(&self, new_size: u64) -> Result<()> {
        if !self.writable {
            return Err(Error::generic("Image is read-only"));
        }
        if self.broken {
            return Err(io_error());
        }
        if self.format == ImageFormat::Qcow2 && new_size % 512 != 0 {
            return Err(Error::generic("The new size must be a multiple of 512"));
        }
        Ok(())
    }

    /// What this image itself says of the run at `offset` (within its size), and for how
    /// many bytes (at most `max_len`): data (clusters one after the other in its file, or a
    /// raw image's), zero clusters or, without a backing file, clusters it has not
    /// allocated, or clusters its backing file holds.
    pub fn layer_status(&self, offset: u64, max_len: u64) -> Result<(LayerStatus, u64)> {
        let (mapping, len) = self.access.get_shallow_mapping(offset, max_len)?;
        let status = match mapping {
            ShallowMapping::Indirect { .. } => LayerStatus::Backing,
            ShallowMapping::Zero { .. } => LayerStatus::Zero,
            _ => LayerStatus::Data,
        };
        Ok((status, len.max(1).min(max_len)))
    }

    /// Whether `offset` is allocated in this image itself (not only in a backing file), and
    /// for how many bytes from `offset` that answer holds (at most `max_len`).
    pub fn allocated(&self, offset: u64, max_len: u64) -> Result<(bool, u64)> {
        if offset >= self.access.size() {
            // A raw file's partial last sector: data.
            return Ok((true, max_len.max(1)));
        }
        let (mapping, len) = self.access.get_shallow_mapping(offset, max_len)?;
        let here = match mapping {
            ShallowMapping::Indirect { .. } => false,
            ShallowMapping::Zero { explicit, .. } => explicit,
            _ => true,
        };
        Ok((here, len.max(1).min(max_len)))
    }
}
