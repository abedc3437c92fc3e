//! The wire locator (`wire::locate`, `wire::ip_offset`) on arbitrary bytes, both media.
//!
//! Asserts: no panic, and every layout it returns is inside the frame and ordered.
#![no_main]

use libfuzzer_sys::fuzz_target;
use vnetio::wire::{ip_offset, locate, Ip};
use vnetio::Medium;

fuzz_target!(|data: &[u8]| {
    for medium in [Medium::Ethernet, Medium::Ip] {
        let offset = ip_offset(data, medium);
        let Ok(l) = locate(data, medium) else {
            continue;
        };
        assert_eq!(offset, Ok(l.l3));
        assert!(l.l3 < l.l4, "{l:?}");
        assert!(
            l.l4 <= l.end && l.end <= data.len(),
            "{l:?} in {} bytes",
            data.len()
        );
        assert!(!(l.fragment && l.partial), "{l:?}");
        assert_eq!(l.l4_len(), l.end - l.l4);
        match l.ip {
            Ip::V4 => {
                assert_eq!(data[l.l3] >> 4, 4);
                assert!(l.l4 - l.l3 >= 20 && l.l4 - l.l3 <= 60);
            }
            Ip::V6 => {
                assert_eq!(data[l.l3] >> 4, 6);
                assert!(l.l4 - l.l3 >= 40);
            }
        }
    }
});
