//! Offload in software: what a NIC or the kernel would otherwise do with the metadata in a
//! virtio-net header. `gso` splits super-frames into wire-sized frames and completes
//! partial checksums; `gro` merges runs of frames of one flow into super-frames.
//!
//! Pure functions over frames and batches: no I/O.

pub mod gro;
pub mod gso;
