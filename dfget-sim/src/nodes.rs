//! The supernode list of a run: how dfget orders it and how its registrations walk it.
//!
//! Cluster tests need a peer that spreads over several supernodes and moves between them the
//! way stock dfget does, so this copies dfget's static node list. `--node` takes
//! `host[:port][=weight]` entries separated by commas; an entry goes into the list `weight`
//! times (the weights divided by their greatest common divisor first), and a node given twice is
//! two entries, so repetition is a weight too. The list is shuffled once per run, and
//! registrations walk it front to back without ever starting over: the first registration takes
//! the first node that accepts, a migration goes on from the node in use and skips the copies of
//! that entry. The shuffle takes a seed so that a test can fix the order.

use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::SeedableRng;

use crate::config::split_node;
use crate::error::SimError;
use crate::scope::AddressScope;

/// One supernode of the list.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Node {
    /// The host part (sent as `superNodeIp`).
    pub(crate) host: String,
    /// `host:port` of the control API.
    pub(crate) addr: String,
    /// Which `--node` entry it came from: the copies of one weighted entry are one node.
    entry: usize,
}

/// The entries of `--node` with their weights, checked (addresses inside `scope`, positive
/// integer weights). An entry may itself hold several comma-separated nodes, as dfget's flag
/// value does.
pub(crate) fn parse_nodes(entries: &[String], scope: &AddressScope) -> Result<Vec<(Node, u64)>, SimError> {
    let mut out = Vec::new();
    for raw in entries.iter().flat_map(|e| e.split(',')) {
        let raw = raw.trim();
        let (addr, weight) = match raw.split_once('=') {
            Some((a, w)) => {
                let w = w.trim().parse::<u64>().ok().filter(|w| *w > 0);
                (a.trim(), w.ok_or_else(|| SimError::Config(format!("node {raw}: weight is not a positive integer")))?)
            }
            None => (raw, 1),
        };
        if addr.is_empty() {
            return Err(SimError::Config(format!("node {raw:?}: empty address")));
        }
        let (host, addr) = split_node(addr);
        if !scope.allows_host(&host) {
            return Err(SimError::Config(format!(
                "node {host} is outside the allowed addresses ({})",
                scope.describe()
            )));
        }
        out.push((Node { host, addr, entry: out.len() }, weight));
    }
    if out.is_empty() {
        return Err(SimError::Config("no supernode given".into()));
    }
    Ok(out)
}

fn gcd(a: u64, b: u64) -> u64 {
    if b == 0 {
        a
    } else {
        gcd(b, a % b)
    }
}

/// Where a run stands in its shuffled node list.
#[derive(Debug)]
pub(crate) struct NodeList {
    order: Vec<Node>,
    /// Index of the next candidate.
    cursor: usize,
    /// The entry of the node the run is registered with (none before the first registration and
    /// after a walk that found no node).
    in_use: Option<usize>,
}

impl NodeList {
    /// Each node repeated by its weight, shuffled with `seed` (random without one).
    pub(crate) fn new(nodes: Vec<(Node, u64)>, seed: Option<u64>) -> NodeList {
        let divisor = nodes.iter().fold(0, |g, (_, w)| gcd(g, *w)).max(1);
        let mut order: Vec<Node> = nodes
            .into_iter()
            .flat_map(|(node, weight)| std::iter::repeat_n(node, (weight / divisor) as usize))
            .collect();
        match seed {
            Some(s) => order.shuffle(&mut StdRng::seed_from_u64(s)),
            None => order.shuffle(&mut rand::thread_rng()),
        }
        NodeList { order, cursor: 0, in_use: None }
    }

    /// The next candidate, skipping copies of the node in use; `None` once the list is walked.
    pub(crate) fn next(&mut self) -> Option<Node> {
        while let Some(n) = self.order.get(self.cursor) {
            self.cursor += 1;
            if Some(n.entry) != self.in_use {
                return Some(n.clone());
            }
        }
        None
    }

    /// Marks the node the run is now registered with (`None` when no node accepted).
    pub(crate) fn set_in_use(&mut self, node: Option<&Node>) {
        self.in_use = node.map(|n| n.entry);
    }

    /// The addresses in walking order.
    #[cfg(test)]
    pub(crate) fn addrs(&self) -> Vec<String> {
        self.order.iter().map(|n| n.addr.clone()).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list(entries: &[&str], seed: u64) -> NodeList {
        let entries: Vec<String> = entries.iter().map(|s| s.to_string()).collect();
        NodeList::new(parse_nodes(&entries, &AddressScope::loopback()).unwrap(), Some(seed))
    }

    fn count(v: &[String], addr: &str) -> usize {
        v.iter().filter(|a| *a == addr).count()
    }

    #[test]
    fn every_node_appears_as_often_as_its_weight() {
        for seed in 0..50 {
            let order = list(&["127.0.0.1:1", "127.0.0.1:2,127.0.0.1:2", "127.0.0.1:3=3"], seed).addrs();
            assert_eq!(order.len(), 6, "{order:?}");
            assert_eq!(count(&order, "127.0.0.1:1"), 1);
            assert_eq!(count(&order, "127.0.0.1:2"), 2, "a repeated node is two entries");
            assert_eq!(count(&order, "127.0.0.1:3"), 3, "=3 puts it in three times");
        }
        // weights are divided by their greatest common divisor
        assert_eq!(list(&["127.0.0.1:1=2", "127.0.0.1:2=4"], 7).addrs().len(), 3);
        // the default port
        assert_eq!(list(&["localhost"], 1).addrs(), vec!["localhost:8002".to_string()]);
    }

    #[test]
    fn a_seed_fixes_the_order() {
        let nodes = ["127.0.0.1:1", "127.0.0.1:2", "127.0.0.1:3", "127.0.0.1:4"];
        assert_eq!(list(&nodes, 42).addrs(), list(&nodes, 42).addrs());
        let orders: std::collections::HashSet<Vec<String>> = (0..20).map(|s| list(&nodes, s).addrs()).collect();
        assert!(orders.len() > 1, "different seeds give different orders");
    }

    #[test]
    fn repetition_weighs_the_first_pick() {
        let runs = 4000;
        let first_a = (0..runs)
            .filter(|s| {
                list(&["127.0.0.1:1", "127.0.0.1:1", "127.0.0.1:1", "127.0.0.1:2"], *s).addrs()[0] == "127.0.0.1:1"
            })
            .count();
        // 3 of 4 entries: about 75 % of the shuffles start with it
        assert!((2800..3200).contains(&first_a), "{first_a} of {runs}");
    }

    #[test]
    fn the_walk_never_starts_over_and_skips_the_node_in_use() {
        for seed in 0..10 {
            let mut l = list(&["127.0.0.1:1=2", "127.0.0.1:2"], seed);
            let order = l.order.clone();
            let first = l.next().unwrap();
            l.set_in_use(Some(&first));
            let rest: Vec<Node> = std::iter::from_fn(|| l.next()).collect();
            let expected: Vec<Node> = order[1..].iter().filter(|n| n.entry != first.entry).cloned().collect();
            assert_eq!(rest, expected, "on from the cursor, copies of the node in use skipped");
            assert!(l.next().is_none(), "a walked list stays walked");
        }

        // separate entries of one address are separate nodes
        let mut l = list(&["127.0.0.1:1", "127.0.0.1:1"], 0);
        let first = l.next().unwrap();
        l.set_in_use(Some(&first));
        assert_eq!(l.next().map(|n| n.addr), Some("127.0.0.1:1".to_string()));
    }

    #[test]
    fn bad_lists() {
        let bad = |s: &str| parse_nodes(&[s.to_string()], &AddressScope::loopback()).is_err();
        assert!(bad("10.0.0.1:8002"), "not loopback");
        let lab = AddressScope::loopback().allow("10.0.0.0/24".parse().unwrap());
        assert!(parse_nodes(&["10.0.0.1:8002".to_string()], &lab).is_ok(), "inside an allowed network");
        assert!(bad("127.0.0.1:8002=0"));
        assert!(bad("127.0.0.1:8002=x"));
        assert!(bad("127.0.0.1:1,"), "an empty entry");
        assert!(parse_nodes(&[], &AddressScope::loopback()).is_err());
    }
}
