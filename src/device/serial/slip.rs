//! SLIP, RFC 1055: IP packets over a byte stream. Pure functions and a state machine over
//! bytes — no I/O — so they are tested in memory and fuzzed (`fuzz/fuzz_targets/slip_decode.rs`).
//!
//! A packet goes on the line as `END`, the packet with every `END` byte replaced by
//! `ESC ESC_END` and every `ESC` by `ESC ESC_ESC`, then `END`. The leading `END` is what
//! RFC 1055 recommends and Linux's `slip` driver sends: it ends whatever line noise came
//! before, so the noise becomes a frame of its own that the receiver throws away.
//!
//! The [`Decoder`] drops, and counts by kind, every frame that is not a clean encoding:
//! a bad escape (`ESC` followed by anything but `ESC_END`/`ESC_ESC`), or more than `mtu`
//! bytes. Empty frames (`END END`) are the normal result of the leading `END` and are only
//! counted. [`check_packet`] then sorts out what a clean frame can still be: line noise
//! that happens to be framed (not an IPv4/IPv6 packet whose length field matches the
//! frame) or a packet damaged on the way (a checksum that does not verify).
//!
//! Decisions that differ from the RFC's sample code, which keeps the byte after a bad
//! `ESC` (as Linux does): here the whole frame is dropped. A receiver that passes on a
//! frame it knows was damaged only moves the loss up a layer, and loses the count.

use crate::wire::checksum::verify_frame;
use crate::wire::Medium;

/// Frame delimiter.
pub const END: u8 = 0xC0;
/// Escape.
pub const ESC: u8 = 0xDB;
/// `ESC ESC_END` stands for a data byte `END`.
pub const ESC_END: u8 = 0xDC;
/// `ESC ESC_ESC` stands for a data byte `ESC`.
pub const ESC_ESC: u8 = 0xDD;

/// The largest packet RFC 1055 says SLIP implementations accept (the Berkeley drivers'
/// 1006 bytes, IP and transport headers included, framing not).
pub const RFC1055_MTU: usize = 1006;

/// Bytes `packet` takes on the line, both `END`s included.
pub fn encoded_len(packet: &[u8]) -> usize {
    2 + packet.len() + memchr::memchr2_iter(END, ESC, packet).count()
}

/// Whether any of the 8 bytes at the start of `data` (which must have 8) is `END`/`ESC`:
/// the SWAR zero-byte test on `word ^ splat(special)`, for both specials.
#[inline]
fn chunk_has_special(data: &[u8]) -> bool {
    const LOW: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let mut word = [0u8; 8];
    word.copy_from_slice(&data[..8]);
    let w = u64::from_ne_bytes(word);
    let zero = |v: u64| v.wrapping_sub(LOW) & !v & HIGH != 0;
    zero(w ^ (LOW * u64::from(END))) || zero(w ^ (LOW * u64::from(ESC)))
}

/// The length of the run of ordinary bytes at the start of `data`, if it is at least 8
/// long (`None`: a special byte among the first 8, or fewer than 8 left). Special bytes
/// come either rarely (random payloads: about one byte in 128), where `memchr2` (SIMD)
/// skips the long runs, or densely (payloads full of them), where the 8-byte test sends
/// the caller to its byte-at-a-time path without the cost of a search.
#[inline]
fn ordinary_run(data: &[u8]) -> Option<usize> {
    if data.len() < 8 || chunk_has_special(data) {
        return None;
    }
    Some(memchr::memchr2(END, ESC, &data[8..]).map_or(data.len(), |i| i + 8))
}

/// Append the line encoding of `packet` (leading and trailing `END`) to `out`.
pub fn encode_into(packet: &[u8], out: &mut Vec<u8>) {
    let start = out.len();
    out.resize(start + 2 * packet.len() + 2, 0);
    let n = encode_to(packet, &mut out[start..]);
    out.truncate(start + n);
}

/// Write the line encoding of `packet` at the start of `out`; returns its length
/// ([`encoded_len`]).
///
/// # Panics
/// If `out` is shorter than [`encoded_len`]`(packet)`.
pub fn encode_to(packet: &[u8], out: &mut [u8]) -> usize {
    out[0] = END;
    let mut at = 1;
    let mut i = 0;
    while i < packet.len() {
        if let Some(run) = ordinary_run(&packet[i..]) {
            out[at..at + run].copy_from_slice(&packet[i..i + run]);
            at += run;
            i += run;
            continue;
        }
        // Byte by byte up to the next 8-byte boundary of the input (or its end).
        let stop = (i + 8).min(packet.len());
        for &b in &packet[i..stop] {
            match b {
                END => {
                    out[at] = ESC;
                    out[at + 1] = ESC_END;
                    at += 2;
                }
                ESC => {
                    out[at] = ESC;
                    out[at + 1] = ESC_ESC;
                    at += 2;
                }
                _ => {
                    out[at] = b;
                    at += 1;
                }
            }
        }
        i = stop;
    }
    out[at] = END;
    at + 1
}

/// The line encoding of `packet`.
pub fn encode(packet: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(encoded_len(packet));
    encode_into(packet, &mut out);
    out
}

/// Why the decoder dropped a frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrameError {
    /// `ESC` followed by a byte other than `ESC_END`/`ESC_ESC` (or by `END`).
    BadEscape,
    /// More than `mtu` bytes before the closing `END`.
    OverMtu,
}

/// What a [`Decoder`] has seen.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DecodeStats {
    /// Frames handed on.
    pub frames: u64,
    /// Their bytes (decoded).
    pub bytes: u64,
    /// `END END`: nothing between two delimiters (not an error).
    pub empty: u64,
    /// Frames dropped for a bad escape.
    pub bad_escape: u64,
    /// Frames dropped for being longer than the MTU.
    pub over_mtu: u64,
}

/// A streaming SLIP decoder: feed it bytes as they come off the line, in any pieces.
#[derive(Debug, Clone)]
pub struct Decoder {
    buf: Vec<u8>,
    mtu: usize,
    escaped: bool,
    error: Option<FrameError>,
    stats: DecodeStats,
}

impl Decoder {
    /// A decoder that drops frames longer than `mtu` decoded bytes.
    pub fn new(mtu: usize) -> Self {
        Decoder {
            buf: Vec::with_capacity(mtu),
            mtu,
            escaped: false,
            error: None,
            stats: DecodeStats::default(),
        }
    }

    /// The largest frame passed on.
    pub fn mtu(&self) -> usize {
        self.mtu
    }

    /// Counters so far.
    pub fn stats(&self) -> DecodeStats {
        self.stats
    }

    /// Bytes of the frame in progress (not yet ended by `END`).
    pub fn pending(&self) -> usize {
        self.buf.len()
    }

    /// Decode `input`; `on_frame` gets every complete, clean, non-empty frame, in order.
    pub fn feed(&mut self, input: &[u8], mut on_frame: impl FnMut(&[u8])) {
        let mut i = 0;
        // Below this index, bytes go one at a time (a special byte was seen among them).
        let mut slow_until = 0;
        while i < input.len() {
            if !self.escaped && i >= slow_until {
                if let Some(run) = ordinary_run(&input[i..]) {
                    self.push(&input[i..i + run]);
                    i += run;
                    continue;
                }
                slow_until = i + 8;
            }
            let b = input[i];
            i += 1;
            if self.escaped {
                self.escaped = false;
                match b {
                    ESC_END => self.push_byte(END),
                    ESC_ESC => self.push_byte(ESC),
                    END => {
                        self.fail(FrameError::BadEscape);
                        self.end_frame(&mut on_frame);
                    }
                    _ => self.fail(FrameError::BadEscape),
                }
                continue;
            }
            match b {
                END => self.end_frame(&mut on_frame),
                ESC => self.escaped = true,
                _ => self.push_byte(b),
            }
        }
    }

    #[inline]
    fn push_byte(&mut self, b: u8) {
        if self.error.is_some() {
            return;
        }
        if self.buf.len() >= self.mtu {
            self.fail(FrameError::OverMtu);
            return;
        }
        self.buf.push(b);
    }

    fn push(&mut self, data: &[u8]) {
        if self.error.is_some() || data.is_empty() {
            return;
        }
        if self.buf.len() + data.len() > self.mtu {
            self.fail(FrameError::OverMtu);
            return;
        }
        self.buf.extend_from_slice(data);
    }

    /// The frame in progress is bad: drop what it has, skip to its END (first error wins).
    fn fail(&mut self, error: FrameError) {
        if self.error.is_none() {
            self.error = Some(error);
            self.buf.clear();
        }
    }

    fn end_frame(&mut self, on_frame: &mut impl FnMut(&[u8])) {
        match self.error.take() {
            Some(FrameError::BadEscape) => self.stats.bad_escape += 1,
            Some(FrameError::OverMtu) => self.stats.over_mtu += 1,
            None if self.buf.is_empty() => self.stats.empty += 1,
            None => {
                self.stats.frames += 1;
                self.stats.bytes += self.buf.len() as u64;
                on_frame(&self.buf);
            }
        }
        self.buf.clear();
    }
}

/// Why a cleanly framed packet is still not passed on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reject {
    /// Not an IP packet: framed line noise (wrong version, too short, or a length field
    /// that disagrees with the frame).
    Noise,
    /// The IPv4 header checksum or the TCP/UDP/ICMP checksum does not verify: the packet
    /// was damaged on the line.
    BadChecksum,
}

/// Check that `frame` is one whole IPv4 or IPv6 packet whose checksums verify (IPv4
/// header; TCP, UDP and ICMP/ICMPv6 when present and not fragmented).
///
/// # Errors
/// [`Reject`] says which check failed.
pub fn check_packet(frame: &[u8]) -> Result<(), Reject> {
    let total = match frame.first().map(|b| b >> 4) {
        Some(4) if frame.len() >= 20 && frame[0] & 0x0f >= 5 => {
            usize::from(u16::from_be_bytes([frame[2], frame[3]]))
        }
        Some(6) if frame.len() >= 40 => 40 + usize::from(u16::from_be_bytes([frame[4], frame[5]])),
        _ => return Err(Reject::Noise),
    };
    if total != frame.len() {
        return Err(Reject::Noise);
    }
    match verify_frame(frame, Medium::Ip) {
        Ok(check) if check.ok() => Ok(()),
        Ok(_) => Err(Reject::BadChecksum),
        Err(_) => Err(Reject::Noise),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::testing::udp4;

    fn decode_all(mtu: usize, input: &[u8]) -> (Vec<Vec<u8>>, DecodeStats) {
        let mut d = Decoder::new(mtu);
        let mut out = Vec::new();
        d.feed(input, |f| out.push(f.to_vec()));
        (out, d.stats())
    }

    #[test]
    fn known_answers() {
        assert_eq!(encode(b""), [END, END]);
        assert_eq!(encode(b"ab"), [END, b'a', b'b', END]);
        assert_eq!(
            encode(&[END, 1, ESC, ESC, END]),
            [END, ESC, ESC_END, 1, ESC, ESC_ESC, ESC, ESC_ESC, ESC, ESC_END, END]
        );
        assert_eq!(encoded_len(&[END, 1, ESC, ESC, END]), 11);
        let mut out = [0u8; 11];
        assert_eq!(encode_to(&[END, 1, ESC, ESC, END], &mut out), 11);
        assert_eq!(out.to_vec(), encode(&[END, 1, ESC, ESC, END]));
    }

    #[test]
    fn round_trip_in_any_pieces() {
        let packets: Vec<Vec<u8>> = vec![
            b"hello".to_vec(),
            vec![END; 7],
            vec![ESC; 5],
            vec![ESC, ESC_END, END, ESC_ESC, 0],
            (0..=255).collect(),
        ];
        let mut line = Vec::new();
        for p in &packets {
            encode_into(p, &mut line);
        }
        for piece in [1, 2, 3, 7, line.len()] {
            let mut d = Decoder::new(1006);
            let mut out = Vec::new();
            for chunk in line.chunks(piece) {
                d.feed(chunk, |f| out.push(f.to_vec()));
            }
            assert_eq!(out, packets, "pieces of {piece}");
            let s = d.stats();
            // Back-to-back packets: END END between them, one empty frame each but the first.
            assert_eq!((s.frames, s.empty, s.bad_escape, s.over_mtu), (5, 5, 0, 0));
        }
    }

    /// The RFC's byte-at-a-time encoder, as a reference for the fast paths.
    fn naive_encode(packet: &[u8]) -> Vec<u8> {
        let mut out = vec![END];
        for &b in packet {
            match b {
                END => out.extend([ESC, ESC_END]),
                ESC => out.extend([ESC, ESC_ESC]),
                _ => out.push(b),
            }
        }
        out.push(END);
        out
    }

    #[test]
    fn fast_paths_agree_with_the_byte_loop() {
        let mut rng = fastrand::Rng::with_seed(17);
        for len in 0..200 {
            for density in [0u8, 2, 16, 128, 255] {
                let packet: Vec<u8> = (0..len)
                    .map(|_| {
                        if rng.u8(..) < density {
                            [END, ESC, ESC_END, ESC_ESC][rng.usize(..4)]
                        } else {
                            rng.u8(..)
                        }
                    })
                    .collect();
                let line = encode(&packet);
                assert_eq!(line, naive_encode(&packet), "len {len} density {density}");
                assert_eq!(line.len(), encoded_len(&packet));
                let cut = rng.usize(..=line.len());
                let mut d = Decoder::new(4096);
                let mut got = Vec::new();
                d.feed(&line[..cut], |f| got.push(f.to_vec()));
                d.feed(&line[cut..], |f| got.push(f.to_vec()));
                let want: Vec<Vec<u8>> = if packet.is_empty() {
                    vec![]
                } else {
                    vec![packet]
                };
                assert_eq!(got, want);
            }
        }
    }

    #[test]
    fn bad_escapes_drop_the_frame_and_are_counted() {
        let line = [
            END, b'a', ESC, b'x', b'b', END, // ESC + other byte
            b'c', ESC, END, // ESC + END
            b'o', b'k', END,
        ];
        let (frames, s) = decode_all(100, &line);
        assert_eq!(frames, vec![b"ok".to_vec()]);
        assert_eq!((s.bad_escape, s.empty, s.frames), (2, 1, 1));
    }

    #[test]
    fn over_mtu_is_dropped_up_to_the_next_end() {
        let mut line = encode(&[7; 11]);
        line.extend(encode(&[8; 10]));
        let (frames, s) = decode_all(10, &line);
        assert_eq!(frames, vec![vec![8; 10]]);
        assert_eq!(s.over_mtu, 1);
        // An escape that pushes the frame over the limit counts as well.
        let (frames, s) = decode_all(2, &encode(&[1, 2, END]));
        assert!(frames.is_empty());
        assert_eq!(s.over_mtu, 1);
    }

    #[test]
    fn an_unfinished_frame_waits() {
        let mut d = Decoder::new(100);
        let mut n = 0;
        d.feed(&[END, 1, 2, ESC], |_| n += 1);
        assert_eq!((n, d.pending()), (0, 2));
        d.feed(&[ESC_ESC, END], |f| {
            assert_eq!(f, [1, 2, ESC]);
            n += 1;
        });
        assert_eq!(n, 1);
    }

    #[test]
    fn packets_are_checked() {
        let good = udp4(1, 9, b"slip");
        assert_eq!(check_packet(&good), Ok(()));
        let mut bad_header = good.clone();
        bad_header[8] ^= 1; // TTL: IPv4 header checksum now wrong
        assert_eq!(check_packet(&bad_header), Err(Reject::BadChecksum));
        let mut bad_payload = good.clone();
        *bad_payload.last_mut().unwrap() ^= 0x40; // UDP checksum now wrong
        assert_eq!(check_packet(&bad_payload), Err(Reject::BadChecksum));
        assert_eq!(check_packet(&good[..good.len() - 1]), Err(Reject::Noise));
        assert_eq!(check_packet(b"\x7e\x01garbage"), Err(Reject::Noise));
        assert_eq!(check_packet(b""), Err(Reject::Noise));
    }
}
