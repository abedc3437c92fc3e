//! `PacketBatch`: many frames in one contiguous arena plus a small table of
//! (offset, length, timestamp) entries.
//!
//! A batch is filled by appending at the end of the arena and never moves a frame once
//! written, so slices handed out stay valid until the batch is cleared. Receive paths call
//! [`PacketBatch::recv_slot`] to get writable room for the next frame and
//! [`PacketBatch::commit`] once the kernel says how long it was: no per-frame allocation,
//! and a batch reused for the next receive keeps its memory.

use std::ops::Range;

use crate::wire::vnet::VnetHdr;

/// The timestamp of a frame that has none (a pcapng Simple Packet Block records no
/// time): never a real time, and shown as `None` in Python.
pub const NO_TIMESTAMP: u64 = u64::MAX;

/// Largest frame any adapter hands us: 64 KiB IP datagram plus Ethernet, VLAN and a
/// virtio-net header. Reads are given this much room, so nothing is ever truncated.
pub const MAX_FRAME: usize = 65_535 + 14 + 8 + 12;

/// How many bytes of frames one receive call gathers into a batch before it hands the
/// batch over (it always takes at least one frame). The caller reads a batch while the
/// next one is filled, so two batches are in use at a time; at this size both stay in a
/// 1 MiB L2 cache, and the kernel's copy into the arena writes to cached memory. Without
/// it, 256 super-frames of 64 KiB made each batch 16 MiB and the copy into it cost about
/// 50% more per frame (12 µs instead of 8, BENCHMARKS.md "super-frame loop"), enough to
/// let a bridge loop's ring overflow. A batch of 1514-byte frames ends at 303 frames, so
/// the default `max_frames` of 256 is unaffected; one of 64 KiB super-frames at 8.
pub const RECV_BUDGET: usize = 512 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Entry {
    offset: usize,
    len: u32,
    timestamp_ns: u64,
    /// Offload metadata (a super-frame or a partial checksum), for frames that carry it.
    hdr: Option<VnetHdr>,
}

/// Frames stored back to back in one arena.
#[derive(Debug, Default, Clone)]
pub struct PacketBatch {
    /// The arena. Its `len()` is its usable size; bytes past `used` are scratch.
    data: Vec<u8>,
    used: usize,
    entries: Vec<Entry>,
}

impl PacketBatch {
    /// An empty batch with room for `frames` frames of `bytes` bytes in total.
    pub fn with_capacity(frames: usize, bytes: usize) -> Self {
        PacketBatch {
            data: vec![0; bytes],
            used: 0,
            entries: Vec::with_capacity(frames),
        }
    }

    /// Builds a batch holding a copy of each frame.
    pub fn from_frames<'a>(frames: impl IntoIterator<Item = &'a [u8]>) -> Self {
        let mut batch = PacketBatch::default();
        for frame in frames {
            batch.push(frame, 0);
        }
        batch
    }

    /// Forget all frames; keep the memory.
    pub fn clear(&mut self) {
        self.used = 0;
        self.entries.clear();
    }

    /// Number of frames.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True when the batch has no frames.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Total bytes of all frames.
    pub fn nbytes(&self) -> usize {
        self.used
    }

    /// The arena's used part: all frames back to back.
    pub fn data(&self) -> &[u8] {
        &self.data[..self.used]
    }

    /// Frame `index`, or `None` when out of range.
    pub fn get(&self, index: usize) -> Option<&[u8]> {
        self.entries
            .get(index)
            .map(|e| &self.data[e.offset..e.offset + e.len as usize])
    }

    /// Byte range of frame `index` within [`PacketBatch::data`].
    pub fn range(&self, index: usize) -> Option<Range<usize>> {
        self.entries
            .get(index)
            .map(|e| e.offset..e.offset + e.len as usize)
    }

    /// Receive timestamp of frame `index` (ns since the Unix epoch; 0 if built in memory;
    /// [`NO_TIMESTAMP`] if its source recorded none).
    pub fn timestamp_ns(&self, index: usize) -> Option<u64> {
        self.entries.get(index).map(|e| e.timestamp_ns)
    }

    /// Iterate over the frames.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = &[u8]> + '_ {
        self.entries
            .iter()
            .map(|e| &self.data[e.offset..e.offset + e.len as usize])
    }

    /// Length of each frame.
    pub fn lengths(&self) -> impl ExactSizeIterator<Item = usize> + '_ {
        self.entries.iter().map(|e| e.len as usize)
    }

    /// Receive timestamp of each frame.
    pub fn timestamps_ns(&self) -> impl ExactSizeIterator<Item = u64> + '_ {
        self.entries.iter().map(|e| e.timestamp_ns)
    }

    /// Append a copy of `frame`.
    ///
    /// # Panics
    /// If `frame` is 4 GiB or longer (frames are at most 64 KiB; bindings check first).
    pub fn push(&mut self, frame: &[u8], timestamp_ns: u64) {
        self.push_with(frame, timestamp_ns, None);
    }

    /// Writable room for the next frame, at least `room` bytes. Grows the arena only
    /// when it is too small (amortised: a reused batch stops growing).
    pub fn recv_slot(&mut self, room: usize) -> &mut [u8] {
        let need = self.used + room;
        if self.data.len() < need {
            let grown = need.max(self.data.len() * 2);
            self.data.resize(grown, 0);
        }
        &mut self.data[self.used..need]
    }

    /// Whether a receive call should hand the batch over rather than read another frame:
    /// a frame of the largest size ([`MAX_FRAME`]) would take it past [`RECV_BUDGET`].
    pub fn recv_budget_spent(&self) -> bool {
        self.used + MAX_FRAME > RECV_BUDGET
    }

    /// Record the frame just written into [`PacketBatch::recv_slot`] as `len` bytes long.
    ///
    /// # Panics
    /// If `len` exceeds the room the slot had (a caller bug, never input-dependent).
    pub fn commit(&mut self, len: usize, timestamp_ns: u64) {
        self.commit_with(len, timestamp_ns, None);
    }

    /// [`PacketBatch::commit`] with offload metadata for the frame.
    ///
    /// # Panics
    /// As [`PacketBatch::commit`].
    pub fn commit_with(&mut self, len: usize, timestamp_ns: u64, hdr: Option<VnetHdr>) {
        assert!(
            self.used + len <= self.data.len(),
            "commit past the receive slot"
        );
        let len32 = u32::try_from(len).expect("frame length fits in u32");
        self.entries.push(Entry {
            offset: self.used,
            len: len32,
            timestamp_ns,
            hdr,
        });
        self.used += len;
    }

    /// Append a copy of `frame` with offload metadata.
    pub fn push_with(&mut self, frame: &[u8], timestamp_ns: u64, hdr: Option<VnetHdr>) {
        let slot = self.recv_slot(frame.len());
        slot[..frame.len()].copy_from_slice(frame);
        self.commit_with(frame.len(), timestamp_ns, hdr);
    }

    /// Offload metadata of frame `index` (`None`: an ordinary, complete frame).
    pub fn hdr(&self, index: usize) -> Option<VnetHdr> {
        self.entries.get(index).and_then(|e| e.hdr)
    }

    /// Whether any frame carries offload metadata.
    pub fn has_offload(&self) -> bool {
        self.entries.iter().any(|e| e.hdr.is_some())
    }

    /// Apply `f` to every frame (and its offload metadata), mutably; frames keep their
    /// lengths.
    pub fn for_each_mut(&mut self, mut f: impl FnMut(&mut [u8], Option<VnetHdr>)) {
        for e in &self.entries {
            f(&mut self.data[e.offset..e.offset + e.len as usize], e.hdr);
        }
    }

    /// Keep, among the frames from `start` on, those `verdict` accepts, in order, and
    /// forget the others (moving later frames down, so the arena stays contiguous).
    /// `verdict` returns 0 to drop a frame, else how many of its bytes to keep (a frame
    /// longer than that is cut, as the kernel cuts a frame to a socket filter's result;
    /// frames with offload metadata are never cut). Returns how many frames were dropped.
    pub fn retain_from(
        &mut self,
        start: usize,
        mut verdict: impl FnMut(&[u8], Option<VnetHdr>) -> u32,
    ) -> usize {
        let Some(first) = self.entries.get(start) else {
            return 0;
        };
        let (mut write_entry, mut write_at) = (start, first.offset);
        for read in start..self.entries.len() {
            let e = self.entries[read];
            let frame = &self.data[e.offset..e.offset + e.len as usize];
            let keep = verdict(frame, e.hdr);
            if keep == 0 {
                continue;
            }
            let len = if e.hdr.is_some() {
                e.len
            } else {
                e.len.min(keep)
            };
            if e.offset != write_at {
                self.data
                    .copy_within(e.offset..e.offset + len as usize, write_at);
            }
            self.entries[write_entry] = Entry {
                offset: write_at,
                len,
                ..e
            };
            write_entry += 1;
            write_at += len as usize;
        }
        let dropped = self.entries.len() - write_entry;
        self.entries.truncate(write_entry);
        self.used = write_at;
        dropped
    }

    /// Memory held by the arena (for pool bookkeeping).
    pub fn capacity_bytes(&self) -> usize {
        self.data.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn push_get_iterate() {
        let mut b = PacketBatch::with_capacity(2, 4);
        b.push(b"abc", 1);
        b.push(b"", 2);
        b.push(b"defgh", 3);
        assert_eq!(b.len(), 3);
        assert_eq!(b.nbytes(), 8);
        assert_eq!(b.get(0), Some(&b"abc"[..]));
        assert_eq!(b.get(1), Some(&b""[..]));
        assert_eq!(b.get(2), Some(&b"defgh"[..]));
        assert_eq!(b.get(3), None);
        assert_eq!(b.data(), b"abcdefgh");
        assert_eq!(b.range(2), Some(3..8));
        assert_eq!(b.lengths().collect::<Vec<_>>(), vec![3, 0, 5]);
        assert_eq!(b.timestamps_ns().collect::<Vec<_>>(), vec![1, 2, 3]);
        assert_eq!(
            b.iter().collect::<Vec<_>>(),
            vec![&b"abc"[..], b"", b"defgh"]
        );
    }

    #[test]
    fn reuse_keeps_memory_and_forgets_frames() {
        let mut b = PacketBatch::from_frames([&[1u8; 100][..], &[2u8; 100][..]]);
        let cap = b.capacity_bytes();
        b.clear();
        assert!(b.is_empty());
        assert_eq!(b.nbytes(), 0);
        b.push(&[3u8; 150], 0);
        assert_eq!(b.capacity_bytes(), cap);
        assert_eq!(b.get(0).unwrap(), &[3u8; 150][..]);
    }

    #[test]
    fn recv_slot_then_commit_shorter() {
        let mut b = PacketBatch::default();
        let slot = b.recv_slot(MAX_FRAME);
        assert!(slot.len() >= MAX_FRAME);
        slot[..2].copy_from_slice(b"hi");
        b.commit(2, 7);
        let slot = b.recv_slot(MAX_FRAME);
        slot[..3].copy_from_slice(b"you");
        b.commit(3, 8);
        assert_eq!(b.data(), b"hiyou");
        assert_eq!(b.timestamp_ns(1), Some(8));
    }

    /// Frames of `len` bytes a receive call takes before its budget is spent.
    fn frames_within_budget(len: usize) -> usize {
        let mut b = PacketBatch::default();
        let mut n = 0;
        while n == 0 || !b.recv_budget_spent() {
            b.recv_slot(MAX_FRAME);
            b.commit(len, 0);
            n += 1;
        }
        assert!(b.nbytes() <= RECV_BUDGET.max(len));
        n
    }

    #[test]
    fn recv_budget_stops_superframes_early_and_leaves_mtu_frames_at_256() {
        // 64 KiB super-frames: 8 (508 KiB), where 256 of them would fill a 16 MiB arena.
        assert_eq!(frames_within_budget(65_054), 8);
        assert_eq!(frames_within_budget(MAX_FRAME), 7);
        // 1514-byte frames: more than the default max_frames of 256.
        assert_eq!(frames_within_budget(1514), 303);
        assert!(!PacketBatch::default().recv_budget_spent());
    }

    #[test]
    fn retain_from_compacts_and_cuts() {
        let mut b =
            PacketBatch::from_frames([&b"keep0"[..], b"drop", b"cut-me-here", b"x", b"keep4"]);
        let dropped = b.retain_from(1, |f, _| match f {
            b"drop" | b"x" => 0,
            b"cut-me-here" => 3,
            _ => u32::MAX,
        });
        assert_eq!(dropped, 2);
        assert_eq!(
            b.iter().collect::<Vec<_>>(),
            vec![&b"keep0"[..], b"cut", b"keep4"]
        );
        assert_eq!(b.data(), b"keep0cutkeep4");
        assert_eq!(b.nbytes(), 13);
        assert_eq!(
            b.retain_from(3, |_, _| 0),
            0,
            "start past the end: nothing to do"
        );
        assert_eq!(b.retain_from(0, |_, _| 0), 3);
        assert!(b.is_empty() && b.nbytes() == 0);
    }

    #[test]
    #[should_panic(expected = "commit past the receive slot")]
    fn commit_past_slot_panics() {
        let mut b = PacketBatch::default();
        let _ = b.recv_slot(4);
        b.commit(5, 0);
    }
}
