//! WireGuard keys as users write them: 32 bytes in standard base64 (44 characters), the
//! text `wg genkey`, `wg pubkey` and wg-quick files use.
//!
//! The curve arithmetic is x25519-dalek's (through boringtun's re-export); this module only
//! reads and writes the text form and clamps new private keys the way `wg genkey` prints
//! them, so keys are interchangeable with wireguard-tools in both directions.

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use boringtun::x25519::{PublicKey, StaticSecret};

use crate::error::{Error, VnetResult};

/// Length of every WireGuard key (private, public, preshared).
pub const KEY_LEN: usize = 32;

/// Read a key from its base64 text. `what` names the key in the error ("private key",
/// "peer public key", …).
pub fn parse(text: &str, what: &str) -> VnetResult<[u8; KEY_LEN]> {
    let text = text.trim();
    let bad = |why: String| {
        Err(Error::InvalidArgument(format!(
            "{what} {}: {why}; a WireGuard key is 32 bytes in base64 (44 characters ending \
             in '='), as printed by `wg genkey` or `vnetio wg genkey`",
            shown(text)
        )))
    };
    let bytes = match STANDARD.decode(text) {
        Ok(bytes) => bytes,
        Err(e) => return bad(format!("not base64 ({e})")),
    };
    match <[u8; KEY_LEN]>::try_from(bytes.as_slice()) {
        Ok(key) => Ok(key),
        Err(_) => bad(format!("{} bytes long, not {KEY_LEN}", bytes.len())),
    }
}

/// A key in an error message: never a private key's text in full.
fn shown(text: &str) -> String {
    match text.char_indices().nth(6) {
        Some((cut, _)) => format!("{:?}", format!("{}…", &text[..cut])),
        None => format!("{text:?}"),
    }
}

/// The base64 text of a key.
pub fn to_text(key: &[u8; KEY_LEN]) -> String {
    STANDARD.encode(key)
}

/// A new private key from the operating system's random source, clamped as Curve25519
/// private keys are (what `wg genkey` prints).
pub fn generate_private() -> [u8; KEY_LEN] {
    let mut key = StaticSecret::random_from_rng(rand_core::OsRng).to_bytes();
    key[0] &= 0b1111_1000;
    key[31] = (key[31] & 0b0111_1111) | 0b0100_0000;
    key
}

/// The public key of a private key (what `wg pubkey` prints).
pub fn public_of(private: &[u8; KEY_LEN]) -> [u8; KEY_LEN] {
    PublicKey::from(&StaticSecret::from(*private)).to_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_clamping() {
        let key = generate_private();
        assert_eq!(key[0] & 7, 0);
        assert_eq!(key[31] & 0xc0, 0x40);
        let text = to_text(&key);
        assert_eq!(text.len(), 44);
        assert_eq!(parse(&text, "private key").unwrap(), key);
        assert_ne!(
            generate_private(),
            key,
            "two keys from the OS random source are equal"
        );
    }

    #[test]
    fn public_key_matches_rfc7748() {
        // RFC 7748 section 6.1: Alice's private and public key.
        let alice: [u8; 32] = [
            0x77, 0x07, 0x6d, 0x0a, 0x73, 0x18, 0xa5, 0x7d, 0x3c, 0x16, 0xc1, 0x72, 0x51, 0xb2,
            0x66, 0x45, 0xdf, 0x4c, 0x2f, 0x87, 0xeb, 0xc0, 0x99, 0x2a, 0xb1, 0x77, 0xfb, 0xa5,
            0x1d, 0xb9, 0x2c, 0x2a,
        ];
        let public: [u8; 32] = [
            0x85, 0x20, 0xf0, 0x09, 0x89, 0x30, 0xa7, 0x54, 0x74, 0x8b, 0x7d, 0xdc, 0xb4, 0x3e,
            0xf7, 0x5a, 0x0d, 0xbf, 0x3a, 0x0d, 0x26, 0x38, 0x1a, 0xf4, 0xeb, 0xa4, 0xa9, 0x8e,
            0xaa, 0x9b, 0x4e, 0x6a,
        ];
        assert_eq!(public_of(&alice), public);
    }

    #[test]
    fn bad_keys_are_named_and_not_echoed() {
        let secret = "c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0LXNlY3JldA==";
        let err = parse(secret, "private key").unwrap_err().to_string();
        assert!(
            err.contains("private key") && err.contains("bytes long"),
            "{err}"
        );
        assert!(!err.contains(secret), "the error repeats the key: {err}");
        let err = parse("not base64!", "peer public key")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("not base64") && err.contains("wg genkey"),
            "{err}"
        );
    }
}
