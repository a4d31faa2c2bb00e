//! Who is calling: the client address (behind trusted load balancers, from
//! `X-Forwarded-For`), and the per-address count of open sockets.

use std::{
    collections::HashMap,
    net::IpAddr,
    sync::{Arc, Mutex},
};

use actix_web::HttpRequest;

/// An IP range (`10.0.0.0/8`) or one address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cidr {
    net: IpAddr,
    bits: u8,
}

impl Cidr {
    pub fn parse(s: &str) -> Option<Cidr> {
        let (addr, bits) = match s.split_once('/') {
            Some((a, b)) => (a.parse::<IpAddr>().ok()?, b.parse::<u8>().ok()?),
            None => {
                let a = s.parse::<IpAddr>().ok()?;
                (a, if a.is_ipv4() { 32 } else { 128 })
            }
        };
        let max = if addr.is_ipv4() { 32 } else { 128 };
        (bits <= max).then_some(Cidr { net: addr, bits })
    }

    pub fn contains(&self, ip: &IpAddr) -> bool {
        fn prefix(bytes: &[u8], bits: u8) -> Vec<u8> {
            bytes
                .iter()
                .enumerate()
                .map(|(i, b)| {
                    let left = (bits as usize).saturating_sub(i * 8).min(8);
                    if left == 0 {
                        0
                    } else {
                        b & (0xffu8 << (8 - left))
                    }
                })
                .collect()
        }
        match (self.net, ip) {
            (IpAddr::V4(n), IpAddr::V4(i)) => {
                prefix(&n.octets(), self.bits) == prefix(&i.octets(), self.bits)
            }
            (IpAddr::V6(n), IpAddr::V6(i)) => {
                prefix(&n.octets(), self.bits) == prefix(&i.octets(), self.bits)
            }
            _ => false,
        }
    }
}

/// The client's address: the peer, or, when the peer is a trusted proxy, the rightmost
/// `X-Forwarded-For` entry that is not a trusted proxy.
pub fn client_ip(req: &HttpRequest, trusted: &[Cidr]) -> Option<IpAddr> {
    let peer = req.peer_addr()?.ip();
    let is_trusted = |ip: &IpAddr| trusted.iter().any(|c| c.contains(ip));
    if !is_trusted(&peer) {
        return Some(peer);
    }
    let forwarded: Vec<IpAddr> = req
        .headers()
        .get_all("x-forwarded-for")
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|s| s.trim().parse().ok())
        .collect();
    Some(
        forwarded
            .into_iter()
            .rev()
            .find(|ip| !is_trusted(ip))
            .unwrap_or(peer),
    )
}

/// Open sockets per client address.
#[derive(Default)]
pub struct IpCounts(Mutex<HashMap<IpAddr, usize>>);

/// One open socket of an address; dropping it counts the socket out.
pub struct IpSlot {
    counts: Arc<IpCounts>,
    ip: IpAddr,
}

impl IpCounts {
    /// Count one more socket of `ip` unless it already has `max` (0 = no limit).
    pub fn take(self: &Arc<Self>, ip: IpAddr, max: usize) -> Option<IpSlot> {
        // A poisoned lock means a panic elsewhere; refusing is safer than not counting.
        let mut counts = self.0.lock().ok()?;
        let n = counts.entry(ip).or_default();
        if max > 0 && *n >= max {
            return None;
        }
        *n += 1;
        Some(IpSlot {
            counts: self.clone(),
            ip,
        })
    }
}

impl Drop for IpSlot {
    fn drop(&mut self) {
        if let Ok(mut counts) = self.counts.0.lock() {
            if let Some(n) = counts.get_mut(&self.ip) {
                *n -= 1;
                if *n == 0 {
                    counts.remove(&self.ip);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_contain_what_they_should() {
        let lan = Cidr::parse("10.0.0.0/8").unwrap();
        assert!(lan.contains(&"10.1.2.3".parse().unwrap()));
        assert!(!lan.contains(&"11.0.0.1".parse().unwrap()));
        let one = Cidr::parse("192.168.1.7").unwrap();
        assert!(one.contains(&"192.168.1.7".parse().unwrap()));
        assert!(!one.contains(&"192.168.1.8".parse().unwrap()));
        let odd = Cidr::parse("172.16.0.0/12").unwrap();
        assert!(odd.contains(&"172.31.255.255".parse().unwrap()));
        assert!(!odd.contains(&"172.32.0.0".parse().unwrap()));
        let v6 = Cidr::parse("fd00::/8").unwrap();
        assert!(v6.contains(&"fd12::1".parse().unwrap()));
        assert!(Cidr::parse("10.0.0.0/33").is_none());
        assert!(Cidr::parse("nonsense").is_none());
    }

    #[test]
    fn slots_count_in_and_out() {
        let counts = Arc::new(IpCounts::default());
        let ip: IpAddr = "1.2.3.4".parse().unwrap();
        let a = counts.take(ip, 2).unwrap();
        let _b = counts.take(ip, 2).unwrap();
        assert!(counts.take(ip, 2).is_none());
        drop(a);
        assert!(counts.take(ip, 2).is_some());
        assert!(counts.take("5.6.7.8".parse().unwrap(), 2).is_some());
    }
}
