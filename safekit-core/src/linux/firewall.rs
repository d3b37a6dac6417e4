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
            let rules = ufw_rules()?;
            for p in ports {
                let spec = format!("{}/{}", p.port, p.proto);
                // A port the administrator already allowed stays theirs:
                // re-adding it would retag their rule, and `del` remove it.
                if rules.iter().any(|r| r.allow && r.to == spec && r.comment.as_deref() != Some(comment(tag).as_str())) {
                    done.push(format!("ufw: {spec} already allowed by another rule ({}): left as is", p.what));
                    continue;
                }
                run("ufw", &["allow", &spec, "comment", &comment(tag)])?;
                done.push(format!("ufw: {spec} allowed ({})", p.what));
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

/// One rule of `ufw status numbered`.
#[derive(Debug, PartialEq, Eq)]
struct UfwRule {
    number: u32,
    /// What it matches: "5608/tcp" (its IPv6 twin has the same).
    to: String,
    allow: bool,
    comment: Option<String>,
}

fn ufw_rules() -> Result<Vec<UfwRule>, String> {
    let out = Command::new("ufw").args(["status", "numbered"]).output().map_err(|e| format!("cannot run ufw: {e}"))?;
    if !out.status.success() {
        return Err(format!("ufw status numbered: {}", String::from_utf8_lossy(&out.stderr).trim()));
    }
    Ok(parse_ufw_numbered(&String::from_utf8_lossy(&out.stdout)))
}

/// Lines like `[ 3] 5608/tcp (v6)   ALLOW IN    Anywhere (v6)   # safekit:db`.
fn parse_ufw_numbered(text: &str) -> Vec<UfwRule> {
    text.lines()
        .filter_map(|l| {
            let (num, rest) = l.trim_start().strip_prefix('[')?.split_once(']')?;
            let number = num.trim().parse().ok()?;
            let (rule, comment) = match rest.split_once(" # ") {
                Some((r, c)) => (r, Some(c.trim().to_string())),
                None => (rest, None),
            };
            let to = rule.split_whitespace().next()?.to_string();
            Some(UfwRule { number, to, allow: rule.contains(" ALLOW"), comment })
        })
        .collect()
}

/// Closes what [`add`] opened under `tag` (`ports`: what it was, for firewalld).
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
            // Exactly the rules tagged so, by number, the highest first (a
            // deletion renumbers the rules after it).
            let mut ours: Vec<u32> =
                ufw_rules()?.into_iter().filter(|r| r.comment.as_deref() == Some(comment(tag).as_str())).map(|r| r.number).collect();
            ours.sort_unstable_by(|a, b| b.cmp(a));
            for n in &ours {
                run("ufw", &["--force", "delete", &n.to_string()])?;
            }
            done.push(format!("ufw: {} rule(s) tagged {} removed", ours.len(), comment(tag)));
        }
        Firewall::Nftables(chains) => {
            let n = del_nft(&chains, tag)?;
            done.push(format!("nftables: {n} rule(s) tagged {} removed", comment(tag)));
        }
        Firewall::None => done.push("no firewall drops input on this node: nothing to close".into()),
    }
    Ok(done)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ufw_numbered_status_is_read_rule_by_rule() {
        let text = "Status: active\n\n     To                         Action      From\n     --                         ------      ----\n\
[ 1] 9010/tcp                   ALLOW IN    Anywhere\n\
[ 2] 5608/tcp                   ALLOW IN    Anywhere                   # safekit:db\n\
[10] 8890/udp (v6)              ALLOW IN    Anywhere (v6)              # safekit:db2\n\
[11] 22/tcp                     DENY IN     Anywhere\n";
        let r = parse_ufw_numbered(text);
        assert_eq!(r.len(), 4);
        assert_eq!(r[0], UfwRule { number: 1, to: "9010/tcp".into(), allow: true, comment: None });
        assert_eq!(r[1].comment.as_deref(), Some("safekit:db"));
        assert_eq!((r[2].number, r[2].to.as_str(), r[2].comment.as_deref()), (10, "8890/udp", Some("safekit:db2")));
        assert!(!r[3].allow);
    }
}
