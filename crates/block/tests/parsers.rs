//! The parsers of untrusted bytes never panic: qcow2 headers (random and mutated from real
//! ones), snapshot tables, bitmap directories and NBD option payloads.

use proptest::prelude::*;
use qmpkit_block::image::{self, CreateOptions, ImageFormat};
use qmpkit_block::nbd::InfoRequest;
use qmpkit_block::qcow2::{self, Header};

fn real_header() -> Vec<u8> {
    static HEADER: std::sync::OnceLock<Vec<u8>> = std::sync::OnceLock::new();
    HEADER.get_or_init(make_header).clone()
}

fn make_header() -> Vec<u8> {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("x.qcow2");
    let mut o = CreateOptions::new(ImageFormat::Qcow2, 1 << 20);
    o.cluster_size = Some(4096);
    image::create(&p, &o).unwrap();
    qcow2::change_backing_file(&p, Some(("some/backing.img", "raw"))).unwrap();
    let mut area = qcow2::read_header_area(&p).unwrap();
    area.truncate(4096);
    area
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1000))]

    #[test]
    fn random_headers_never_panic(mut bytes in proptest::collection::vec(any::<u8>(), 0..4096), magic in any::<bool>()) {
        if magic && bytes.len() >= 8 {
            bytes[..4].copy_from_slice(&qcow2::MAGIC);
            bytes[7] = 3;
            bytes[4..7].fill(0);
        }
        if let Ok(h) = Header::parse(&bytes) {
            let _ = qcow2::parse_snapshots(&h, &bytes);
            let _ = qcow2::parse_bitmaps(&h, &bytes);
            let _ = h.with_backing(Some(("b", "raw")), &bytes);
            let _ = h.with_backing(None, &bytes);
        }
    }

    #[test]
    fn mutated_real_headers_never_panic(edits in proptest::collection::vec((0usize..4096, any::<u8>()), 1..16)) {
        let mut bytes = real_header();
        for (at, v) in edits {
            if at < bytes.len() {
                bytes[at] = v;
            }
        }
        if let Ok(h) = Header::parse(&bytes) {
            let _ = qcow2::parse_snapshots(&h, &bytes);
            let _ = qcow2::parse_bitmaps(&h, &bytes);
            let _ = h.with_backing(Some(("other", "qcow2")), &bytes);
        }
    }

    #[test]
    fn backing_names_round_trip(name in "[a-zA-Z0-9/._-]{1,300}", qcow in any::<bool>()) {
        let bytes = real_header();
        let h = Header::parse(&bytes).unwrap();
        let fmt = if qcow { "qcow2" } else { "raw" };
        let out = h.with_backing(Some((&name, fmt)), &bytes).unwrap();
        let mut area = out.clone();
        area.resize(4096, 0);
        let back = Header::parse(&area).unwrap();
        prop_assert_eq!(back.backing_file.as_deref(), Some(name.as_str()));
        prop_assert_eq!(back.backing_format(), Some(fmt.to_string()));
        prop_assert_eq!(back.size, h.size);
        prop_assert_eq!(back.l1_table_offset, h.l1_table_offset);
    }

    #[test]
    fn info_requests_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
        let _ = InfoRequest::parse(&bytes);
    }
}

#[test]
fn header_errors_are_words_not_panics() {
    assert_eq!(
        Header::parse(b"").unwrap_err(),
        qcow2::HeaderError::NotQcow2
    );
    let mut v = real_header();
    v[4..8].copy_from_slice(&9u32.to_be_bytes());
    assert_eq!(
        Header::parse(&v).unwrap_err(),
        qcow2::HeaderError::Version(9)
    );
    let v = real_header();
    assert_eq!(
        Header::parse(&v[..50]).unwrap_err(),
        qcow2::HeaderError::Truncated
    );
}
