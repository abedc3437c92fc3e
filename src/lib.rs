//! vnetio: high-speed packet I/O through Linux TUN/TAP adapters.
//!
//! The pure-Rust core: devices (`device`), batch arenas (`batch`) and errors (`error`).
//! The Python bindings live in `bindings` (the only module that uses PyO3), compiled
//! with the `python` feature, which maturin turns on.
#![cfg_attr(not(feature = "python"), forbid(unsafe_op_in_unsafe_fn))]

pub mod batch;
pub mod capture;
pub mod device;
pub mod error;
pub mod filter;
pub mod offload;
pub mod responder;
pub mod sys;
pub mod wire;

#[cfg(feature = "python")]
mod bindings;

pub use batch::PacketBatch;
pub use device::{Device, Stats};
pub use error::{Error, VnetResult};
pub use wire::Medium;

/// The core's version (the Python package checks it matches its own at import).
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// Bumped whenever the Python layer and the core must change together.
pub const ABI_VERSION: u32 = 1;
