//! Tests of the capture writer: byte-exact files through direct and cached writes, and
//! the cut-back to the last complete record after a failed write.

use super::*;
use std::os::unix::fs::FileExt;

fn tmp(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("vnetio-writer-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

#[test]
fn pcap_layout() {
    let path = tmp("a.pcap");
    let mut w = CaptureWriter::create(
        &path,
        WriterOptions {
            format: Format::Pcap,
            snaplen: 4,
            linktype: 101,
            ..WriterOptions::default()
        },
    )
    .unwrap();
    w.write_frame(b"abcdef", 1_500_000_000_123_456_789).unwrap();
    w.finish().unwrap();
    let b = std::fs::read(&path).unwrap();
    assert_eq!(&b[0..4], &PCAP_MAGIC_NS.to_le_bytes());
    assert_eq!(&b[16..20], &4u32.to_le_bytes());
    assert_eq!(&b[20..24], &101u32.to_le_bytes());
    assert_eq!(&b[24..28], &1_500_000_000u32.to_le_bytes());
    assert_eq!(&b[28..32], &123_456_789u32.to_le_bytes());
    assert_eq!(&b[32..36], &4u32.to_le_bytes());
    assert_eq!(&b[36..40], &6u32.to_le_bytes());
    assert_eq!(&b[40..], b"abcd");
    assert_eq!(w.truncated_frames(), 1);
    std::fs::remove_file(path).unwrap();
}

#[test]
fn pcapng_blocks_are_aligned_and_self_consistent() {
    let path = tmp("a.pcapng");
    let mut w = CaptureWriter::create(
        &path,
        WriterOptions {
            if_name: Some("vn0".into()),
            filter: Some("udp".into()),
            ..WriterOptions::default()
        },
    )
    .unwrap();
    w.write_frames([(&b"12345"[..], 7), (&b""[..], 8)]).unwrap();
    w.finish().unwrap();
    let b = std::fs::read(&path).unwrap();
    let mut at = 0;
    let mut types = vec![];
    while at < b.len() {
        let ty = u32::from_le_bytes(b[at..at + 4].try_into().unwrap());
        let len = u32::from_le_bytes(b[at + 4..at + 8].try_into().unwrap()) as usize;
        assert_eq!(len % 4, 0);
        let trailer = u32::from_le_bytes(b[at + len - 4..at + len].try_into().unwrap());
        assert_eq!(trailer as usize, len);
        types.push(ty);
        at += len;
    }
    assert_eq!(at, b.len());
    assert_eq!(types, vec![SHB_TYPE, IDB_TYPE, EPB_TYPE, EPB_TYPE]);
    std::fs::remove_file(path).unwrap();
}

#[test]
fn failure_cuts_back_to_a_record_boundary() {
    let path = tmp("fail.pcap");
    let mut w = CaptureWriter::create(
        &path,
        WriterOptions {
            format: Format::Pcap,
            ..WriterOptions::default()
        },
    )
    .unwrap();
    w.write_frames((0..3).map(|_| (&[0u8; 10][..], 1))).unwrap();
    // What reap() does when a write stopped 30 bytes into the frames: the first record
    // (16 + 10 bytes) is complete.
    let partial = w.cur.bytes()[..24 + 30].to_vec();
    w.tail.as_ref().unwrap().file.write_at(&partial, 0).unwrap();
    w.advance(24 + 30);
    let err = w.fail(io::Error::from_raw_os_error(libc::ENOSPC));
    assert_eq!(w.frames(), 1);
    assert_eq!(err.raw_os_error(), Some(libc::ENOSPC));
    assert!(err.to_string().contains("1 frames"), "{err}");
    assert!(w.write_frame(b"x", 1).is_err());
    assert!(w.flush().is_err());
    assert_eq!(std::fs::metadata(&path).unwrap().len(), 24 + 26);
    assert_eq!(w.file_bytes(), 24 + 26);
    std::fs::remove_file(path).unwrap();
}

/// Frames of varied sizes across many buffers, flushed at odd moments, with and
/// without direct I/O: the file holds exactly what was written, in order.
#[test]
fn many_buffers_and_flushes_keep_every_byte() {
    for (n, direct) in [(0, true), (1, false)] {
        let path = tmp(&format!("big{n}.pcap"));
        let opts = WriterOptions {
            format: Format::Pcap,
            snaplen: 1000,
            direct_io: direct,
            ..WriterOptions::default()
        };
        let mut w = CaptureWriter::create(&path, opts).unwrap();
        if !direct {
            assert!(!w.direct_io());
        }
        let mut expect = Vec::new();
        for i in 0..20_000u32 {
            let len = (i as usize * 7919) % 1500;
            let frame: Vec<u8> = (0..len).map(|j| (i as usize + j) as u8).collect();
            w.write_frame(&frame, u64::from(i) + 1).unwrap();
            expect.push(frame);
            if i % 4999 == 0 {
                w.flush().unwrap();
            }
        }
        assert_eq!(w.frames(), 20_000);
        let size = w.file_bytes();
        w.finish().unwrap();
        let data = std::fs::read(&path).unwrap();
        assert_eq!(data.len() as u64, size);
        let mut at = 24;
        for (i, frame) in expect.iter().enumerate() {
            let field = |k: usize| u32::from_le_bytes(data[at + k..at + k + 4].try_into().unwrap());
            assert_eq!(field(4) as usize, i + 1, "timestamp of frame {i}");
            let caplen = field(8) as usize;
            assert_eq!(field(12) as usize, frame.len());
            assert_eq!(
                &data[at + 16..at + 16 + caplen],
                &frame[..frame.len().min(1000)]
            );
            at += 16 + caplen;
        }
        assert_eq!(at, data.len());
        std::fs::remove_file(path).unwrap();
    }
}

#[test]
fn bad_options_are_refused_before_the_file_is_made() {
    let path = tmp("never.pcapng");
    let opts = WriterOptions {
        filter: Some("a\0b".into()),
        ..WriterOptions::default()
    };
    assert!(CaptureWriter::create(&path, opts).is_err());
    assert!(!path.exists());
    for snaplen in [0, MAX_SNAPLEN + 1] {
        let bad = WriterOptions {
            snaplen,
            ..WriterOptions::default()
        };
        let err = CaptureWriter::create(&path, bad).unwrap_err();
        assert!(
            err.to_string().contains("snaplen must be 1 to 262144"),
            "{err}"
        );
        assert!(!path.exists());
    }
}
