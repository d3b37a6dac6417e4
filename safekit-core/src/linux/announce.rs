//! Announcing a virtual IP after takeover, so that neighbours (the client,
//! the switch, the router) map it to this node at once instead of waiting
//! for their caches to expire: a gratuitous ARP for IPv4, an unsolicited
//! neighbour advertisement with the override flag for IPv6 (RFC 4861 §7.2.6).

use std::net::{Ipv4Addr, Ipv6Addr};

/// A MAC address written `5a:fe:0a:51:00:64`.
pub fn parse_mac(text: &str) -> Option<[u8; 6]> {
    let bytes: Vec<u8> = text.trim().split(':').map(|h| u8::from_str_radix(h, 16).ok()).collect::<Option<_>>()?;
    bytes.try_into().ok()
}

/// The MAC address of interface `ifname`.
pub fn mac_of(ifname: &str) -> Result<[u8; 6], String> {
    let mac_text = std::fs::read_to_string(format!("/sys/class/net/{ifname}/address")).map_err(|e| format!("{ifname}: {e}"))?;
    parse_mac(&mac_text).ok_or_else(|| format!("{ifname}: bad MAC address {}", mac_text.trim()))
}

fn index_of(ifname: &str) -> Result<u32, String> {
    std::fs::read_to_string(format!("/sys/class/net/{ifname}/ifindex"))
        .map_err(|e| format!("{ifname}: {e}"))?
        .trim()
        .parse()
        .map_err(|_| format!("{ifname}: bad ifindex"))
}

/// Sends one unsolicited neighbour advertisement for `ip` to all nodes
/// (ff02::1) from `ifname`, with the override flag so that existing cache
/// entries take this node's MAC. The kernel fills in the ICMPv6 checksum.
pub fn unsolicited_na(ifname: &str, ip: Ipv6Addr) -> Result<(), String> {
    let mac = mac_of(ifname)?;
    let index = index_of(ifname)?;
    let sock = socket2::Socket::new(socket2::Domain::IPV6, socket2::Type::RAW, Some(socket2::Protocol::ICMPV6))
        .map_err(|e| format!("ICMPv6 socket: {e}"))?;
    // Neighbour discovery packets must carry hop limit 255 (RFC 4861 §7.1.2).
    sock.set_multicast_hops_v6(255).map_err(|e| format!("hop limit: {e}"))?;
    sock.set_multicast_if_v6(index).map_err(|e| format!("{ifname}: {e}"))?;
    // The advertisement comes from the address it announces.
    let _ = sock.bind(&std::net::SocketAddrV6::new(ip, 0, 0, 0).into());
    let mut pkt = Vec::with_capacity(32);
    pkt.extend_from_slice(&[136, 0, 0, 0]); // neighbour advertisement, checksum by the kernel
    pkt.extend_from_slice(&0x2000_0000u32.to_be_bytes()); // override
    pkt.extend_from_slice(&ip.octets());
    pkt.extend_from_slice(&[2, 1]); // target link-layer address, 8 bytes
    pkt.extend_from_slice(&mac);
    let all_nodes = std::net::SocketAddrV6::new(Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 1), 0, 0, index);
    sock.send_to(&pkt, &all_nodes.into()).map_err(|e| format!("neighbour advertisement on {ifname}: {e}"))?;
    Ok(())
}

/// Sends one gratuitous ARP request for `ip` from `ifname`'s MAC, so that
/// neighbours (the client, the switch) map the VIP to this node at once.
pub fn gratuitous_arp(ifname: &str, ip: Ipv4Addr) -> Result<(), String> {
    let mac = mac_of(ifname)?;
    let ifindex = i32::try_from(index_of(ifname)?).map_err(|_| format!("{ifname}: bad ifindex"))?;
    let mut frame = Vec::with_capacity(42);
    frame.extend_from_slice(&[0xff; 6]); // broadcast
    frame.extend_from_slice(&mac);
    frame.extend_from_slice(&0x0806u16.to_be_bytes()); // ARP
    frame.extend_from_slice(&1u16.to_be_bytes()); // Ethernet
    frame.extend_from_slice(&0x0800u16.to_be_bytes()); // IPv4
    frame.extend_from_slice(&[6, 4]);
    frame.extend_from_slice(&1u16.to_be_bytes()); // request
    frame.extend_from_slice(&mac);
    frame.extend_from_slice(&ip.octets());
    frame.extend_from_slice(&[0; 6]);
    frame.extend_from_slice(&ip.octets());
    let proto = u16::to_be(0x0806);
    let sock = socket2::Socket::new(socket2::Domain::PACKET, socket2::Type::RAW, Some(socket2::Protocol::from(i32::from(proto))))
        .map_err(|e| format!("packet socket: {e}"))?;
    // SAFETY: sockaddr_ll is plain data, fully initialised below, and the
    // length passed is its size; the socket is a valid AF_PACKET socket.
    let rc = unsafe {
        let mut sll: libc::sockaddr_ll = std::mem::zeroed();
        sll.sll_family = u16::try_from(libc::AF_PACKET).unwrap_or(17);
        sll.sll_protocol = proto;
        sll.sll_ifindex = ifindex;
        sll.sll_halen = 6;
        sll.sll_addr[..6].copy_from_slice(&[0xff; 6]);
        libc::sendto(
            std::os::fd::AsRawFd::as_raw_fd(&sock),
            frame.as_ptr().cast(),
            frame.len(),
            0,
            std::ptr::addr_of!(sll).cast(),
            u32::try_from(size_of::<libc::sockaddr_ll>()).unwrap_or(20),
        )
    };
    if rc < 0 {
        return Err(format!("gratuitous ARP on {ifname}: {}", std::io::Error::last_os_error()));
    }
    Ok(())
}
