//! CPU cache hints for the receive loops.
//!
//! A batch keeps every frame it receives, so each `read()` lands in arena memory that has
//! not been touched since the same arena was filled two batches ago: for 1514-byte frames
//! those lines have left the core's caches (the kernel streams the frames' socket buffers
//! through them meanwhile), and the kernel's copy waits for them line by line. A reader that
//! overwrites one small buffer never waits so. Asking for the next frame's destination lines
//! just before the `read()` lets them arrive while the system call is entered and the
//! kernel finds the frame (measured with `examples/reader_probe.rs`; BENCHMARKS.md).

/// Most bytes [`prefetch`] asks for: 64 lines. Longer frames (super-frames of up to
/// 64 KiB) are streamed by the kernel's copy, which the hardware prefetcher follows.
pub const PREFETCH_MAX: usize = 4096;

/// Cache line size assumed for the hints (every x86-64 and most arm64 cores).
const LINE: usize = 64;

/// Hint that `bytes` (at most their first [`PREFETCH_MAX`]) are about to be written: fetch
/// their cache lines into the first-level cache. Only a hint: it never faults and changes
/// no memory; on other architectures it does nothing.
#[inline]
pub fn prefetch(bytes: &[u8]) {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
        let len = bytes.len().min(PREFETCH_MAX);
        let base = bytes.as_ptr();
        let mut at = 0;
        while at < len {
            // SAFETY: PREFETCHT0 is a hint: it never faults, whatever the address, and reads
            // or writes no memory visible to the program. The address is inside `bytes` in
            // any case (`at < len <= bytes.len()`), and SSE, which it needs, is part of the
            // x86-64 baseline.
            unsafe { _mm_prefetch::<_MM_HINT_T0>(base.add(at).cast()) };
            at += LINE;
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = bytes;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefetch_takes_any_slice() {
        let v = vec![7u8; 3 * PREFETCH_MAX];
        prefetch(&v);
        prefetch(&v[..0]);
        prefetch(&v[1..100]);
        assert!(v.iter().all(|&b| b == 7), "a hint changes no memory");
    }
}
