//! The capture file reader (`capture::CaptureReader`) on arbitrary bytes.
//!
//! Asserts: no panic; the reader either ends cleanly or reports a `BadCapture` whose byte
//! offset lies inside the input; every frame it returns fits in the input; and reading
//! what vnetio's own writer makes of those frames gives them back unchanged (cut to
//! libpcap's maximum snaplen, as the writer cuts them).
#![no_main]

use std::io::Cursor;
use std::path::PathBuf;

use libfuzzer_sys::fuzz_target;
use vnetio::capture::writer::MAX_SNAPLEN;
use vnetio::capture::{CaptureReader, CaptureWriter, Format, WriterOptions};
use vnetio::{Error, PacketBatch};

fn read_all(data: &[u8]) -> (PacketBatch, Option<Error>) {
    let mut out = PacketBatch::default();
    let mut reader = match CaptureReader::new(Cursor::new(data), PathBuf::from("<fuzz>")) {
        Ok(r) => r,
        Err(e) => return (out, Some(e)),
    };
    loop {
        match reader.read_batch(&mut out, 64) {
            Ok(0) => return (out, None),
            Ok(_) => {}
            Err(e) => return (out, Some(e)),
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let (frames, err) = read_all(data);
    match err {
        None | Some(Error::CaptureIo { .. }) => {}
        Some(Error::BadCapture { offset, .. }) => assert!(offset <= data.len() as u64),
        Some(other) => panic!("unexpected error kind: {other}"),
    }
    assert!(frames.nbytes() <= data.len());
    if frames.is_empty() {
        return;
    }
    // Round trip through the writer: same frames, same timestamps.
    let path = std::env::temp_dir().join(format!("vnetio-fuzz-{}.pcapng", std::process::id()));
    let opts = WriterOptions {
        snaplen: MAX_SNAPLEN,
        format: Format::PcapNg,
        ..WriterOptions::default()
    };
    let mut w = CaptureWriter::create(&path, opts).unwrap();
    w.write_frames(
        frames
            .iter()
            .zip(frames.timestamps_ns())
            .map(|(f, t)| (f, t.max(1))),
    )
    .unwrap();
    w.finish().unwrap();
    let bytes = std::fs::read(&path).unwrap();
    let (again, err) = read_all(&bytes);
    assert!(err.is_none(), "{err:?}");
    assert_eq!(again.len(), frames.len());
    let cut = MAX_SNAPLEN as usize;
    for i in 0..frames.len() {
        let want = frames.get(i).map(|f| &f[..f.len().min(cut)]);
        assert_eq!(again.get(i), want);
        assert_eq!(
            again.timestamp_ns(i),
            frames.timestamp_ns(i).map(|t| t.max(1))
        );
    }
});
