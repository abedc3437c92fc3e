//! A message relay between the frontend (QEMU) and the backend crate, for one protocol
//! ordering that the two disagree on.
//!
//! QEMU ≥ 7.2's vhost-user-net sends `SET_VRING_ENABLE` *before* `SET_FEATURES` (it
//! restores the ring-enable state first when it starts the device; `peer_attach` set it
//! when the driver chose its features). The `vhost` crate (0.18, and its upstream at the
//! time of writing) checks, message by message, that `VHOST_USER_F_PROTOCOL_FEATURES` was
//! already acknowledged by `SET_FEATURES`, and ends the connection when it was not: with
//! QEMU 7.2 the guest's NIC then never comes up. Offering no protocol features is no way
//! out either (QEMU 7.2 then fails the device start, and was seen to crash).
//!
//! So the backend does not talk to QEMU directly. This relay passes every message through
//! unchanged (its file descriptors too), except that a `SET_VRING_ENABLE` arriving before
//! protocol features are acknowledged is held back: the relay acknowledges it to QEMU
//! itself when QEMU asked for a reply, and replays it to the crate right after the
//! `SET_FEATURES` that acknowledges them. The crate then sees the order it expects; the
//! vrings end up in the state QEMU asked for. Everything else about the protocol stays
//! with the crates.
//!
//! Message framing (vhost-user): a 12-byte header (request, flags, payload size, all u32
//! little-endian) then the payload; file descriptors ride on the header as SCM_RIGHTS.

use std::io::{self, IoSlice, IoSliceMut, Read, Write};
use std::mem::MaybeUninit;
use std::net::Shutdown;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use rustix::net::{
    recvmsg, sendmsg, RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags, SendAncillaryBuffer,
    SendAncillaryMessage, SendFlags,
};

use super::features::PROTOCOL_FEATURES;

const SET_FEATURES: u32 = 2;
const RESET_OWNER: u32 = 4;
const SET_VRING_ENABLE: u32 = 18;
/// Header flags: protocol version 1, "this is a reply", "reply wanted".
const VERSION_1: u32 = 0x1;
const REPLY: u32 = 0x4;
const NEED_REPLY: u32 = 0x8;
const HEADER: usize = 12;
/// Larger payloads are not vhost-user messages (the largest, SET_MEM_TABLE with its
/// regions or a config space, are well under a page).
const MAX_PAYLOAD: usize = 0x1_0000;
/// Most descriptors one message carries (a memory table of up to 32 regions).
const MAX_FDS: usize = 32;

/// One vhost-user message: header fields, payload, attached descriptors.
struct Message {
    request: u32,
    flags: u32,
    payload: Vec<u8>,
    fds: Vec<OwnedFd>,
}

impl Message {
    fn bytes(&self) -> Vec<u8> {
        let mut b = Vec::with_capacity(HEADER + self.payload.len());
        b.extend_from_slice(&self.request.to_le_bytes());
        b.extend_from_slice(&self.flags.to_le_bytes());
        b.extend_from_slice(&(self.payload.len() as u32).to_le_bytes());
        b.extend_from_slice(&self.payload);
        b
    }
}

/// Read one message; `Ok(None)` at a clean end of stream.
fn read_message(sock: &UnixStream) -> io::Result<Option<Message>> {
    let mut header = [0u8; HEADER];
    let mut got = 0;
    let mut fds = Vec::new();
    while got < HEADER {
        let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(MAX_FDS))];
        let mut control = RecvAncillaryBuffer::new(&mut space);
        let r = recvmsg(
            sock,
            &mut [IoSliceMut::new(&mut header[got..])],
            &mut control,
            RecvFlags::CMSG_CLOEXEC,
        );
        let n = match r {
            Ok(m) => m.bytes,
            Err(rustix::io::Errno::INTR) => continue,
            Err(e) => return Err(e.into()),
        };
        for msg in control.drain() {
            if let RecvAncillaryMessage::ScmRights(rights) = msg {
                fds.extend(rights);
            }
        }
        if n == 0 {
            return if got == 0 {
                Ok(None)
            } else {
                Err(io::ErrorKind::UnexpectedEof.into())
            };
        }
        got += n;
    }
    let word =
        |i: usize| u32::from_le_bytes([header[i], header[i + 1], header[i + 2], header[i + 3]]);
    let size = word(8) as usize;
    if size > MAX_PAYLOAD {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("vhost-user message of {size} bytes"),
        ));
    }
    let mut payload = vec![0; size];
    (&*sock).read_exact(&mut payload)?;
    Ok(Some(Message {
        request: word(0),
        flags: word(4),
        payload,
        fds,
    }))
}

/// Write one message, its descriptors attached to the first byte.
fn write_message(sock: &UnixStream, msg: &Message) -> io::Result<()> {
    let bytes = msg.bytes();
    let mut sent = if msg.fds.is_empty() {
        0
    } else {
        let borrowed: Vec<_> = msg.fds.iter().map(AsFd::as_fd).collect();
        let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(MAX_FDS))];
        let mut control = SendAncillaryBuffer::new(&mut space);
        if !control.push(SendAncillaryMessage::ScmRights(&borrowed)) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "too many descriptors on one vhost-user message",
            ));
        }
        loop {
            match sendmsg(
                sock,
                &[IoSlice::new(&bytes)],
                &mut control,
                SendFlags::NOSIGNAL,
            ) {
                Ok(n) => break n,
                Err(rustix::io::Errno::INTR) => {}
                Err(e) => return Err(e.into()),
            }
        }
    };
    if sent < bytes.len() {
        (&*sock).write_all(&bytes[sent..])?;
        sent = bytes.len();
    }
    debug_assert_eq!(sent, bytes.len());
    Ok(())
}

/// The running relay of one connection.
pub(super) struct Relay {
    frontend: UnixStream,
    backend: UnixStream,
    threads: Vec<JoinHandle<()>>,
}

impl Relay {
    /// Relay between `frontend` (QEMU) and `backend` (the crate's end) until either side
    /// closes.
    pub(super) fn start(frontend: UnixStream, backend: UnixStream) -> io::Result<Relay> {
        let fe_writer = Arc::new(Mutex::new(frontend.try_clone()?));
        let (fe_read, be_write) = (frontend.try_clone()?, backend.try_clone()?);
        let fe_writer2 = Arc::clone(&fe_writer);
        let down = (frontend.try_clone()?, backend.try_clone()?);
        let to_backend = std::thread::Builder::new()
            .name("vnetio-vhost-relay".into())
            .spawn(move || {
                let _ = frontend_to_backend(&fe_read, &be_write, &fe_writer2);
                let _ = down.0.shutdown(Shutdown::Both);
                let _ = down.1.shutdown(Shutdown::Both);
            })?;
        let (be_read, down) = (
            backend.try_clone()?,
            (frontend.try_clone()?, backend.try_clone()?),
        );
        let to_frontend = std::thread::Builder::new()
            .name("vnetio-vhost-relay".into())
            .spawn(move || {
                let _ = backend_to_frontend(&be_read, &fe_writer);
                let _ = down.0.shutdown(Shutdown::Both);
                let _ = down.1.shutdown(Shutdown::Both);
            })?;
        Ok(Relay {
            frontend,
            backend,
            threads: vec![to_backend, to_frontend],
        })
    }

    /// End the relay (both directions) and wait for its threads.
    pub(super) fn stop(self) {
        let _ = self.frontend.shutdown(Shutdown::Both);
        let _ = self.backend.shutdown(Shutdown::Both);
        for t in self.threads {
            let _ = t.join();
        }
    }
}

fn lock(m: &Mutex<UnixStream>) -> std::sync::MutexGuard<'_, UnixStream> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn frontend_to_backend(
    frontend: &UnixStream,
    backend: &UnixStream,
    fe_writer: &Mutex<UnixStream>,
) -> io::Result<()> {
    let mut protocol_acked = false;
    let mut held: Vec<Message> = Vec::new();
    while let Some(msg) = read_message(frontend)? {
        match msg.request {
            SET_VRING_ENABLE if !protocol_acked => {
                if msg.flags & NEED_REPLY != 0 {
                    let ack = Message {
                        request: SET_VRING_ENABLE,
                        flags: VERSION_1 | REPLY,
                        payload: 0u64.to_le_bytes().to_vec(),
                        fds: Vec::new(),
                    };
                    write_message(&lock(fe_writer), &ack)?;
                }
                held.push(Message {
                    flags: msg.flags & !NEED_REPLY,
                    ..msg
                });
            }
            SET_FEATURES => {
                let features = msg
                    .payload
                    .get(..8)
                    .and_then(|b| b.try_into().ok())
                    .map_or(0, u64::from_le_bytes);
                write_message(backend, &msg)?;
                protocol_acked = features & PROTOCOL_FEATURES != 0;
                if protocol_acked {
                    for m in held.drain(..) {
                        write_message(backend, &m)?;
                    }
                }
            }
            RESET_OWNER => {
                protocol_acked = false;
                held.clear();
                write_message(backend, &msg)?;
            }
            _ => write_message(backend, &msg)?,
        }
    }
    Ok(())
}

fn backend_to_frontend(backend: &UnixStream, fe_writer: &Mutex<UnixStream>) -> io::Result<()> {
    while let Some(msg) = read_message(backend)? {
        write_message(&lock(fe_writer), &msg)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Seek;

    fn msg(request: u32, flags: u32, payload: &[u8]) -> Message {
        Message {
            request,
            flags,
            payload: payload.to_vec(),
            fds: Vec::new(),
        }
    }

    #[test]
    fn holds_vring_enable_until_features_and_passes_descriptors() {
        let (qemu, fe) = UnixStream::pair().unwrap();
        let (be, crate_end) = UnixStream::pair().unwrap();
        let relay = Relay::start(fe, be).unwrap();
        // QEMU's order: an early SET_VRING_ENABLE (reply wanted), a message with a
        // descriptor, then SET_FEATURES with protocol features.
        let enable = [0u8, 0, 0, 0, 1, 0, 0, 0];
        write_message(
            &qemu,
            &msg(SET_VRING_ENABLE, VERSION_1 | NEED_REPLY, &enable),
        )
        .unwrap();
        let ack = read_message(&qemu).unwrap().unwrap();
        assert_eq!(
            (ack.request, ack.flags),
            (SET_VRING_ENABLE, VERSION_1 | REPLY)
        );
        assert_eq!(ack.payload, vec![0; 8]);
        let mut file = tempfile_in_memory();
        file.write_all(b"kick").unwrap();
        let with_fd = Message {
            fds: vec![OwnedFd::from(file)],
            ..msg(12, VERSION_1, &[0; 8])
        };
        write_message(&qemu, &with_fd).unwrap();
        write_message(
            &qemu,
            &msg(SET_FEATURES, VERSION_1, &PROTOCOL_FEATURES.to_le_bytes()),
        )
        .unwrap();
        // The crate sees: the descriptor message, SET_FEATURES, then the held enable.
        let m = read_message(&crate_end).unwrap().unwrap();
        assert_eq!(m.request, 12);
        assert_eq!(m.fds.len(), 1);
        let mut passed = std::fs::File::from(m.fds.into_iter().next().unwrap());
        passed.rewind().unwrap();
        let mut s = String::new();
        passed.read_to_string(&mut s).unwrap();
        assert_eq!(s, "kick");
        assert_eq!(
            read_message(&crate_end).unwrap().unwrap().request,
            SET_FEATURES
        );
        let held = read_message(&crate_end).unwrap().unwrap();
        assert_eq!(
            (held.request, held.flags, held.payload.as_slice()),
            (SET_VRING_ENABLE, VERSION_1, &enable[..])
        );
        // Later ones pass straight through; replies flow back.
        write_message(&qemu, &msg(SET_VRING_ENABLE, VERSION_1, &enable)).unwrap();
        assert_eq!(
            read_message(&crate_end).unwrap().unwrap().request,
            SET_VRING_ENABLE
        );
        write_message(&crate_end, &msg(1, VERSION_1 | REPLY, &[7; 8])).unwrap();
        assert_eq!(read_message(&qemu).unwrap().unwrap().payload, vec![7; 8]);
        // QEMU goes away: the crate's end sees the end of the stream.
        drop(qemu);
        assert!(read_message(&crate_end).unwrap().is_none());
        relay.stop();
    }

    fn tempfile_in_memory() -> std::fs::File {
        let dir = std::env::temp_dir().join(format!("vnetio-shim-{}", std::process::id()));
        let f = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&dir)
            .unwrap();
        std::fs::remove_file(&dir).unwrap();
        f
    }
}
