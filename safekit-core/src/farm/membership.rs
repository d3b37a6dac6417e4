//! Farm membership, sans I/O: time and received beats go in; beats to send
//! and changes of the owned buckets come out.
//!
//! Every node beats every `pulse` (and at once when its buckets or view
//! change) with whether it is UP, the digest of the view it follows and
//! the buckets it owns in each load-balancing group (each `<group>` has
//! its own powers, hence its own table; the view — who is UP — is shared). A peer silent for `slost_count × pulse` has left.
//! The view is this node (when UP) and every live peer that says UP; the
//! table is [`assign`] of it, so all nodes that hear the same peers agree
//! without a leader. Ownership changes in two phases without any extra
//! message: a bucket this node loses is released at once (and the next
//! beat says so); a bucket it gains is taken only when no live peer
//! claims it and every live peer follows the same view (whose table gives
//! the bucket to this node alone). If live peers keep following another
//! view for longer than the loss timeout (a one-way link), unclaimed
//! buckets are taken anyway: serving twice beats not serving, as in a
//! split brain, where each side takes every bucket. A node that has just
//! started takes nothing for one loss timeout: it first listens, so that
//! nodes started together do not each take all 256.

use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

use super::assign::{assign, Member};
use super::wire::{bucket_map, has_bucket, Beat};

/// What the membership asks of its driver.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// Own exactly these buckets of group `.0` now (apply to the data path).
    Owned(usize, Vec<u8>),
    /// The members of the view changed: "farm membership: node1 node2".
    Members(Vec<String>),
}

#[derive(Debug, Clone)]
struct Peer {
    heard: Instant,
    incarnation: u64,
    seq: u64,
    up: bool,
    view: u64,
    owned: Vec<[u8; 32]>,
}

impl Peer {
    fn has(&self, group: usize, b: u8) -> bool {
        self.owned.get(group).is_some_and(|m| has_bucket(m, b))
    }
}

/// One node's membership of one farm group.
#[derive(Debug, Clone)]
pub struct Membership {
    me: String,
    incarnation: u64,
    seq: u64,
    /// Configured powers per group; a node has power 1 if its group's
    /// `<host>` list is empty, else 0 if it is not listed.
    groups: Vec<BTreeMap<String, u32>>,
    pulse: Duration,
    lost_after: Duration,
    up: bool,
    peers: BTreeMap<String, Peer>,
    /// Per group.
    owned: Vec<Vec<u8>>,
    members: Vec<String>,
    /// Since when live peers follow another view than this node's.
    disagree_since: Option<Instant>,
    next_beat: Instant,
    /// Until then, no new bucket is taken: a node that has just started
    /// has had no time to hear the others, and alone it would take all.
    listening_until: Instant,
    send_now: bool,
    /// This node's buckets per group in the tables of a view digest (the
    /// tables are recomputed only when the view changes).
    mine: Option<(u64, Vec<Vec<u8>>)>,
    events: VecDeque<Event>,
    now: Instant,
}

/// The digest of a view, carried in beats to tell that two nodes follow the same table.
pub fn view_digest(view: &[Member]) -> u64 {
    let mut v: Vec<&Member> = view.iter().collect();
    v.sort();
    let mut h = Sha256::new();
    for m in v {
        h.update(m.name.as_bytes());
        h.update(b"\0");
        h.update(m.power.to_be_bytes());
    }
    let d = h.finalize();
    let mut first = [0u8; 8];
    first.copy_from_slice(&d[..8]);
    u64::from_be_bytes(first)
}

/// One digest for the tables of every group (the group's own digest when there is one).
fn combined(digests: &[u64]) -> u64 {
    if let [one] = digests {
        return *one;
    }
    let mut h = Sha256::new();
    for d in digests {
        h.update(d.to_be_bytes());
    }
    let d = h.finalize();
    let mut first = [0u8; 8];
    first.copy_from_slice(&d[..8]);
    u64::from_be_bytes(first)
}

impl Membership {
    /// Node `me` (not UP yet) of a farm whose groups have these powers
    /// (an empty map: every node 1; no group at all: one such group).
    pub fn new(me: &str, incarnation: u64, groups: Vec<BTreeMap<String, u32>>, pulse: Duration, slost_count: u32, now: Instant) -> Self {
        let mut groups = groups;
        if groups.is_empty() {
            groups.push(BTreeMap::new());
        }
        groups.truncate(super::wire::MAX_GROUPS);
        Self {
            me: me.to_string(),
            incarnation,
            seq: 0,
            owned: vec![Vec::new(); groups.len()],
            groups,
            pulse,
            lost_after: pulse * slost_count.max(1),
            up: false,
            peers: BTreeMap::new(),
            members: Vec::new(),
            disagree_since: None,
            next_beat: now,
            listening_until: now + pulse * slost_count.max(1),
            send_now: true,
            mine: None,
            events: VecDeque::new(),
            now,
        }
    }

    fn power(&self, group: usize, node: &str) -> u32 {
        match self.groups.get(group) {
            Some(p) if !p.is_empty() => p.get(node).copied().unwrap_or(0),
            _ => 1,
        }
    }

    /// The module starts (`true`: takes traffic) or stops (`false`: releases every bucket at once).
    pub fn set_up(&mut self, now: Instant, up: bool) {
        self.now = now;
        self.up = up;
        self.update();
    }

    /// A beat from another node (already authenticated). Replays and
    /// older beats of a peer are ignored.
    pub fn receive(&mut self, now: Instant, beat: Beat) {
        self.now = now;
        if beat.node == self.me {
            return;
        }
        if let Some(p) = self.peers.get(&beat.node) {
            if (beat.incarnation, beat.seq) <= (p.incarnation, p.seq) {
                return;
            }
        }
        self.peers.insert(
            beat.node.clone(),
            Peer { heard: now, incarnation: beat.incarnation, seq: beat.seq, up: beat.up, view: beat.view, owned: beat.owned },
        );
        self.update();
    }

    /// Time passes: peers may be lost, a beat may be due.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.now = now;
        self.update();
    }

    /// When [`Self::handle_timeout`] must be called next.
    pub fn poll_timeout(&self) -> Instant {
        let lost = self.peers.values().map(|p| p.heard + self.lost_after).filter(|t| *t > self.now).min();
        let fallback = self.disagree_since.map(|t| t + self.lost_after);
        let listening = Some(self.listening_until).filter(|t| *t > self.now);
        [Some(self.next_beat), lost, fallback, listening].into_iter().flatten().min().unwrap_or(self.next_beat)
    }

    /// The next beat to send on every farm network, if one is due.
    pub fn poll_transmit(&mut self) -> Option<Beat> {
        if !self.send_now && self.now < self.next_beat {
            return None;
        }
        self.send_now = false;
        self.next_beat = self.now + self.pulse;
        self.seq += 1;
        Some(Beat {
            node: self.me.clone(),
            incarnation: self.incarnation,
            seq: self.seq,
            up: self.up,
            view: self.digest(),
            owned: self.owned.iter().map(|o| bucket_map(o)).collect(),
        })
    }

    /// The next change for the driver.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// This node's name.
    pub fn me(&self) -> &str {
        &self.me
    }

    /// Whether `node`'s beats arrive (it has not left by silence).
    pub fn hears(&self, node: &str) -> bool {
        self.live().any(|(n, _)| n == node)
    }

    /// The buckets of group `group` owned now.
    pub fn owned(&self, group: usize) -> &[u8] {
        self.owned.get(group).map_or(&[], Vec::as_slice)
    }

    /// How many load-balancing groups.
    pub fn groups(&self) -> usize {
        self.groups.len()
    }

    /// The members of the current view.
    pub fn members(&self) -> &[String] {
        &self.members
    }

    /// The buckets of group `group` live peers claim, each with its
    /// claimant (the first by name if two claim it): where vmac_directed
    /// sends packets of buckets this node does not own.
    pub fn claims(&self, group: usize) -> Vec<(u8, &str)> {
        let mut owner: [Option<&str>; 256] = [None; 256];
        for (name, p) in self.live() {
            for b in 0..=255u8 {
                if p.has(group, b) && owner[usize::from(b)].is_none() {
                    owner[usize::from(b)] = Some(name.as_str());
                }
            }
        }
        (0..=255u8).filter_map(|b| owner[usize::from(b)].map(|n| (b, n))).collect()
    }

    /// This node and every peer heard, by name, with what they claim in group `group`.
    pub fn nodes(&self, group: usize) -> Vec<super::NodeBuckets> {
        let now = self.now;
        let mut out: Vec<super::NodeBuckets> = self
            .peers
            .iter()
            .map(|(name, p)| super::NodeBuckets {
                node: name.clone(),
                local: false,
                live: p.heard + self.lost_after > now,
                up: p.up,
                buckets: (0..=255u8).filter(|b| p.has(group, *b)).collect(),
            })
            .collect();
        out.push(super::NodeBuckets { node: self.me.clone(), local: true, live: true, up: self.up, buckets: self.owned(group).to_vec() });
        out.sort_by(|a, b| a.node.cmp(&b.node));
        out
    }

    fn live(&self) -> impl Iterator<Item = (&String, &Peer)> {
        let (now, lost) = (self.now, self.lost_after);
        self.peers.iter().filter(move |(_, p)| p.heard + lost > now)
    }

    /// The view with group `group`'s powers.
    fn view(&self, group: usize) -> Vec<Member> {
        let mut v: Vec<Member> = self.live().filter(|(_, p)| p.up).map(|(n, _)| Member::new(n.clone(), self.power(group, n))).collect();
        if self.up {
            v.push(Member::new(self.me.clone(), self.power(group, &self.me)));
        }
        v.sort();
        v
    }

    fn digest(&self) -> u64 {
        combined(&(0..self.groups.len()).map(|g| view_digest(&self.view(g))).collect::<Vec<_>>())
    }

    fn update(&mut self) {
        let views: Vec<Vec<Member>> = (0..self.groups.len()).map(|g| self.view(g)).collect();
        let digest = combined(&views.iter().map(|v| view_digest(v)).collect::<Vec<_>>());
        let members: Vec<String> = views[0].iter().map(|m| m.name.clone()).collect();
        if members != self.members {
            self.members = members.clone();
            self.events.push_back(Event::Members(members));
            self.send_now = true;
        }
        let mine: Vec<Vec<u8>> = match &self.mine {
            _ if !self.up => vec![Vec::new(); self.groups.len()],
            Some((d, m)) if *d == digest => m.clone(),
            _ => {
                let m: Vec<Vec<u8>> = views.iter().map(|v| assign(v).owned_by(&self.me)).collect();
                self.mine = Some((digest, m.clone()));
                m
            }
        };
        let agreed = self.live().all(|(_, p)| p.view == digest);
        if agreed {
            self.disagree_since = None;
        } else if self.disagree_since.is_none() {
            self.disagree_since = Some(self.now);
        }
        let give_up_waiting = self.disagree_since.is_some_and(|t| self.now >= t + self.lost_after);
        let may_take = self.now >= self.listening_until && (agreed || give_up_waiting);
        for (g, mine) in mine.iter().enumerate() {
            let claimed = |b: u8| self.live().any(|(_, p)| p.has(g, b));
            // Two nodes that hear each other and both hold a bucket (views
            // that crossed, a healed partition, the one-way fallback): the
            // one with the greater name lets it go as soon as it hears the
            // other's claim, so the overlap lasts one beat, not until the
            // views converge.
            let yields = |b: u8| self.live().any(|(n, p)| n.as_str() < self.me.as_str() && p.has(g, b));
            let held = &self.owned[g];
            let next: Vec<u8> = mine
                .iter()
                .copied()
                .filter(|b| if held.binary_search(b).is_ok() { !yields(*b) } else { may_take && !claimed(*b) })
                .collect();
            if next != self.owned[g] {
                self.owned[g] = next.clone();
                self.events.push_back(Event::Owned(g, next));
                self.send_now = true;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `a` and `b` beat to each other every pulse, `pulses` times from `t0`; the time reached.
    fn exchange(a: &mut Membership, b: &mut Membership, t0: Instant, pulse: Duration, pulses: u32) -> Instant {
        let mut now = t0;
        for _ in 0..pulses {
            now += pulse;
            a.handle_timeout(now);
            b.handle_timeout(now);
            while let Some(x) = a.poll_transmit() {
                b.receive(now, x);
            }
            while let Some(x) = b.poll_transmit() {
                a.receive(now, x);
            }
        }
        now
    }

    #[test]
    fn a_silent_peer_leaves_after_slost_count_pulses_and_its_buckets_move_at_once() {
        let t0 = Instant::now();
        let pulse = Duration::from_millis(100);
        let mut a = Membership::new("a", 1, vec![BTreeMap::new()], pulse, 10, t0);
        let mut b = Membership::new("b", 1, vec![BTreeMap::new()], pulse, 10, t0);
        a.set_up(t0, true);
        b.set_up(t0, true);
        // Beats both ways every pulse for a second.
        let now = exchange(&mut a, &mut b, t0, pulse, 10);
        assert_eq!(a.owned(0).len(), 128, "shared");
        let claims = a.claims(0);
        assert_eq!(claims.len(), 128, "b's buckets are the ones a forwards to b");
        assert!(claims.iter().all(|(bucket, who)| *who == "b" && !a.owned(0).contains(bucket)));
        let nodes = a.nodes(0);
        assert_eq!(
            nodes.iter().map(|n| (n.node.as_str(), n.local, n.buckets.len())).collect::<Vec<_>>(),
            [("a", true, 128), ("b", false, 128)]
        );
        // b falls silent at `last`: a takes everything exactly slost_count × pulse later.
        let last = now;
        assert!(a.poll_timeout() <= last + pulse * 10);
        a.handle_timeout(last + pulse * 10 - Duration::from_millis(1));
        assert_eq!(a.owned(0).len(), 128, "not yet");
        a.handle_timeout(last + pulse * 10);
        assert_eq!(a.members(), ["a".to_string()]);
        assert_eq!(a.owned(0).len(), 256, "all of b's buckets at once");
        assert!(a.claims(0).is_empty(), "a lost peer's claims are not forwarded to");
        assert!(!a.nodes(0)[1].live);
    }

    #[test]
    fn after_a_split_brain_the_greater_name_lets_doubly_held_buckets_go_at_once() {
        let t0 = Instant::now();
        let pulse = Duration::from_millis(100);
        let mut a = Membership::new("a", 1, vec![BTreeMap::new()], pulse, 10, t0);
        let mut b = Membership::new("b", 1, vec![BTreeMap::new()], pulse, 10, t0);
        // Apart for longer than the listening time: each takes all 256.
        let later = t0 + pulse * 11;
        a.set_up(t0, true);
        b.set_up(t0, true);
        a.handle_timeout(later);
        b.handle_timeout(later);
        assert_eq!((a.owned(0).len(), b.owned(0).len()), (256, 256));
        // b hears a: it lets every bucket go at once; a keeps serving them.
        let beat = a.poll_transmit().unwrap();
        b.receive(later, beat);
        assert_eq!(b.owned(0).len(), 0, "b yields what a holds");
        // a hears b (holding nothing, same view): a keeps its share only.
        let beat = b.poll_transmit().unwrap();
        a.receive(later, beat);
        assert_eq!(a.owned(0).len(), 128, "a keeps its share of the common view");
        // b takes the rest once it hears that a let it go; never one bucket on both.
        let mut now = later;
        let disjoint = |a: &Membership, b: &Membership| !a.owned(0).iter().any(|k| b.owned(0).contains(k));
        for _ in 0..5 {
            now += pulse;
            let (nodes, mut i) = ([&mut a, &mut b], 0);
            while i < 2 {
                nodes[i].handle_timeout(now);
                while let Some(beat) = nodes[i].poll_transmit() {
                    nodes[1 - i].receive(now, beat);
                }
                assert!(disjoint(nodes[0], nodes[1]), "a bucket on both at {:?}", now - later);
                i += 1;
            }
        }
        assert_eq!((a.owned(0).len(), b.owned(0).len()), (128, 128));
    }

    #[test]
    fn each_group_has_its_own_table_from_one_view() {
        let t0 = Instant::now();
        let pulse = Duration::from_millis(100);
        // Group 0: equal shares; group 1: a chain (b alone serves, a backs it up).
        let groups = || vec![BTreeMap::new(), [("a".to_string(), 1), ("b".to_string(), 64)].into_iter().collect()];
        let mut a = Membership::new("a", 1, groups(), pulse, 10, t0);
        let mut b = Membership::new("b", 1, groups(), pulse, 10, t0);
        a.set_up(t0, true);
        b.set_up(t0, true);
        let now = exchange(&mut a, &mut b, t0, pulse, 12);
        assert_eq!((a.owned(0).len(), b.owned(0).len()), (128, 128));
        assert_eq!((a.owned(1).len(), b.owned(1).len()), (0, 256), "group 1 is a chain");
        assert_eq!(a.claims(1).len(), 256, "a forwards all of group 1 to b");
        a.handle_timeout(now + pulse * 10);
        assert_eq!((a.owned(0).len(), a.owned(1).len()), (256, 256), "b gone: a takes both groups");
    }
}
