//! Serial lines: virtual null-modem pairs and IP over a serial line.
//!
//! - `pty`: one pseudo-terminal (master for the relay, slave for users), raw mode.
//! - `pair`: [`SerialPair`], two ptys joined by a relay thread (pacing, faults, counters).
//! - `slip`: RFC 1055 framing, pure (no I/O), fuzzed.
//! - `link`: [`SlipLink`], a tty bridged to a TUN, or to itself as an in-memory adapter.

pub mod link;
pub mod pair;
pub mod pty;
pub mod slip;

pub use link::{LinkOptions, LinkStats, SlipLink};
pub use pair::{Faults, LineStats, PairOptions, SerialPair};
