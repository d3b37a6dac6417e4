//! `safekit firewallcfg add|del [AM]`: opens (and closes again) the ports
//! a node and its modules use in the firewall that is actually filtering
//! this node — firewalld, ufw, or an nftables ruleset whose input chain
//! drops by default. Idempotent: adding twice leaves one copy; deleting
//! removes only what was added, recognised by its tag (`safekit:<tag>`).
//! A node without any of these filters nothing: there is nothing to open,
//! and it says so.

use std::process::Command;

use crate::linux::farm::{nft, nft_json};
use crate::modules::ports::PortUse;

/// Which firewall filters this node's input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Firewall {
    /// firewalld is running.
    Firewalld,
    /// ufw is active.
    Ufw,
    /// nftables input chains that drop by default: (family, table, chain).
    Nftables(Vec<(String, String, String)>),
    /// Nothing drops input here.
    None,
}

fn ok(cmd: &str, args: &[&str]) -> Option<String> {
    let out = Command::new(cmd).args(args).output().ok()?;
    out.status.success().then(|| String::from_utf8_lossy(&out.stdout).to_string())
}

fn run(cmd: &str, args: &[&str]) -> Result<(), String> {
    let out = Command::new(cmd).args(args).output().map_err(|e| format!("cannot run {cmd}: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!("{cmd} {}: {}", args.join(" "), String::from_utf8_lossy(&out.stderr).trim()))
    }
}

/// The firewall in charge here (in the calling thread's network namespace).
pub fn detect() -> Firewall {
    if ok("firewall-cmd", &["--state"]).is_some() {
        return Firewall::Firewalld;
    }
    if ok("ufw", &["status"]).is_some_and(|s| s.contains("Status: active")) {
        return Firewall::Ufw;
    }
    let Ok(json) = nft_json(&["list", "chains"]) else { return Firewall::None };
    let chains: Vec<(String, String, String)> = json["nftables"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|i| {
            let c = &i["chain"];
            if c["hook"] != "input" || c["policy"] != "drop" {
                return None;
            }
            Some((c["family"].as_str()?.to_string(), c["table"].as_str()?.to_string(), c["name"].as_str()?.to_string()))
        })
        .collect();
    if chains.is_empty() {
        Firewall::None
    } else {
        Firewall::Nftables(chains)
    }
}

fn comment(tag: &str) -> String {
    format!("safekit:{tag}")
}

/// The rules tagged `tag` in an nftables chain: their handles.
fn tagged(family: &str, table: &str, chain: &str, tag: &str) -> Result<Vec<u64>, String> {
    let json = nft_json(&["-a", "list", "chain", family, table, chain])?;
    Ok(json["nftables"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|i| i["rule"]["comment"].as_str() == Some(&comment(tag)))
        .filter_map(|i| i["rule"]["handle"].as_u64())
        .collect())
}

fn valid_tag(tag: &str) -> Result<(), String> {
    if !tag.is_empty() && tag.len() <= 64 && tag.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-') {
        Ok(())
    } else {
        Err(format!("invalid firewall tag {tag:?}"))
    }
}

/// Opens `ports` under `tag`; what was done, one line each.
pub fn add(ports: &[PortUse], tag: &str) -> Result<Vec<String>, String> {
    valid_tag(tag)?;
    let mut done = Vec::new();
    match detect() {
        Firewall::Firewalld => {
            for p in ports {
                let spec = format!("--add-port={}/{}", p.port, p.proto);
                run("firewall-cmd", &["--permanent", &spec])?;
                run("firewall-cmd", &[&spec])?;
                done.push(format!("firewalld: {}/{} open ({})", p.port, p.proto, p.what));
            }
        }
        Firewall::Ufw => {
            for p in ports {
                run("ufw", &["allow", &format!("{}/{}", p.port, p.proto), "comment", &comment(tag)])?;
                done.push(format!("ufw: {}/{} allowed ({})", p.port, p.proto, p.what));
            }
        }
        Firewall::Nftables(chains) => {
            del_nft(&chains, tag)?;
            for (family, table, chain) in &chains {
                let mut t = String::new();
                for p in ports {
                    t.push_str(&format!(
                        "insert rule {family} {table} {chain} meta l4proto {proto} {proto} dport {} accept comment \"{}\"\n",
                        p.port,
                        comment(tag),
                        proto = p.proto
                    ));
                }
                nft(&t)?;
                for p in ports {
                    done.push(format!("nftables {family} {table} {chain}: {}/{} accepted ({})", p.port, p.proto, p.what));
                }
            }
        }
        Firewall::None => done.push("no firewall drops input on this node (firewalld, ufw, nftables): nothing to open".into()),
    }
    Ok(done)
}

fn del_nft(chains: &[(String, String, String)], tag: &str) -> Result<usize, String> {
    let mut n = 0;
    for (family, table, chain) in chains {
        let handles = tagged(family, table, chain, tag)?;
        n += handles.len();
        let t: String = handles.iter().map(|h| format!("delete rule {family} {table} {chain} handle {h}\n")).collect();
        if !t.is_empty() {
            nft(&t)?;
        }
    }
    Ok(n)
}

/// Closes what [`add`] opened under `tag` (`ports`: what it was, for firewalld and ufw).
pub fn del(ports: &[PortUse], tag: &str) -> Result<Vec<String>, String> {
    valid_tag(tag)?;
    let mut done = Vec::new();
    match detect() {
        Firewall::Firewalld => {
            for p in ports {
                let spec = format!("--remove-port={}/{}", p.port, p.proto);
                run("firewall-cmd", &["--permanent", &spec])?;
                run("firewall-cmd", &[&spec])?;
                done.push(format!("firewalld: {}/{} closed", p.port, p.proto));
            }
        }
        Firewall::Ufw => {
            for p in ports {
                run("ufw", &["delete", "allow", &format!("{}/{}", p.port, p.proto)])?;
                done.push(format!("ufw: {}/{} no longer allowed", p.port, p.proto));
            }
        }
        Firewall::Nftables(chains) => {
            let n = del_nft(&chains, tag)?;
            done.push(format!("nftables: {n} rule(s) tagged {} removed", comment(tag)));
        }
        Firewall::None => done.push("no firewall drops input on this node: nothing to close".into()),
    }
    Ok(done)
}
