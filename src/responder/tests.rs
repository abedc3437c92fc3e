//! Tests of the responder: every answer checked field by field, and bad input skipped.

use super::*;
use crate::wire::checksum::{fix_frame, verify_frame};

const MAC: [u8; 6] = [2, 0, 0, 0, 0, 0x22];
const PEER_MAC: [u8; 6] = [2, 0, 0, 0, 0, 0x11];
const IP4: [u8; 4] = [192, 0, 2, 2];
const PEER4: [u8; 4] = [192, 0, 2, 1];
const IP6: [u8; 16] = [0x20, 1, 0xd, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2];
const PEER6: [u8; 16] = [0x20, 1, 0xd, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];

fn responder(medium: Medium) -> Responder {
    Responder::new(
        Config {
            mac: MAC,
            ipv4: Some(IP4),
            ipv6: Some(IP6),
        },
        medium,
    )
}

fn ether(dst: [u8; 6], ethertype: u16, payload: &[u8]) -> Vec<u8> {
    let mut f = dst.to_vec();
    f.extend_from_slice(&PEER_MAC);
    f.extend_from_slice(&ethertype.to_be_bytes());
    f.extend_from_slice(payload);
    f
}

fn arp_request(spa: [u8; 4], tpa: [u8; 4]) -> Vec<u8> {
    let mut a = vec![0, 1, 8, 0, 6, 4, 0, 1];
    a.extend_from_slice(&PEER_MAC);
    a.extend_from_slice(&spa);
    a.extend_from_slice(&[0; 6]);
    a.extend_from_slice(&tpa);
    a.extend_from_slice(&[0; 18]); // Ethernet padding
    ether([0xff; 6], ETHERTYPE_ARP, &a)
}

/// IPv4 + ICMP echo request with correct checksums (raw IP).
fn echo4_packet(dst: [u8; 4], payload: &[u8]) -> Vec<u8> {
    let mut p = vec![0x45, 0, 0, 0, 0x12, 0x34, 0x40, 0, 64, 1, 0, 0];
    p.extend_from_slice(&PEER4);
    p.extend_from_slice(&dst);
    p.extend_from_slice(&[8, 0, 0, 0, 0xab, 0xcd, 0, 7]);
    p.extend_from_slice(payload);
    let len = p.len() as u16;
    p[2..4].copy_from_slice(&len.to_be_bytes());
    fix_frame(&mut p, Medium::Ip).unwrap();
    p
}

fn ipv6_packet(src: [u8; 16], dst: [u8; 16], hop: u8, icmp: &[u8]) -> Vec<u8> {
    let mut p = vec![0x60, 0, 0, 0];
    p.extend_from_slice(&(icmp.len() as u16).to_be_bytes());
    p.extend_from_slice(&[58, hop]);
    p.extend_from_slice(&src);
    p.extend_from_slice(&dst);
    p.extend_from_slice(icmp);
    fix_frame(&mut p, Medium::Ip).unwrap();
    p
}

fn echo6_packet(dst: [u8; 16], payload: &[u8]) -> Vec<u8> {
    let mut icmp = vec![128, 0, 0, 0, 0xab, 0xcd, 0, 9];
    icmp.extend_from_slice(payload);
    ipv6_packet(PEER6, dst, 64, &icmp)
}

fn ns_packet(src: [u8; 16], dst: [u8; 16], target: [u8; 16], sllao: bool) -> Vec<u8> {
    let mut icmp = vec![135, 0, 0, 0, 0, 0, 0, 0];
    icmp.extend_from_slice(&target);
    if sllao {
        icmp.extend_from_slice(&[1, 1]);
        icmp.extend_from_slice(&PEER_MAC);
    }
    ipv6_packet(src, dst, 255, &icmp)
}

#[test]
fn arp_request_gets_a_reply() {
    let r = responder(Medium::Ethernet);
    let (reply, what) = r.answer(&arp_request(PEER4, IP4)).unwrap();
    assert_eq!(what, Answered::Arp);
    assert_eq!(reply.len(), 42);
    assert_eq!(&reply[..6], &PEER_MAC);
    assert_eq!(&reply[6..12], &MAC);
    assert_eq!(&reply[12..22], &[8, 6, 0, 1, 8, 0, 6, 4, 0, 2]);
    assert_eq!(&reply[22..28], &MAC);
    assert_eq!(&reply[28..32], &IP4);
    assert_eq!(&reply[32..38], &PEER_MAC);
    assert_eq!(&reply[38..42], &PEER4);
    // A probe (RFC 5227, sender 0.0.0.0) is answered to 0.0.0.0, as Linux does.
    let (probe, _) = r.answer(&arp_request([0; 4], IP4)).unwrap();
    assert_eq!(&probe[38..42], &[0; 4]);
    assert!(matches!(
        r.answer(&arp_request(PEER4, [192, 0, 2, 3])),
        Err(Skipped::Ignored(_))
    ));
    assert!(matches!(
        r.answer(&arp_request(IP4, IP4)),
        Err(Skipped::Ignored(_))
    ));
    let mut reply_op = arp_request(PEER4, IP4);
    reply_op[21] = 2;
    assert!(matches!(r.answer(&reply_op), Err(Skipped::Ignored(_))));
    assert!(matches!(
        r.answer(&arp_request(PEER4, IP4)[..30]),
        Err(Skipped::Malformed(_))
    ));
}

#[test]
fn echo4_reply_swaps_addresses_and_verifies() {
    let r = responder(Medium::Ethernet);
    let payload: Vec<u8> = (0..56u8).collect();
    let request = ether(MAC, ETHERTYPE_IPV4, &echo4_packet(IP4, &payload));
    let (reply, what) = r.answer(&request).unwrap();
    assert_eq!(what, Answered::Echo4);
    assert_eq!(reply.len(), request.len());
    assert_eq!((&reply[..6], &reply[6..12]), (&PEER_MAC[..], &MAC[..]));
    assert!(verify_frame(&reply, Medium::Ethernet).unwrap().ok());
    assert_eq!(
        verify_frame(&reply, Medium::Ethernet).unwrap().l4,
        Some(true)
    );
    let ip = &reply[14..];
    assert_eq!((ip[8], ip[9]), (64, 1));
    assert_eq!((&ip[12..16], &ip[16..20]), (&IP4[..], &PEER4[..]));
    assert_eq!(&ip[20..28], &[0, 0, ip[22], ip[23], 0xab, 0xcd, 0, 7]);
    assert_eq!(&ip[28..], &payload[..]);
    // Ethernet padding after a short packet is not echoed back.
    let mut padded = ether(MAC, ETHERTYPE_IPV4, &echo4_packet(IP4, b""));
    let unpadded = padded.len();
    padded.resize(60, 0xee);
    assert_eq!(r.answer(&padded).unwrap().0.len(), unpadded);
}

#[test]
fn echo4_rejects() {
    let r = responder(Medium::Ethernet);
    let good = ether(MAC, ETHERTYPE_IPV4, &echo4_packet(IP4, b"hello"));
    let mut bad_sum = good.clone();
    *bad_sum.last_mut().unwrap() ^= 1;
    assert_eq!(r.answer(&bad_sum), Err(Skipped::Malformed("ICMP checksum")));
    let mut bad_hdr = good.clone();
    bad_hdr[14 + 8] = 1; // TTL changed, header checksum now wrong
    assert_eq!(
        r.answer(&bad_hdr),
        Err(Skipped::Malformed("IPv4 header checksum"))
    );
    let other = ether(MAC, ETHERTYPE_IPV4, &echo4_packet([192, 0, 2, 9], b""));
    assert!(matches!(r.answer(&other), Err(Skipped::Ignored(_))));
    let mut other_mac = good.clone();
    other_mac[5] = 0x99;
    assert!(matches!(r.answer(&other_mac), Err(Skipped::Ignored(_))));
    let mut mismatch = good.clone();
    mismatch[12..14].copy_from_slice(&ETHERTYPE_IPV6.to_be_bytes());
    assert!(matches!(r.answer(&mismatch), Err(Skipped::Malformed(_))));
    let v6_only = Responder::new(
        Config {
            mac: MAC,
            ipv4: None,
            ipv6: Some(IP6),
        },
        Medium::Ethernet,
    );
    assert!(matches!(v6_only.answer(&good), Err(Skipped::Ignored(_))));
    assert!(matches!(
        v6_only.answer(&arp_request(PEER4, IP4)),
        Err(Skipped::Ignored(_))
    ));
}

#[test]
fn vlan_tags_are_repeated() {
    let r = responder(Medium::Ethernet);
    let plain = ether(MAC, ETHERTYPE_IPV4, &echo4_packet(IP4, b"tagged"));
    let mut tagged = plain[..12].to_vec();
    tagged.extend_from_slice(&[0x81, 0x00, 0x20, 0x0a]);
    tagged.extend_from_slice(&plain[12..]);
    let (reply, _) = r.answer(&tagged).unwrap();
    assert_eq!(&reply[12..18], &[0x81, 0x00, 0x20, 0x0a, 0x08, 0x00]);
    assert!(verify_frame(&reply, Medium::Ethernet).unwrap().ok());
    let mut arp = arp_request(PEER4, IP4);
    arp.splice(12..12, [0x81, 0x00, 0, 5]);
    let (reply, what) = r.answer(&arp).unwrap();
    assert_eq!(what, Answered::Arp);
    assert_eq!(&reply[12..18], &[0x81, 0x00, 0, 5, 8, 6]);
    assert_eq!(reply.len(), 46);
}

#[test]
fn echo6_reply() {
    let r = responder(Medium::Ethernet);
    let request = ether(MAC, ETHERTYPE_IPV6, &echo6_packet(IP6, b"ping6 payload"));
    let (reply, what) = r.answer(&request).unwrap();
    assert_eq!(what, Answered::Echo6);
    assert_eq!(reply.len(), request.len());
    assert_eq!(
        verify_frame(&reply, Medium::Ethernet).unwrap().l4,
        Some(true)
    );
    let ip = &reply[14..];
    assert_eq!((ip[6], ip[7]), (58, 64));
    assert_eq!((&ip[8..24], &ip[24..40]), (&IP6[..], &PEER6[..]));
    assert_eq!((ip[40], ip[41]), (129, 0));
    assert_eq!(&ip[44..48], &[0xab, 0xcd, 0, 9]);
    assert_eq!(&ip[48..], b"ping6 payload");
    let mut multicast = echo6_packet(ALL_NODES, b"x");
    assert!(matches!(
        r.answer(&ether([0x33, 0x33, 0, 0, 0, 1], ETHERTYPE_IPV6, &multicast)),
        Err(Skipped::Ignored(_))
    ));
    multicast[47] ^= 1;
    assert!(matches!(
        r.answer(&ether(MAC, ETHERTYPE_IPV6, &multicast)),
        Err(Skipped::Malformed(_))
    ));
}

#[test]
fn neighbour_solicitation_gets_an_advertisement() {
    let r = responder(Medium::Ethernet);
    let sn = solicited_node(&IP6);
    let ns = ether(
        ipv6_multicast_mac(&sn),
        ETHERTYPE_IPV6,
        &ns_packet(PEER6, sn, IP6, true),
    );
    let (na, what) = r.answer(&ns).unwrap();
    assert_eq!(what, Answered::NeighborSolicitation);
    assert_eq!((&na[..6], &na[6..12]), (&PEER_MAC[..], &MAC[..]));
    assert_eq!(verify_frame(&na, Medium::Ethernet).unwrap().l4, Some(true));
    let ip = &na[14..];
    assert_eq!(ip.len(), 72);
    assert_eq!((ip[6], ip[7]), (58, 255));
    assert_eq!((&ip[8..24], &ip[24..40]), (&IP6[..], &PEER6[..]));
    assert_eq!((ip[40], ip[41], ip[44]), (136, 0, 0x60));
    assert_eq!(&ip[48..64], &IP6);
    assert_eq!(&ip[64..66], &[2, 1]);
    assert_eq!(&ip[66..72], &MAC);
    // Unicast NUD probe without a link-layer option: answered to the Ethernet source.
    let nud = ether(MAC, ETHERTYPE_IPV6, &ns_packet(PEER6, IP6, IP6, false));
    assert_eq!(&r.answer(&nud).unwrap().0[..6], &PEER_MAC);
}

#[test]
fn duplicate_address_detection_is_defended_to_all_nodes() {
    let r = responder(Medium::Ethernet);
    let sn = solicited_node(&IP6);
    let dad = ether(
        ipv6_multicast_mac(&sn),
        ETHERTYPE_IPV6,
        &ns_packet([0; 16], sn, IP6, false),
    );
    let (na, _) = r.answer(&dad).unwrap();
    assert!(verify_frame(&na, Medium::Ethernet).unwrap().ok());
    assert_eq!(&na[..6], &[0x33, 0x33, 0, 0, 0, 1]);
    assert_eq!(&na[14 + 24..14 + 40], &ALL_NODES);
    assert_eq!(na[14 + 44], 0x20, "not solicited, override");
    // From :: with a link-layer option, or not to the solicited-node group: invalid.
    let bad = ether(
        ipv6_multicast_mac(&sn),
        ETHERTYPE_IPV6,
        &ns_packet([0; 16], sn, IP6, true),
    );
    assert!(matches!(r.answer(&bad), Err(Skipped::Malformed(_))));
    let bad = ether(MAC, ETHERTYPE_IPV6, &ns_packet([0; 16], IP6, IP6, false));
    assert!(matches!(r.answer(&bad), Err(Skipped::Malformed(_))));
}

#[test]
fn neighbour_solicitation_checks() {
    let r = responder(Medium::Ethernet);
    let sn = solicited_node(&IP6);
    let mac = ipv6_multicast_mac(&sn);
    let other = [0x20, 1, 0xd, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 3];
    let not_ours = ether(
        mac,
        ETHERTYPE_IPV6,
        &ns_packet(PEER6, solicited_node(&other), other, true),
    );
    assert!(matches!(r.answer(&not_ours), Err(Skipped::Ignored(_))));
    let mut hop = ns_packet(PEER6, sn, IP6, true);
    hop[7] = 64; // not in the checksum: still a valid ICMPv6 checksum
    assert!(matches!(
        r.answer(&ether(mac, ETHERTYPE_IPV6, &hop)),
        Err(Skipped::Malformed(_))
    ));
    let mut zero_opt = ns_packet(PEER6, sn, IP6, true);
    zero_opt[40 + 25] = 0;
    fix_frame(&mut zero_opt, Medium::Ip).unwrap();
    assert!(matches!(
        r.answer(&ether(mac, ETHERTYPE_IPV6, &zero_opt)),
        Err(Skipped::Malformed(_))
    ));
    // No neighbour discovery on a TUN.
    let tun = responder(Medium::Ip);
    assert!(matches!(
        tun.answer(&ns_packet(PEER6, sn, IP6, true)),
        Err(Skipped::Ignored(_))
    ));
}

#[test]
fn tun_echo_replies() {
    let r = responder(Medium::Ip);
    let (reply, what) = r.answer(&echo4_packet(IP4, b"raw")).unwrap();
    assert_eq!(what, Answered::Echo4);
    assert!(verify_frame(&reply, Medium::Ip).unwrap().ok());
    assert_eq!(&reply[16..20], &PEER4);
    let (reply, what) = r.answer(&echo6_packet(IP6, b"raw6")).unwrap();
    assert_eq!(what, Answered::Echo6);
    assert_eq!(verify_frame(&reply, Medium::Ip).unwrap().l4, Some(true));
    assert!(matches!(r.answer(&[0x10; 40]), Err(Skipped::Ignored(_))));
}

#[test]
fn batches_count_every_frame_and_truncations_never_panic() {
    let r = responder(Medium::Ethernet);
    let sn = solicited_node(&IP6);
    let frames = [
        arp_request(PEER4, IP4),
        ether(MAC, ETHERTYPE_IPV4, &echo4_packet(IP4, &[7; 100])),
        ether(MAC, ETHERTYPE_IPV6, &echo6_packet(IP6, &[9; 100])),
        ether(
            ipv6_multicast_mac(&sn),
            ETHERTYPE_IPV6,
            &ns_packet(PEER6, sn, IP6, true),
        ),
    ];
    let mut input = PacketBatch::default();
    for f in &frames {
        for cut in 0..=f.len() {
            input.push(&f[..cut], 0);
        }
    }
    let mut out = PacketBatch::default();
    let mut counters = Counters::default();
    r.answer_batch(&input, &mut out, &mut counters);
    assert_eq!(
        (counters.arp, counters.echo4, counters.echo6, counters.ns),
        (1 + 18, 1, 1, 1),
        "an ARP request is answered whatever its padding: {counters:?}"
    );
    assert_eq!(counters.answered() as usize, out.len());
    assert_eq!(
        (counters.answered() + counters.ignored + counters.malformed) as usize,
        input.len()
    );
    for reply in out.iter() {
        assert!(verify_frame(reply, Medium::Ethernet).unwrap().ok());
    }
    // Byte flips of every position: no panic, every frame counted.
    let mut flipped = PacketBatch::default();
    for f in &frames {
        for i in 0..f.len() {
            for v in [0u8, 0xff, 0x86, 0x45, 0x60] {
                let mut g = f.clone();
                g[i] = v;
                flipped.push(&g, 0);
            }
        }
    }
    let mut out = PacketBatch::default();
    let mut counters = Counters::default();
    r.answer_batch(&flipped, &mut out, &mut counters);
    assert_eq!(
        (counters.answered() + counters.ignored + counters.malformed) as usize,
        flipped.len()
    );
    for reply in out.iter() {
        let check = verify_frame(reply, Medium::Ethernet);
        assert!(
            check.map_or(true, |c| c.ok()),
            "a reply with a bad checksum"
        );
    }
}
