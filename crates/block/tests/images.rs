//! Images written by the library, judged by the real qemu-img and qemu-io.

use std::path::Path;
use std::process::Command;

use qmpkit_block::image::{self, CreateOptions, Image, ImageFormat};
use qmpkit_block::qcow2;
use qmpkit_testkit::program_or_skip;
use serde_json::Value;

fn run(prog: &Path, args: &[&str]) -> (bool, String) {
    let out = Command::new(prog).args(args).output().expect("run program");
    let mut text = String::from_utf8_lossy(&out.stdout).into_owned();
    text.push_str(&String::from_utf8_lossy(&out.stderr));
    (out.status.success(), text)
}

fn check_clean(qemu_img: &Path, path: &Path) {
    let (ok, text) = run(qemu_img, &["check", path.to_str().unwrap()]);
    assert!(ok, "qemu-img check {}: {text}", path.display());
    assert!(text.contains("No errors were found"), "{text}");
}

fn qemu_info(qemu_img: &Path, path: &Path) -> Value {
    let (ok, text) = run(
        qemu_img,
        &["info", "-U", "--output=json", path.to_str().unwrap()],
    );
    assert!(ok, "{text}");
    serde_json::from_str(&text).expect("qemu-img info json")
}

/// Every field our ImageInfo reports agrees with qemu-img info.
fn assert_info_agrees(qemu_img: &Path, path: &Path) {
    let q = qemu_info(qemu_img, path);
    let ours = image::image_info(path, None).unwrap();
    assert_eq!(q["format"], ours.format.name(), "{q}");
    assert_eq!(q["virtual-size"], ours.virtual_size, "{q}");
    assert_eq!(q["filename"], ours.filename, "{q}");
    assert_eq!(q["dirty-flag"], ours.dirty_flag, "{q}");
    assert_eq!(q["actual-size"].as_u64(), ours.actual_size, "{q}");
    assert_eq!(q["cluster-size"].as_u64(), ours.cluster_size, "{q}");
    assert_eq!(
        q["backing-filename"].as_str(),
        ours.backing_filename.as_deref()
    );
    assert_eq!(
        q["full-backing-filename"].as_str(),
        ours.full_backing_filename.as_deref()
    );
    assert_eq!(
        q["backing-filename-format"].as_str(),
        ours.backing_filename_format.as_deref()
    );
    if let Some(spec) = &ours.qcow2 {
        let d = &q["format-specific"]["data"];
        assert_eq!(d["compat"], spec.compat, "{q}");
        assert_eq!(d["compression-type"], spec.compression_type, "{q}");
        assert_eq!(d["lazy-refcounts"].as_bool(), spec.lazy_refcounts, "{q}");
        assert_eq!(d["refcount-bits"], spec.refcount_bits, "{q}");
        assert_eq!(d["corrupt"].as_bool(), spec.corrupt, "{q}");
        assert_eq!(d["extended-l2"].as_bool(), spec.extended_l2, "{q}");
        let qbitmaps = d["bitmaps"].as_array().map(|a| a.len()).unwrap_or(0);
        assert_eq!(qbitmaps, spec.bitmaps.len(), "{q}");
        for (qb, b) in d["bitmaps"]
            .as_array()
            .into_iter()
            .flatten()
            .zip(&spec.bitmaps)
        {
            assert_eq!(qb["name"], b.name);
            assert_eq!(qb["granularity"], b.granularity);
        }
    }
    let qsnaps = q["snapshots"].as_array().cloned().unwrap_or_default();
    assert_eq!(qsnaps.len(), ours.snapshots.len(), "{q}");
    for (qs, s) in qsnaps.iter().zip(&ours.snapshots) {
        assert_eq!(qs["id"], s.id);
        assert_eq!(qs["name"], s.name);
        assert_eq!(qs["date-sec"], s.date_sec);
        assert_eq!(qs["vm-state-size"], s.vm_state_size);
    }
}

#[test]
fn created_images_are_clean_and_described_alike() {
    let qemu_img = program_or_skip!("qemu-img");
    let dir = tempfile::tempdir().unwrap();
    let raw = dir.path().join("disk.raw");
    image::create(&raw, &CreateOptions::new(ImageFormat::Raw, 4 << 20)).unwrap();
    assert_info_agrees(&qemu_img, &raw);

    for cluster in [512u64, 4096, 65536, 2 << 20] {
        let q = dir.path().join(format!("c{cluster}.qcow2"));
        let mut opts = CreateOptions::new(ImageFormat::Qcow2, 64 << 20);
        opts.cluster_size = Some(cluster);
        image::create(&q, &opts).unwrap();
        check_clean(&qemu_img, &q);
        assert_info_agrees(&qemu_img, &q);
    }

    // An overlay over the raw image, then one over the overlay: a chain of three.
    let mid = dir.path().join("mid.qcow2");
    image::create_overlay(&mid, "disk.raw", ImageFormat::Raw).unwrap();
    let top = dir.path().join("top.qcow2");
    image::create_overlay(&top, mid.to_str().unwrap(), ImageFormat::Qcow2).unwrap();
    for p in [&mid, &top] {
        check_clean(&qemu_img, p);
        assert_info_agrees(&qemu_img, p);
    }
    let chain = image::backing_chain(&top, None).unwrap();
    assert_eq!(chain.len(), 3);
    assert_eq!(chain[2].format, ImageFormat::Raw);
    assert_eq!(chain[2].virtual_size, 4 << 20);
}

#[test]
fn images_qemu_made_are_described_alike() {
    let qemu_img = program_or_skip!("qemu-img");
    let dir = tempfile::tempdir().unwrap();
    let p = |n: &str| dir.path().join(n);
    let s = |n: &str| p(n).to_str().unwrap().to_string();
    run(&qemu_img, &["create", "-f", "raw", &s("b.raw"), "1M"]);
    for args in [
        vec![
            "create",
            "-f",
            "qcow2",
            "-o",
            "compat=0.10",
            &s("v2.qcow2"),
            "3M",
        ],
        vec![
            "create",
            "-f",
            "qcow2",
            "-o",
            "lazy_refcounts=on,refcount_bits=64,cluster_size=4k",
            &s("lazy.qcow2"),
            "1G",
        ],
        vec![
            "create",
            "-f",
            "qcow2",
            "-o",
            "extended_l2=on",
            &s("ext.qcow2"),
            "1M",
        ],
        vec![
            "create",
            "-f",
            "qcow2",
            "-o",
            "compression_type=zstd",
            &s("z.qcow2"),
            "1M",
        ],
        vec![
            "create",
            "-f",
            "qcow2",
            "-b",
            "b.raw",
            "-F",
            "raw",
            &s("o.qcow2"),
        ],
    ] {
        let (ok, text) = run(&qemu_img, &args);
        assert!(ok, "{text}");
    }
    run(&qemu_img, &["snapshot", "-c", "snap-one", &s("lazy.qcow2")]);
    run(&qemu_img, &["snapshot", "-c", "second", &s("lazy.qcow2")]);
    run(
        &qemu_img,
        &["bitmap", "--add", "-g", "128k", &s("ext.qcow2"), "bm0"],
    );
    run(&qemu_img, &["bitmap", "--add", &s("ext.qcow2"), "bm1"]);
    for n in [
        "b.raw",
        "v2.qcow2",
        "lazy.qcow2",
        "ext.qcow2",
        "z.qcow2",
        "o.qcow2",
    ] {
        assert_info_agrees(&qemu_img, &p(n));
    }
    let info = image::image_info(&p("lazy.qcow2"), None).unwrap();
    assert_eq!(info.snapshots.len(), 2);
    assert_eq!(info.snapshots[1].name, "second");
    let info = image::image_info(&p("ext.qcow2"), None).unwrap();
    let bitmaps = &info.qcow2.as_ref().unwrap().bitmaps;
    assert_eq!(bitmaps[0].granularity, 128 << 10);
    assert_eq!(bitmaps[1].name, "bm1");
}

#[test]
fn data_written_here_reads_back_in_qemu_io_and_resize_is_clean() {
    let qemu_img = program_or_skip!("qemu-img");
    let qemu_io = program_or_skip!("qemu-io");
    let dir = tempfile::tempdir().unwrap();
    let base = dir.path().join("base.qcow2");
    image::create(&base, &CreateOptions::new(ImageFormat::Qcow2, 8 << 20)).unwrap();
    {
        let img = Image::open(&base, None, true).unwrap();
        img.write(&vec![0x41; 65536], 0).unwrap();
        img.write(&vec![0x42; 4096], 1 << 20).unwrap();
        img.flush().unwrap();
    }
    let top = dir.path().join("top.qcow2");
    image::create_overlay(&top, "base.qcow2", ImageFormat::Qcow2).unwrap();
    {
        let img = Image::open(&top, None, true).unwrap();
        let mut buf = vec![0u8; 4096];
        img.read(&mut buf, 1 << 20).unwrap();
        assert!(buf.iter().all(|&b| b == 0x42));
        img.write(&vec![0x43; 4096], 2 << 20).unwrap();
        assert!(!img.allocated(0, 65536).unwrap().0);
        assert!(img.allocated(2 << 20, 4096).unwrap().0);
    }
    let t = top.to_str().unwrap();
    for cmd in [
        "read -P 0x41 0 64k",
        "read -P 0x42 1M 4k",
        "read -P 0x43 2M 4k",
    ] {
        let (ok, text) = run(&qemu_io, &["-f", "qcow2", "-c", cmd, t]);
        assert!(
            ok && !text.contains("Pattern verification failed"),
            "{cmd}: {text}"
        );
    }
    {
        let mut img = Image::open(&top, None, true).unwrap();
        img.resize(16 << 20).unwrap();
        assert_eq!(img.size(), 16 << 20);
    }
    check_clean(&qemu_img, &top);
    assert_info_agrees(&qemu_img, &top);
    assert_eq!(qemu_info(&qemu_img, &top)["virtual-size"], 16 << 20);

    let raw = dir.path().join("r.raw");
    image::create(&raw, &CreateOptions::new(ImageFormat::Raw, 1 << 20)).unwrap();
    let mut img = Image::open(&raw, None, true).unwrap();
    img.resize(3 << 20).unwrap();
    drop(img);
    assert_info_agrees(&qemu_img, &raw);
    assert_eq!(qemu_info(&qemu_img, &raw)["virtual-size"], 3 << 20);
}

#[test]
fn backing_file_changes_keep_the_image_clean() {
    let qemu_img = program_or_skip!("qemu-img");
    let dir = tempfile::tempdir().unwrap();
    let base = dir.path().join("base.raw");
    image::create(&base, &CreateOptions::new(ImageFormat::Raw, 1 << 20)).unwrap();
    let top = dir.path().join("top.qcow2");
    let mut opts = CreateOptions::new(ImageFormat::Qcow2, 1 << 20);
    opts.cluster_size = Some(512);
    image::create(&top, &opts).unwrap();
    qcow2::change_backing_file(&top, Some(("base.raw", "raw"))).unwrap();
    check_clean(&qemu_img, &top);
    assert_info_agrees(&qemu_img, &top);
    let info = image::image_info(&top, None).unwrap();
    assert_eq!(info.backing_filename.as_deref(), Some("base.raw"));
    qcow2::change_backing_file(&top, None).unwrap();
    check_clean(&qemu_img, &top);
    assert_info_agrees(&qemu_img, &top);
    assert_eq!(
        image::image_info(&top, None).unwrap().backing_filename,
        None
    );
    let long = "x".repeat(600);
    assert!(qcow2::change_backing_file(&top, Some((&long, "raw"))).is_err());
}

/// A qcow2 image cut short after its header (its refcount and L1 tables past the end of the
/// file) still opens, but takes no write: the next cluster allocated would land on the
/// image's own structures, which QEMU refuses as metadata corruption. The write fails with
/// an I/O error and the file stays as it was, opened alone or over a backing chain.
#[test]
fn an_image_cut_short_takes_no_writes() {
    let dir = tempfile::tempdir().unwrap();
    let base = dir.path().join("base.qcow2");
    image::create(&base, &CreateOptions::new(ImageFormat::Qcow2, 1 << 20)).unwrap();
    let cut = dir.path().join("cut.qcow2");
    image::create(&cut, &CreateOptions::new(ImageFormat::Qcow2, 1 << 20)).unwrap();
    let f = std::fs::OpenOptions::new().write(true).open(&cut).unwrap();
    f.set_len(512).unwrap();
    drop(f);
    let chain = image::ChainSpec {
        path: base.clone(),
        format: ImageFormat::Qcow2,
        backing: None,
    };
    for backing in [None, Some(&chain)] {
        let mut img = Image::open_with_backing(&cut, ImageFormat::Qcow2, true, backing).unwrap();
        for r in [
            img.write(&[0x55; 4096], 0),
            img.write(&[0x55; 512], 65536 * 3),
            img.write_zeroes(0, 65536),
            img.discard(0, 65536),
            img.resize(2 << 20),
        ] {
            assert_eq!(r.unwrap_err().desc, "Input/output error");
        }
        img.flush().unwrap();
        drop(img);
        assert_eq!(std::fs::metadata(&cut).unwrap().len(), 512);
    }
    // The intact image takes the same writes.
    let mut img = Image::open_with_backing(&base, ImageFormat::Qcow2, true, None).unwrap();
    img.write(&[0x55; 4096], 0).unwrap();
    img.write_zeroes(0, 65536).unwrap();
    img.resize(2 << 20).unwrap();
}

#[test]
fn errors_name_the_file() {
    let e = Image::open(Path::new("/nonexistent/x.qcow2"), None, false).unwrap_err();
    assert_eq!(
        e.desc,
        "Could not open '/nonexistent/x.qcow2': No such file or directory"
    );
}

/// Backing names resolve as QEMU resolves them (checked against `qemu-img info`'s
/// `full-backing-filename`): relative names against the image's directory, absolute names
/// and names with a protocol prefix (a colon before any slash) as they are.
#[test]
fn backing_names_with_a_protocol_stay_as_they_are() {
    let cases = [
        ("dir/top.qcow2", "base.qcow2", "dir/base.qcow2"),
        ("dir/top.qcow2", "/abs/base.qcow2", "/abs/base.qcow2"),
        (
            "dir/top.qcow2",
            r#"json:{"driver": "null-co", "size": 1048576}"#,
            r#"json:{"driver": "null-co", "size": 1048576}"#,
        ),
        ("dir/top.qcow2", "a:b/c.qcow2", "a:b/c.qcow2"),
        ("dir/top.qcow2", "x/a:b.qcow2", "dir/x/a:b.qcow2"),
        ("top.qcow2", "base.qcow2", "base.qcow2"),
    ];
    for (image, backing, full) in cases {
        assert_eq!(image::full_backing_path(image, backing), full, "{backing}");
    }
}
