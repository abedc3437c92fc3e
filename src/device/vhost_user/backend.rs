//! The `vhost_user_backend::VhostUserBackend` implementation: one [`NetBackend`] per
//! frontend connection. The crate's vring worker thread calls [`NetBackend::handle_event`]
//! on a guest kick. A TX kick takes the frames the ring holds into the queue pair's
//! staging batch right there (`queue::stage_tx`: the guest gets its buffers and
//! interrupt back without waiting for another thread) and wakes the reader, which swaps
//! them into its own batch; an RX kick (buffers posted) wakes a waiting sender, whose own
//! thread places frames straight into guest memory.

use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use vhost::vhost_user::message::VhostUserProtocolFeatures;
use vhost_user_backend::{VhostUserBackend, VringRwLock, VringT};
use virtio_queue::QueueT;
use vm_memory::{GuestAddressSpace, GuestMemoryAtomic, GuestMemoryMmap};
use vmm_sys_util::epoll::EventSet;
use vmm_sys_util::event::{
    new_event_consumer_and_notifier, EventConsumer, EventFlag, EventNotifier,
};

use super::queue::stage_tx;
use super::ring;
use super::Shared;

/// Guest memory as the backend crate shares it: swapped whole when the frontend sends a
/// new memory table, so a reader holding a load guard keeps its mapping alive.
pub(super) type Mem = GuestMemoryAtomic<GuestMemoryMmap<()>>;
/// One virtqueue with its kick/call eventfds, behind the crate's lock.
pub(super) type Vring = VringRwLock<Mem>;

/// Largest ring the backend accepts (QEMU's `rx_queue_size`/`tx_queue_size` top out here).
pub(super) const MAX_QUEUE_SIZE: usize = 1024;

/// Where a guest TX ring stood when the frontend stopped it (GET_VRING_BASE).
#[derive(Debug, Clone, Copy)]
struct StopMark {
    next_avail: u16,
    desc_table: u64,
    pending: u16,
}

/// State of one frontend connection.
pub(super) struct Conn {
    /// The guest's memory (empty until the frontend sends its memory table).
    pub mem: Mem,
    /// The connection's vrings, taken from the first event the crate delivers.
    vrings: OnceLock<Vec<Vring>>,
    /// Features the driver acknowledged.
    acked: AtomicU64,
    /// Per vring: where a stopped guest TX ring stood, until it restarts or the
    /// connection ends (frames still in it then are counted as lost).
    stops: Mutex<Vec<Option<StopMark>>>,
    nvrings: usize,
}

impl Conn {
    pub(super) fn new(nvrings: usize) -> Self {
        Conn {
            mem: GuestMemoryAtomic::new(GuestMemoryMmap::new()),
            vrings: OnceLock::new(),
            acked: AtomicU64::new(0),
            stops: Mutex::new(vec![None; nvrings]),
            nvrings,
        }
    }

    /// The negotiated feature bits (0 before the driver acknowledged any).
    pub(super) fn acked(&self) -> u64 {
        self.acked.load(Ordering::Acquire)
    }

    /// Vring `index`, once the crate has delivered the first event.
    pub(super) fn vring(&self, index: usize) -> Option<&Vring> {
        self.vrings.get().and_then(|v| v.get(index))
    }

    /// Whether vring `index` is set up and enabled (the data path may use it).
    pub(super) fn live(&self, index: usize) -> bool {
        self.vring(index).is_some_and(|v| {
            let st = v.get_ref();
            st.get_queue().ready() && st.is_enabled()
        })
    }

    fn stops(&self) -> std::sync::MutexGuard<'_, Vec<Option<StopMark>>> {
        self.stops
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Frames the guest queued on TX vring `index` that the device has not taken.
    fn pending_tx(&self, index: usize) -> u16 {
        let Some(vring) = self.vring(index) else {
            return 0;
        };
        let st = vring.get_ref();
        let mem = self.mem.memory();
        ring::pending(st.get_queue(), &*mem).unwrap_or(0)
    }

    /// A guest TX ring was stopped: remember where, to tell later whether it resumed
    /// (frames kept) or was reset (frames lost).
    fn mark_stop(&self, index: usize) {
        let Some(vring) = self.vring(index) else {
            return;
        };
        let (next_avail, desc_table) = {
            let st = vring.get_ref();
            (st.get_queue().next_avail(), st.get_queue().desc_table())
        };
        let pending = self.pending_tx(index);
        if let Some(slot) = self.stops().get_mut(index) {
            *slot = Some(StopMark {
                next_avail,
                desc_table,
                pending,
            });
        }
    }

    /// Vring `index` runs again: if it did not resume where it stopped, the frames that
    /// were waiting in it are gone. Returns how many.
    fn settle_restart(&self, index: usize) -> u64 {
        let Some(mark) = self.stops().get_mut(index).and_then(Option::take) else {
            return 0;
        };
        let Some(vring) = self.vring(index) else {
            return 0;
        };
        let st = vring.get_ref();
        let q = st.get_queue();
        if q.next_avail() == mark.next_avail && q.desc_table() == mark.desc_table {
            0
        } else {
            u64::from(mark.pending)
        }
    }

    /// The connection ended: guest-transmitted frames still waiting on TX vring `index`
    /// (running or stopped) are lost. Returns how many.
    pub(super) fn lost_at_end(&self, index: usize) -> u64 {
        let mark = self.stops().get(index).copied().flatten();
        match mark {
            Some(mark) => u64::from(mark.pending),
            None if self.live(index) => u64::from(self.pending_tx(index)),
            None => 0,
        }
    }
}

/// The `VhostUserBackend` of one connection.
pub(super) struct NetBackend {
    shared: Arc<Shared>,
    conn: Arc<Conn>,
}

impl NetBackend {
    pub(super) fn new(shared: Arc<Shared>, conn: Arc<Conn>) -> Self {
        NetBackend { shared, conn }
    }
}

impl VhostUserBackend for NetBackend {
    type Bitmap = ();
    type Vring = Vring;

    fn num_queues(&self) -> usize {
        self.conn.nvrings
    }

    fn max_queue_size(&self) -> usize {
        MAX_QUEUE_SIZE
    }

    fn features(&self) -> u64 {
        self.shared.cfg.offered
    }

    fn acked_features(&self, features: u64) {
        self.conn.acked.store(features, Ordering::Release);
        self.shared.state_changed();
    }

    fn protocol_features(&self) -> VhostUserProtocolFeatures {
        // MQ: GET_QUEUE_NUM; REPLY_ACK: the frontend may ask for acknowledgements;
        // CONFIG: the config space below (QEMU's virtio-net keeps its own and does not
        // ack it; other frontends may read the MAC and MTU from it).
        VhostUserProtocolFeatures::MQ
            | VhostUserProtocolFeatures::REPLY_ACK
            | VhostUserProtocolFeatures::CONFIG
    }

    fn set_event_idx(&self, _enabled: bool) {}

    fn update_memory(&self, _mem: Mem) -> io::Result<()> {
        // The crate swapped the contents of the `GuestMemoryAtomic` this connection
        // shares with it; the data path loads the new table on its next call.
        Ok(())
    }

    fn get_config(&self, offset: u32, size: u32) -> Vec<u8> {
        let cfg = self.shared.cfg.config_space();
        let size = (size as usize).min(256);
        let mut out = vec![0; size];
        if let Some(src) = cfg.get(offset as usize..) {
            let n = src.len().min(size);
            out[..n].copy_from_slice(&src[..n]);
        }
        out
    }

    fn exit_event(&self, _thread_index: usize) -> Option<(EventConsumer, EventNotifier)> {
        new_event_consumer_and_notifier(EventFlag::NONBLOCK | EventFlag::CLOEXEC).ok()
    }

    fn stop_vring(&self, queue_index: u32) -> io::Result<()> {
        let index = queue_index as usize;
        if index % 2 == 1 {
            self.conn.mark_stop(index);
        }
        Ok(())
    }

    fn handle_event(
        &self,
        device_event: u16,
        _evset: EventSet,
        vrings: &[Vring],
        _thread_id: usize,
    ) -> io::Result<()> {
        // Never an error: an error here ends the crate's worker thread for good.
        if vrings.len() == self.conn.nvrings {
            let _ = self.conn.vrings.set(vrings.to_vec());
        }
        let index = usize::from(device_event);
        if let Some(vring) = vrings.get(index) {
            let lost = self.conn.settle_restart(index);
            if lost > 0 {
                self.shared.count_lost(index / 2, lost);
            }
            // Quiet the guest until the data path has caught up; it re-enables
            // notifications when it finds the ring empty (TX) or out of buffers (RX).
            let _ = vring.disable_notification();
            let tx = index % 2 == 1;
            self.shared.stat(|s| {
                if tx {
                    s.tx_kicks += 1;
                } else {
                    s.rx_kicks += 1;
                }
            });
            if tx {
                // Take the frames here, in the thread the kick woke: the guest gets its
                // buffers (and interrupt) back without a second thread hop.
                stage_tx(&self.shared, &self.conn, index / 2);
            } else if let Some(pair) = self.shared.pairs.get(index / 2) {
                pair.raise_refill();
            }
        }
        self.shared.state_changed();
        Ok(())
    }
}
