//! The kernel's `jhash()` (include/linux/jhash.h, Bob Jenkins' lookup3
//! `hashlittle` on a little-endian CPU) and nf_tables' bucket of a key
//! (`jhash <key> mod 256 seed S`: `reciprocal_scale(jhash(key, len, S),
//! 256)`, net/netfilter/nft_hash.c).
//!
//! Written here rather than taken from a crate because it must match the
//! kernel bit for bit, including how nf_tables lays out concatenated keys
//! (each field padded to 4 bytes); the test vectors are lookup3's own and
//! the namespace test checks it against the kernel's choices.

use std::net::IpAddr;

const INITVAL: u32 = 0xdead_beef;

fn mix(a: &mut u32, b: &mut u32, c: &mut u32) {
    *a = a.wrapping_sub(*c);
    *a ^= c.rotate_left(4);
    *c = c.wrapping_add(*b);
    *b = b.wrapping_sub(*a);
    *b ^= a.rotate_left(6);
    *a = a.wrapping_add(*c);
    *c = c.wrapping_sub(*b);
    *c ^= b.rotate_left(8);
    *b = b.wrapping_add(*a);
    *a = a.wrapping_sub(*c);
    *a ^= c.rotate_left(16);
    *c = c.wrapping_add(*b);
    *b = b.wrapping_sub(*a);
    *b ^= a.rotate_left(19);
    *a = a.wrapping_add(*c);
    *c = c.wrapping_sub(*b);
    *c ^= b.rotate_left(4);
    *b = b.wrapping_add(*a);
}

fn final_mix(mut a: u32, mut b: u32, mut c: u32) -> u32 {
    c ^= b;
    c = c.wrapping_sub(b.rotate_left(14));
    a ^= c;
    a = a.wrapping_sub(c.rotate_left(11));
    b ^= a;
    b = b.wrapping_sub(a.rotate_left(25));
    c ^= b;
    c = c.wrapping_sub(b.rotate_left(16));
    a ^= c;
    a = a.wrapping_sub(c.rotate_left(4));
    b ^= a;
    b = b.wrapping_sub(a.rotate_left(14));
    c ^= b;
    c.wrapping_sub(b.rotate_left(24))
}

fn word(k: &[u8]) -> u32 {
    let mut w = [0u8; 4];
    w[..k.len().min(4)].copy_from_slice(&k[..k.len().min(4)]);
    u32::from_le_bytes(w)
}

/// `jhash(key, len, seed)` as the kernel computes it on a little-endian CPU.
pub fn jhash(key: &[u8], seed: u32) -> u32 {
    // The length is added modulo 2^32, as the kernel's u32 does.
    let len = u32::try_from(key.len()).unwrap_or(u32::MAX);
    let mut a = INITVAL.wrapping_add(len).wrapping_add(seed);
    let mut b = a;
    let mut c = a;
    let mut k = key;
    while k.len() > 12 {
        a = a.wrapping_add(word(&k[0..4]));
        b = b.wrapping_add(word(&k[4..8]));
        c = c.wrapping_add(word(&k[8..12]));
        mix(&mut a, &mut b, &mut c);
        k = &k[12..];
    }
    if k.is_empty() {
        return c;
    }
    let mut tail = [0u8; 12];
    tail[..k.len()].copy_from_slice(k);
    a = a.wrapping_add(word(&tail[0..4]));
    b = b.wrapping_add(word(&tail[4..8]));
    c = c.wrapping_add(word(&tail[8..12]));
    final_mix(a, b, c)
}

/// What a farm rule hashes (`filter=`): the client's address, or its
/// address and source port.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FlowKey {
    /// `on_addr`: `jhash ip saddr`.
    Addr(IpAddr),
    /// `on_port`: `jhash ip saddr . tcp sport` (or udp).
    AddrPort(IpAddr, u16),
}

impl FlowKey {
    /// The bytes nf_tables hashes: the address in network order, then the
    /// port in network order padded to 4 bytes (nft's register layout).
    pub fn bytes(&self) -> Vec<u8> {
        let addr = |a: &IpAddr| match a {
            IpAddr::V4(v) => v.octets().to_vec(),
            IpAddr::V6(v) => v.octets().to_vec(),
        };
        match self {
            Self::Addr(a) => addr(a),
            Self::AddrPort(a, p) => {
                let mut k = addr(a);
                k.extend_from_slice(&p.to_be_bytes());
                k.extend_from_slice(&[0, 0]);
                k
            }
        }
    }
}

/// The bucket (0..256) nf_tables puts `key` in with `seed`.
pub fn bucket_of(key: &FlowKey, seed: u32) -> u8 {
    let h = u64::from(jhash(&key.bytes(), seed));
    // reciprocal_scale(h, 256) = (h * 256) >> 32, always < 256.
    u8::try_from((h * 256) >> 32).unwrap_or(u8::MAX)
}

/// The seed of a farm module's hash: the same on every node without
/// configuration (the module's id, tagged so it never is 0, which would
/// let the kernel pick a random seed per rule and node).
pub fn seed_of(module_id: u16) -> u32 {
    0x5afe_0000 | u32::from(module_id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lookup3_vectors() {
        // From lookup3.c's driver5(): hashlittle("", 0, 0) and the "Four score" lines.
        assert_eq!(jhash(b"", 0), 0xdead_beef);
        assert_eq!(jhash(b"", 0xdead_beef), 0xbd5b_7dde);
        assert_eq!(jhash(b"Four score and seven years ago", 0), 0x1777_0551);
        assert_eq!(jhash(b"Four score and seven years ago", 1), 0xcd62_8161);
    }

    #[test]
    fn keys_are_laid_out_as_nftables_registers() {
        let a: IpAddr = "10.81.0.51".parse().unwrap();
        assert_eq!(FlowKey::Addr(a).bytes(), [10, 81, 0, 51]);
        assert_eq!(FlowKey::AddrPort(a, 0x1234).bytes(), [10, 81, 0, 51, 0x12, 0x34, 0, 0]);
        let v6: IpAddr = "fd00:81::51".parse().unwrap();
        assert_eq!(FlowKey::Addr(v6).bytes().len(), 16);
        assert_eq!(FlowKey::AddrPort(v6, 80).bytes().len(), 20);
    }

    #[test]
    fn buckets_spread_over_the_whole_range() {
        let mut seen = [0u32; 256];
        for i in 0..65_536u32 {
            let a = IpAddr::from(std::net::Ipv4Addr::from(0x0a00_0000 | i));
            seen[usize::from(bucket_of(&FlowKey::Addr(a), seed_of(1)))] += 1;
        }
        assert!(seen.iter().all(|&n| (128..=384).contains(&n)), "{seen:?}");
    }
}
