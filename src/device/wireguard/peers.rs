//! The peer table: who the peers are, which inner addresses each may use (cryptokey
//! routing over AllowedIPs), and where each was last heard from (roaming).

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::SystemTime;

use boringtun::noise::rate_limiter::RateLimiter;
use boringtun::noise::Tunn;
use boringtun::x25519::{PublicKey, StaticSecret};
use ip_network::IpNetwork;
use ip_network_table::IpNetworkTable;

use super::keys::KEY_LEN;
use crate::device::tuntap::parse_cidr;
use crate::error::{Error, VnetResult};

/// What a peer is configured with (a `[Peer]` section of a wg-quick file).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerConfig {
    /// The peer's public key.
    pub public_key: [u8; KEY_LEN],
    /// An optional preshared key mixed into the handshake.
    pub preshared_key: Option<[u8; KEY_LEN]>,
    /// Where to send to before the peer has been heard from.
    pub endpoint: Option<SocketAddr>,
    /// Inner addresses routed to this peer and accepted from it.
    pub allowed_ips: Vec<IpNetwork>,
    /// Send a keepalive after this many seconds without traffic (NAT traversal).
    pub persistent_keepalive: Option<u16>,
}

/// How one peer changes in a reconfiguration (one `public_key=` block of the userspace
/// API's `set=1`, as `wg set`/`wg setconf` send it). `None` leaves a setting as it is.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PeerChange {
    /// The peer's public key.
    pub public_key: [u8; KEY_LEN],
    /// Remove the peer (every other field is then ignored; an unknown peer is no error).
    pub remove: bool,
    /// Change the peer only if it exists (else the block is skipped).
    pub update_only: bool,
    /// A new preshared key (all zeros: none).
    pub preshared_key: Option<[u8; KEY_LEN]>,
    /// A new endpoint.
    pub endpoint: Option<SocketAddr>,
    /// A new persistent keepalive interval (0: off).
    pub persistent_keepalive: Option<u16>,
    /// Drop the peer's AllowedIPs before adding `allowed_ips`.
    pub replace_allowed_ips: bool,
    /// AllowedIPs to add (a network another peer had moves to this one).
    pub allowed_ips: Vec<IpNetwork>,
}

/// This interface's keys, and the cookie guard keyed on its public key.
pub struct Identity {
    /// The private key.
    pub private: StaticSecret,
    /// Its public key.
    pub public: PublicKey,
    /// Handshake initiations per second answered before cookies are asked for.
    pub rate_limiter: RateLimiter,
}

impl Identity {
    /// The identity of `private`, with a guard of `rate` handshakes a second.
    pub fn new(private: [u8; KEY_LEN], rate: u64) -> Identity {
        let private = StaticSecret::from(private);
        let public = PublicKey::from(&private);
        Identity {
            rate_limiter: RateLimiter::new(&public, rate),
            private,
            public,
        }
    }
}

/// Read an AllowedIPs entry: an address with an optional prefix length ("10.0.0.0/24",
/// "fd00::1/128", "10.0.0.7" = /32). Host bits are cleared, as `wg` does.
pub fn parse_network(text: &str) -> VnetResult<IpNetwork> {
    let (addr, prefix) = parse_cidr(text.trim()).map_err(|e| {
        Error::InvalidArgument(format!(
            "allowed IP: {e}; write an address with an optional prefix length, such as \
             \"10.0.0.0/24\", \"10.0.0.7\" or \"fd00::/64\""
        ))
    })?;
    IpNetwork::new_truncate(addr, prefix)
        .map_err(|e| Error::InvalidArgument(format!("allowed IP {text:?}: {e}")))
}

/// An endpoint as we keep it: IPv4-mapped IPv6 addresses as plain IPv4.
pub fn canonical(addr: SocketAddr) -> SocketAddr {
    match addr {
        SocketAddr::V6(v6) => match v6.ip().to_ipv4_mapped() {
            Some(v4) => SocketAddr::new(IpAddr::V4(v4), v6.port()),
            None => addr,
        },
        SocketAddr::V4(_) => addr,
    }
}

/// One peer: its noise state machine, its endpoint and its counters.
pub struct Peer {
    /// Index in the table; the top 24 bits of the session indices of its handshakes.
    pub id: u32,
    /// Its public key.
    pub public_key: [u8; KEY_LEN],
    /// What it is configured with (the endpoint as configured, not as roamed); changed in
    /// place by a reconfiguration, under the table's write lock.
    config: Mutex<PeerConfig>,
    tunn: Mutex<Tunn>,
    endpoint: Mutex<Option<SocketAddr>>,
    /// Datagrams and their bytes received from and sent to this peer.
    pub rx_datagrams: AtomicU64,
    /// Bytes of those datagrams (what `wg show` reports as received).
    pub rx_bytes: AtomicU64,
    /// Datagrams sent to this peer.
    pub tx_datagrams: AtomicU64,
    /// Bytes of those datagrams (what `wg show` reports as sent).
    pub tx_bytes: AtomicU64,
}

impl Peer {
    fn new(id: u32, private: &StaticSecret, config: PeerConfig) -> Self {
        let tunn = Tunn::new(
            private.clone(),
            PublicKey::from(config.public_key),
            config.preshared_key,
            config.persistent_keepalive,
            id,
            None, // a rate limiter of its own, reset by its own timers
        );
        Peer {
            id,
            public_key: config.public_key,
            endpoint: Mutex::new(config.endpoint.map(canonical)),
            config: Mutex::new(config),
            tunn: Mutex::new(tunn),
            rx_datagrams: AtomicU64::new(0),
            rx_bytes: AtomicU64::new(0),
            tx_datagrams: AtomicU64::new(0),
            tx_bytes: AtomicU64::new(0),
        }
    }

    /// The noise state machine (one lock per peer: a handshake or a packet at a time).
    pub fn tunn(&self) -> MutexGuard<'_, Tunn> {
        // Tunn keeps its own state consistent across calls; a panic inside it while the
        // lock was held poisons the lock but leaves nothing half-written that we read.
        self.tunn
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// What it is configured with now.
    pub fn config(&self) -> MutexGuard<'_, PeerConfig> {
        self.config
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Where datagrams for this peer go now.
    pub fn endpoint(&self) -> Option<SocketAddr> {
        *self
            .endpoint
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// An authenticated datagram came from `from`: send there from now on (roaming).
    pub fn heard_from(&self, from: SocketAddr, bytes: usize) {
        self.rx_datagrams.fetch_add(1, Relaxed);
        self.rx_bytes.fetch_add(bytes as u64, Relaxed);
        let from = canonical(from);
        let mut endpoint = self
            .endpoint
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if *endpoint != Some(from) {
            *endpoint = Some(from);
        }
    }

    /// What `wg show` prints for this peer.
    pub fn info(&self) -> PeerInfo {
        let since = self.tunn().time_since_last_handshake();
        let config = self.config().clone();
        PeerInfo {
            public_key: self.public_key,
            endpoint: self.endpoint(),
            allowed_ips: config.allowed_ips,
            latest_handshake: since.and_then(|d| SystemTime::now().checked_sub(d)),
            rx_bytes: self.rx_bytes.load(Relaxed),
            tx_bytes: self.tx_bytes.load(Relaxed),
            rx_datagrams: self.rx_datagrams.load(Relaxed),
            tx_datagrams: self.tx_datagrams.load(Relaxed),
            persistent_keepalive: config.persistent_keepalive,
            preshared_key: config.preshared_key.is_some(),
        }
    }
}

/// A peer as `wg show` describes it.
#[derive(Debug, Clone)]
pub struct PeerInfo {
    /// Its public key.
    pub public_key: [u8; KEY_LEN],
    /// Where datagrams go now (configured, or roamed to).
    pub endpoint: Option<SocketAddr>,
    /// Its AllowedIPs.
    pub allowed_ips: Vec<IpNetwork>,
    /// When the latest handshake completed (`None`: never).
    pub latest_handshake: Option<SystemTime>,
    /// Bytes of datagrams received from it.
    pub rx_bytes: u64,
    /// Bytes of datagrams sent to it.
    pub tx_bytes: u64,
    /// Datagrams received from it.
    pub rx_datagrams: u64,
    /// Datagrams sent to it.
    pub tx_datagrams: u64,
    /// Its persistent keepalive interval in seconds.
    pub persistent_keepalive: Option<u16>,
    /// Whether a preshared key is set.
    pub preshared_key: bool,
}

/// Every peer, indexed three ways: by table index (data and handshake-response
/// datagrams carry it), by public key (handshake initiations reveal it), and by inner
/// address (AllowedIPs, longest prefix). It holds the interface's identity too, so a new
/// private key and the peers it applies to change together.
pub struct PeerTable {
    /// This interface's keys.
    pub identity: Identity,
    by_id: HashMap<u32, Arc<Peer>>,
    by_key: HashMap<[u8; KEY_LEN], u32>,
    routes: IpNetworkTable<u32>,
    next_id: u32,
}

/// Session indices carry the peer's table index in their top 24 bits.
const MAX_PEER_ID: u32 = (1 << 24) - 1;

impl PeerTable {
    /// An empty table for an interface of this identity.
    pub fn new(identity: Identity) -> PeerTable {
        PeerTable {
            identity,
            by_id: HashMap::new(),
            by_key: HashMap::new(),
            routes: IpNetworkTable::new(),
            next_id: 0,
        }
    }

    /// Peers that can still be added over the table's lifetime.
    pub fn room(&self) -> u32 {
        (MAX_PEER_ID + 1).saturating_sub(self.next_id)
    }

    /// Add a peer, or replace the one with the same public key (its sessions restart).
    /// AllowedIPs that another peer had move to this one, as with `wg set`.
    pub fn add(&mut self, config: PeerConfig) -> VnetResult<Arc<Peer>> {
        if config.public_key == self.identity.public.to_bytes() {
            return Err(Error::InvalidArgument(
                "the peer's public key is this interface's own public key; give the other \
                 end's key (`wg pubkey` of its private key)"
                    .into(),
            ));
        }
        self.remove(&config.public_key);
        if self.next_id > MAX_PEER_ID {
            return Err(Error::InvalidArgument(format!(
                "more than {MAX_PEER_ID} peers were added to this interface over its lifetime; \
                 make a new interface"
            )));
        }
        let id = self.next_id;
        self.next_id += 1;
        for net in &config.allowed_ips {
            self.claim(*net, id);
        }
        let peer = Arc::new(Peer::new(id, &self.identity.private, config));
        self.by_key.insert(peer.public_key, id);
        self.by_id.insert(id, Arc::clone(&peer));
        Ok(peer)
    }

    /// Route `net` to peer `id`. As with `wg set`, a network another peer had moves to
    /// this one, and leaves that peer's AllowedIPs.
    fn claim(&mut self, net: IpNetwork, id: u32) {
        if let Some(previous) = self.routes.insert(net, id) {
            if previous != id {
                if let Some(other) = self.by_id.get(&previous) {
                    other.config().allowed_ips.retain(|n| *n != net);
                }
            }
        }
    }

    /// Apply one peer's change of a reconfiguration: remove it, skip it (`update_only`
    /// and unknown, or the interface's own key, which the kernel's WireGuard ignores
    /// silently too), create it, or change it in place. An endpoint or AllowedIPs change
    /// keeps its sessions; a new preshared key or keepalive interval restarts them (the
    /// protocol's state machine takes both only when it is made). Returns the peer when
    /// its state machine is new (the caller may start a handshake).
    pub fn change(&mut self, change: &PeerChange) -> VnetResult<Option<Arc<Peer>>> {
        let key = change.public_key;
        if change.remove {
            self.remove(&key);
            return Ok(None);
        }
        if key == self.identity.public.to_bytes() {
            return Ok(None);
        }
        let psk = change
            .preshared_key
            .map(|k| Some(k).filter(|k| *k != [0; KEY_LEN]));
        let keepalive = change
            .persistent_keepalive
            .map(|s| Some(s).filter(|&s| s > 0));
        let Some(peer) = self.by_key(&key).cloned() else {
            if change.update_only {
                return Ok(None);
            }
            let mut allowed_ips: Vec<IpNetwork> = Vec::new();
            for net in &change.allowed_ips {
                if !allowed_ips.contains(net) {
                    allowed_ips.push(*net);
                }
            }
            let config = PeerConfig {
                public_key: key,
                preshared_key: psk.flatten(),
                endpoint: change.endpoint,
                allowed_ips,
                persistent_keepalive: keepalive.flatten(),
            };
            return self.add(config).map(Some);
        };
        if change.replace_allowed_ips {
            let old = std::mem::take(&mut peer.config().allowed_ips);
            for net in old {
                if self.routes.exact_match(net) == Some(&peer.id) {
                    self.routes.remove(net);
                }
            }
        }
        for net in &change.allowed_ips {
            self.claim(*net, peer.id);
            let mut config = peer.config();
            if !config.allowed_ips.contains(net) {
                config.allowed_ips.push(*net);
            }
        }
        let mut config = peer.config();
        if let Some(endpoint) = change.endpoint {
            config.endpoint = Some(endpoint);
            *peer
                .endpoint
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(canonical(endpoint));
        }
        let psk_changed = psk.is_some_and(|k| k != config.preshared_key);
        let keepalive_changed = keepalive.is_some_and(|k| k != config.persistent_keepalive);
        if !(psk_changed || keepalive_changed) {
            return Ok(None);
        }
        if let Some(k) = psk {
            config.preshared_key = k;
        }
        if let Some(k) = keepalive {
            config.persistent_keepalive = k;
        }
        *peer.tunn() = Tunn::new(
            self.identity.private.clone(),
            PublicKey::from(key),
            config.preshared_key,
            config.persistent_keepalive,
            peer.id,
            None,
        );
        drop(config);
        Ok(Some(peer))
    }

    /// A new private key: every peer's sessions end (their handshakes use the new key),
    /// and a peer whose public key is the new one is removed, as the kernel's WireGuard
    /// does. The same key again changes nothing.
    pub fn set_identity(&mut self, identity: Identity) {
        if identity.private.to_bytes() == self.identity.private.to_bytes() {
            return;
        }
        self.remove(&identity.public.to_bytes());
        for peer in self.by_id.values() {
            peer.tunn()
                .set_static_private(identity.private.clone(), identity.public, None);
        }
        self.identity = identity;
    }

    /// Remove every peer.
    pub fn clear(&mut self) {
        let keys: Vec<_> = self.by_key.keys().copied().collect();
        for key in keys {
            self.remove(&key);
        }
    }

    /// Remove a peer and its routes. Returns whether it existed.
    pub fn remove(&mut self, public_key: &[u8; KEY_LEN]) -> bool {
        let Some(id) = self.by_key.remove(public_key) else {
            return false;
        };
        if let Some(peer) = self.by_id.remove(&id) {
            for net in &peer.config().allowed_ips {
                if self.routes.exact_match(*net) == Some(&id) {
                    self.routes.remove(*net);
                }
            }
        }
        true
    }

    /// The peer whose session indices carry `index` (a receiver index from a datagram).
    pub fn by_index(&self, receiver_index: u32) -> Option<&Arc<Peer>> {
        self.by_id.get(&(receiver_index >> 8))
    }

    /// The peer with this public key.
    pub fn by_key(&self, key: &[u8; KEY_LEN]) -> Option<&Arc<Peer>> {
        self.by_key.get(key).and_then(|id| self.by_id.get(id))
    }

    /// The peer an inner address routes to (longest prefix of every AllowedIPs).
    pub fn route(&self, addr: IpAddr) -> Option<&Arc<Peer>> {
        self.routes
            .longest_match(addr)
            .and_then(|(_, id)| self.by_id.get(id))
    }

    /// Every peer, in the order they were added.
    pub fn peers(&self) -> Vec<Arc<Peer>> {
        let mut all: Vec<_> = self.by_id.values().cloned().collect();
        all.sort_by_key(|p| p.id);
        all
    }
}

#[cfg(test)]
mod tests {
    use super::super::keys;
    use super::*;

    fn config(key: u8, allowed: &[&str]) -> PeerConfig {
        PeerConfig {
            public_key: keys::public_of(&[key; 32]),
            preshared_key: None,
            endpoint: None,
            allowed_ips: allowed.iter().map(|a| parse_network(a).unwrap()).collect(),
            persistent_keepalive: None,
        }
    }

    #[test]
    fn networks_parse_like_wg() {
        assert_eq!(
            parse_network("10.0.0.7/24").unwrap().to_string(),
            "10.0.0.0/24"
        );
        assert_eq!(
            parse_network("10.0.0.7").unwrap().to_string(),
            "10.0.0.7/32"
        );
        assert_eq!(
            parse_network(" fd00::1/64 ").unwrap().to_string(),
            "fd00::/64"
        );
        assert_eq!(parse_network("::/0").unwrap().to_string(), "::/0");
        for bad in [
            "10.0.0.0/33",
            "fd00::/129",
            "10.0.0/8",
            "x/8",
            "10.0.0.0/-1",
            "",
        ] {
            let err = parse_network(bad).unwrap_err().to_string();
            assert!(
                err.contains("allowed IP") && err.contains("such as"),
                "{bad}: {err}"
            );
        }
    }

    #[test]
    fn longest_prefix_wins_and_routes_move() {
        let mut table = PeerTable::new(Identity::new([9u8; 32], 100));
        let a = table.add(config(1, &["10.0.0.0/8", "fd00::/16"])).unwrap();
        let b = table
            .add(config(2, &["10.1.0.0/16", "10.2.3.4/32"]))
            .unwrap();
        let id = |table: &PeerTable, ip: &str| table.route(ip.parse().unwrap()).map(|p| p.id);
        assert_eq!(id(&table, "10.9.9.9"), Some(a.id));
        assert_eq!(id(&table, "10.1.2.3"), Some(b.id));
        assert_eq!(id(&table, "10.2.3.4"), Some(b.id));
        assert_eq!(id(&table, "10.2.3.5"), Some(a.id));
        assert_eq!(id(&table, "fd00::5"), Some(a.id));
        assert_eq!(id(&table, "fd01::5"), None);
        assert_eq!(id(&table, "192.0.2.1"), None);
        // A third peer takes 10.0.0.0/8 over, as `wg set … allowed-ips` would.
        let c = table.add(config(3, &["10.0.0.0/8"])).unwrap();
        assert_eq!(id(&table, "10.9.9.9"), Some(c.id));
        // Removing a peer removes only the routes it still owns.
        assert!(table.remove(&a.public_key));
        assert_eq!(id(&table, "10.9.9.9"), Some(c.id));
        assert_eq!(id(&table, "fd00::5"), None);
        assert!(!table.remove(&a.public_key));
        assert_eq!(table.by_index(b.id << 8 | 0x17).map(|p| p.id), Some(b.id));
        assert_eq!(table.by_key(&c.public_key).map(|p| p.id), Some(c.id));
        assert_eq!(table.peers().len(), 2);
    }

    #[test]
    fn own_key_is_refused() {
        let mut table = PeerTable::new(Identity::new([9u8; 32], 100));
        let err = table.add(config(9, &[])).err().unwrap().to_string();
        assert!(err.contains("own public key"), "{err}");
    }

    #[test]
    fn endpoints_are_canonical() {
        let mapped: SocketAddr = "[::ffff:192.0.2.1]:51820".parse().unwrap();
        assert_eq!(canonical(mapped), "192.0.2.1:51820".parse().unwrap());
        let v6: SocketAddr = "[2001:db8::1]:1".parse().unwrap();
        assert_eq!(canonical(v6), v6);
    }
}
