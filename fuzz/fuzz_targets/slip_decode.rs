//! The SLIP decoder (`device::serial::slip`) on arbitrary line bytes.
//!
//! Asserts: no panic; the same frames whether the bytes come in one piece or two (the
//! first byte picks the cut and the MTU); every frame is non-empty, within the MTU, and
//! survives encode → decode unchanged; the counters agree with what was delivered;
//! `check_packet` never panics; and the input itself, encoded, decodes back to itself.
#![no_main]

use libfuzzer_sys::fuzz_target;
use vnetio::device::serial::slip::{check_packet, encode, encode_into, Decoder};

fn decode(mtu: usize, pieces: &[&[u8]]) -> (Vec<Vec<u8>>, Decoder) {
    let mut d = Decoder::new(mtu);
    let mut frames = Vec::new();
    for p in pieces {
        d.feed(p, |f| frames.push(f.to_vec()));
    }
    (frames, d)
}

fuzz_target!(|data: &[u8]| {
    let Some((&selector, line)) = data.split_first() else {
        return;
    };
    let mtu = 1 + usize::from(selector) * 8;
    let cut = usize::from(selector) % (line.len() + 1);
    let (whole, dw) = decode(mtu, &[line]);
    let (split, ds) = decode(mtu, &[&line[..cut], &line[cut..]]);
    assert_eq!(whole, split);
    assert_eq!(dw.stats(), ds.stats());
    assert_eq!(dw.pending(), ds.pending());
    let stats = dw.stats();
    assert_eq!(stats.frames, whole.len() as u64);
    assert_eq!(
        stats.bytes,
        whole.iter().map(|f| f.len() as u64).sum::<u64>()
    );
    let mut again = Vec::new();
    for f in &whole {
        assert!(!f.is_empty() && f.len() <= mtu);
        let _ = check_packet(f);
        encode_into(f, &mut again);
    }
    assert_eq!(decode(mtu, &[&again]).0, whole);
    if !line.is_empty() && line.len() <= 4096 {
        assert_eq!(decode(4096, &[&encode(line)]).0, vec![line.to_vec()]);
    }
});
