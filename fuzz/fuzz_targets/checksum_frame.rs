//! The checksum routines: `checksum::sum` against the plain RFC 1071 definition, and
//! `checksum::verify_frame` / `checksum::fix_frame` on arbitrary frames (both media).
//!
//! Asserts: no panic; `sum` equals the reference and splits at even offsets; fix and
//! verify agree on what parses; a fixed frame verifies, keeps its length and bytes outside
//! the checksum fields, and fixing it again changes nothing.
#![no_main]

use libfuzzer_sys::fuzz_target;
use vnetio::wire::checksum::{combine, fix_frame, sum, verify_frame};
use vnetio::Medium;

fn reference(data: &[u8]) -> u16 {
    let mut s: u64 = data
        .chunks(2)
        .map(|p| u64::from(u16::from_be_bytes([p[0], *p.get(1).unwrap_or(&0)])))
        .sum();
    while s > 0xffff {
        s = (s & 0xffff) + (s >> 16);
    }
    s as u16
}

fuzz_target!(|data: &[u8]| {
    assert_eq!(sum(data), reference(data));
    let cut = (data.len() / 3) & !1;
    assert_eq!(combine(&[sum(&data[..cut]), sum(&data[cut..])]), sum(data));

    for medium in [Medium::Ethernet, Medium::Ip] {
        let verified = verify_frame(data, medium);
        let mut fixed = data.to_vec();
        let done = fix_frame(&mut fixed, medium);
        assert_eq!(verified.is_ok(), done.is_ok(), "{verified:?} vs {done:?}");
        if done.is_err() {
            continue;
        }
        assert_eq!(fixed.len(), data.len());
        let after = verify_frame(&fixed, medium).expect("a fixed frame still parses");
        assert!(after.ok(), "fixed frame does not verify: {after:?}");
        let changed = fixed.iter().zip(data).filter(|(a, b)| a != b).count();
        assert!(
            changed <= 4,
            "fixing changed {changed} bytes (two checksums at most)"
        );
        let mut again = fixed.clone();
        fix_frame(&mut again, medium).expect("fixes again");
        assert_eq!(again, fixed, "fixing is not idempotent");
    }
});
