//! Running `nft`: one transaction from text, and reading back with
//! `nft -j` (sets, maps, counters). nft runs in the network namespace of
//! the calling thread.

use std::io::Write;
use std::net::IpAddr;
use std::process::{Command, Stdio};

/// New connections accepted and packets dropped so far by the farm table
/// `table`: its `vip` chain's counters (accept rules summed, then the final drop).
pub fn counters(table: &str) -> Result<(u64, u64), String> {
    let json = nft_json(&["list", "chain", "inet", table, "vip"])?;
    let (mut accepted, mut dropped) = (0, 0);
    for item in json["nftables"].as_array().into_iter().flatten() {
        let Some(expr) = item["rule"]["expr"].as_array() else { continue };
        let packets = expr.iter().find_map(|e| e["counter"]["packets"].as_u64()).unwrap_or(0);
        if expr.iter().any(|e| e.get("accept").is_some()) && expr.iter().any(|e| e.to_string().contains("jhash")) {
            accepted += packets;
        } else if expr.iter().any(|e| e.get("drop").is_some()) {
            dropped += packets;
        }
    }
    Ok((accepted, dropped))
}

/// The elements of the bucket set `set` of `table`.
pub(super) fn set_elements(family: &str, table: &str, set: &str) -> Result<Vec<u8>, String> {
    let json = nft_json(&["list", "set", family, table, set])?;
    let mut out: Vec<u8> = Vec::new();
    for item in json["nftables"].as_array().into_iter().flatten() {
        for e in item["set"]["elem"].as_array().into_iter().flatten() {
            match e.as_u64().and_then(|v| u8::try_from(v).ok()) {
                Some(b) => out.push(b),
                None => return Err(format!("unexpected element {e} in {table}'s set")),
            }
        }
    }
    out.sort_unstable();
    Ok(out)
}

/// The elements of the owner map `map` of `table`.
pub(super) fn map_elements(family: &str, table: &str, map: &str) -> Result<Vec<(u8, IpAddr)>, String> {
    let json = nft_json(&["list", "map", family, table, map])?;
    let mut out = Vec::new();
    for item in json["nftables"].as_array().into_iter().flatten() {
        for e in item["map"]["elem"].as_array().into_iter().flatten() {
            let bucket = e[0].as_u64().and_then(|v| u8::try_from(v).ok());
            let addr = e[1].as_str().and_then(|a| a.parse::<IpAddr>().ok());
            match (bucket, addr) {
                (Some(b), Some(a)) => out.push((b, a)),
                _ => return Err(format!("unexpected element {e} in {table}'s map")),
            }
        }
    }
    out.sort_unstable();
    Ok(out)
}

/// Runs one `nft -f -` transaction.
pub fn nft(text: &str) -> Result<(), String> {
    let mut child = Command::new("nft")
        .args(["-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot run nft (apt-get install nftables): {e}"))?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin.write_all(text.as_bytes()).map_err(|e| format!("nft: {e}"))?;
    }
    let out = child.wait_with_output().map_err(|e| format!("nft: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!("nft refused the change: {}", String::from_utf8_lossy(&out.stderr).trim()))
    }
}

/// Runs `nft -j ARGS` and parses its JSON.
pub(crate) fn nft_json(args: &[&str]) -> Result<serde_json::Value, String> {
    let out = Command::new("nft").arg("-j").args(args).output().map_err(|e| format!("cannot run nft (apt-get install nftables): {e}"))?;
    if !out.status.success() {
        return Err(format!("nft {}: {}", args.join(" "), String::from_utf8_lossy(&out.stderr).trim()));
    }
    serde_json::from_slice(&out.stdout).map_err(|e| format!("nft -j {}: {e}", args.join(" ")))
}
