//! The core's error type: every variant names the step that failed.
//!
//! Bindings convert it to Python exceptions in exactly one place
//! (`bindings/errors.rs`); OS failures keep their errno.

use std::io;

/// Everything the core can fail with.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An interface name that the kernel would reject (or silently truncate).
    #[error("invalid interface name {name:?}: {reason}")]
    InvalidName {
        /// The name as given.
        name: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A caller-supplied value is out of range or malformed (checked before any syscall).
    #[error("{0}")]
    InvalidArgument(String),
    /// A frame the adapter cannot carry (checked before any syscall).
    #[error("frame {index}: {reason}")]
    BadFrame {
        /// Position of the frame in the batch.
        index: usize,
        /// What is wrong with it.
        reason: String,
    },
    /// The adapter was closed (before or during the call).
    #[error("the adapter is closed")]
    Closed,
    /// A bounded in-memory queue had no room (loopback with `overflow="error"`).
    #[error("queue full: {sent} of {total} frames queued (capacity {capacity} frames); the rest were not sent")]
    QueueFull {
        /// Frames queued before the queue filled.
        sent: usize,
        /// Frames in the call.
        total: usize,
        /// The queue's capacity in frames.
        capacity: usize,
    },
    /// An OS call failed. `step` says which; `hint` says what usually fixes it.
    #[error("{step}: {source}{}", hint_suffix(hint.as_ref()))]
    Os {
        /// What vnetio was doing, e.g. "TUNSETIFF vn0".
        step: String,
        /// The OS error, errno included.
        source: io::Error,
        /// A remedy for the common cause, if one is known.
        hint: Option<String>,
    },
    /// A write failed part-way through a batch: `sent` frames were written before it.
    #[error("{source} (after {sent} of {total} frames were sent)")]
    Partial {
        /// Frames written before the failure.
        sent: usize,
        /// Frames in the call.
        total: usize,
        /// The failure itself (an `Os` error).
        source: Box<Error>,
    },
    /// A capture file could not be created, written, flushed or read. `frames` frames
    /// were written before the failure, and the file still ends at a complete record.
    #[error("{step} {}: {source}{}", path.display(), capture_suffix(*frames, path))]
    CaptureIo {
        /// What vnetio was doing: "create capture file", "write capture file", …
        step: &'static str,
        /// The file.
        path: std::path::PathBuf,
        /// The OS error, errno included.
        source: io::Error,
        /// Frames in the file, complete and readable (`None`: not a write error).
        frames: Option<u64>,
    },
    /// A capture file that is not a valid pcap/pcapng file (or is cut short).
    #[error("{}: {reason} at byte offset {offset}", path.display())]
    BadCapture {
        /// The file.
        path: std::path::PathBuf,
        /// Where the bad or missing data starts.
        offset: u64,
        /// What is wrong.
        reason: String,
    },
}

fn capture_suffix(frames: Option<u64>, path: &std::path::Path) -> String {
    frames.map_or_else(String::new, |n| {
        format!(
            " — the file keeps the {n} frames written before the failure, ending at a complete \
             record ({} is readable); free space or choose another path",
            path.display()
        )
    })
}

fn hint_suffix(hint: Option<&String>) -> String {
    hint.map(|h| format!(" — {h}")).unwrap_or_default()
}

impl Error {
    /// An OS error for `step`, with no hint.
    pub fn os(step: impl Into<String>, source: io::Error) -> Self {
        Error::Os {
            step: step.into(),
            source,
            hint: None,
        }
    }

    /// Attach a remedy to an `Os` error (other variants are returned unchanged).
    #[must_use]
    pub fn with_hint(mut self, text: impl Into<String>) -> Self {
        if let Error::Os { hint, .. } = &mut self {
            *hint = Some(text.into());
        }
        self
    }

    /// The errno behind this error, if it came from the OS.
    pub fn raw_os_error(&self) -> Option<i32> {
        match self {
            Error::Os { source, .. } | Error::CaptureIo { source, .. } => source.raw_os_error(),
            Error::Partial { source, .. } => source.raw_os_error(),
            _ => None,
        }
    }
}

/// The core's result type.
pub type VnetResult<T> = Result<T, Error>;
