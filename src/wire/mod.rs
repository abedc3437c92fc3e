//! Wire formats: what a frame is (`Medium`), where its layers start (`layout`), the
//! Internet checksum (`checksum`) and the virtio-net offload header (`vnet`).
//!
//! Nothing here performs I/O or allocates on the hot path, and nothing depends on the rest
//! of the crate: every other module builds on these. Contract, as in smoltcp's wire
//! module: arbitrary bytes never panic or read out of bounds; malformed input is an `Err`.

pub mod checksum;
pub mod layout;
#[cfg(test)]
pub(crate) mod testing;
pub mod vnet;

pub use layout::*;

/// What a frame is: an Ethernet frame (TAP) or a bare IP packet (TUN).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Medium {
    /// Layer 2: Ethernet frames (TAP).
    Ethernet,
    /// Layer 3: IPv4/IPv6 packets (TUN).
    Ip,
}

impl Medium {
    /// Most bytes a frame may carry beyond the MTU: Ethernet header plus one 802.1Q tag.
    pub fn link_overhead(self) -> usize {
        match self {
            Medium::Ethernet => 14 + 4,
            Medium::Ip => 0,
        }
    }

    /// The medium a Python-side name stands for: "tap" (Ethernet) or "tun" (IP).
    pub fn parse(name: &str) -> Option<Self> {
        match name {
            "tap" => Some(Medium::Ethernet),
            "tun" => Some(Medium::Ip),
            _ => None,
        }
    }

    /// Short name used in the Python API.
    pub fn as_str(self) -> &'static str {
        match self {
            Medium::Ethernet => "tap",
            Medium::Ip => "tun",
        }
    }

    /// Check that `frame` is one the kernel would take on an adapter with `mtu`:
    /// the same checks the TUN driver makes, done first so a bad frame costs no syscall
    /// and is reported with its reason.
    pub fn check_frame(self, frame: &[u8], mtu: usize) -> Result<(), String> {
        // Ethernet header, plus 4 bytes when the frame carries an 802.1Q/802.1ad tag.
        let header = match self {
            Medium::Ip => 0,
            Medium::Ethernet => match frame.get(12..14) {
                Some([0x81, 0x00] | [0x88, 0xa8]) => 18,
                _ => 14,
            },
        };
        let max = mtu + header;
        if frame.len() > max {
            return Err(format!(
                "{} bytes is larger than the adapter can carry ({max} = MTU {mtu} + {header} bytes \
                 of link header); raise the MTU or send smaller frames",
                frame.len(),
            ));
        }
        match self {
            Medium::Ethernet if frame.len() < 14 => Err(format!(
                "{} bytes is shorter than an Ethernet header (14 bytes)",
                frame.len()
            )),
            Medium::Ip => match frame.first().map(|b| b >> 4) {
                Some(4 | 6) => Ok(()),
                Some(v) => Err(format!(
                    "IP version nibble is {v}; a TUN adapter carries only IPv4 (4) or IPv6 (6) \
                     packets"
                )),
                None => Err("empty frame; a TUN adapter needs an IP packet".into()),
            },
            Medium::Ethernet => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frame_checks() {
        let e = Medium::Ethernet;
        assert!(e.check_frame(&[0; 14], 1500).is_ok());
        assert!(e.check_frame(&[0; 13], 1500).is_err());
        assert!(e.check_frame(&[0; 1514], 1500).is_ok());
        assert!(e
            .check_frame(&[0; 1515], 1500)
            .unwrap_err()
            .contains("larger than"));
        let mut tagged = vec![0u8; 1518];
        tagged[12..14].copy_from_slice(&[0x81, 0x00]);
        assert!(e.check_frame(&tagged, 1500).is_ok());
        tagged.push(0);
        assert!(e.check_frame(&tagged, 1500).is_err());
        let ip = Medium::Ip;
        assert!(ip.check_frame(&[0x45; 20], 1500).is_ok());
        assert!(ip.check_frame(&[0x60; 40], 1500).is_ok());
        assert!(ip
            .check_frame(&[0x50; 20], 1500)
            .unwrap_err()
            .contains("nibble is 5"));
        assert!(ip.check_frame(&[], 1500).is_err());
        assert!(ip.check_frame(&[0x45; 1501], 1500).is_err());
    }
}
