//! Train/test split of a relation's examples by entity pair, never by sentence: paraphrases of
//! one fact (and DBpedia pairs that hold several relations) never straddle the split. The data
//! (`tasks::derive`) and the page's pasted streams (`paste`) split with this one function.

use crate::tasks::Example;
use crate::tasks::sampling::SplitMix64;
use std::collections::{BTreeMap, HashMap};

/// A relation example's entity pair, case-folded: the unit of the split.
pub fn pair_of(e: &Example) -> (String, String) {
    let f = |m: &Option<String>| m.as_deref().unwrap_or("").to_lowercase();
    (f(&e.head), f(&e.tail))
}

/// At most this many test and train examples per relation.
#[derive(Debug, Clone, Copy)]
pub struct Caps {
    pub test: usize,
    pub train: usize,
}

/// Which side each entity pair went to (true = test), across the relations split so far.
pub type Sides = HashMap<(String, String), bool>;

/// One relation's examples split by entity pair. Pairs an earlier relation put on one side stay
/// there (`sides`); the free pairs, in `seed`'s order, fill the test side up to about a third of
/// the examples. Returns (train, test, overflow): overflow holds train-side examples past
/// `caps.train` (they may go to an unlabelled pool); test-side ones past the cap are dropped,
/// since no sentence of a test pair may reach the pool.
pub fn split_by_pair(
    examples: Vec<Example>,
    sides: &mut Sides,
    caps: Caps,
    seed: u64,
) -> (Vec<Example>, Vec<Example>, Vec<Example>) {
    let mut by_pair: BTreeMap<(String, String), Vec<Example>> = BTreeMap::new();
    for e in examples {
        by_pair.entry(pair_of(&e)).or_default().push(e);
    }
    let total: usize = by_pair.values().map(Vec::len).sum();
    // At least one test example once there are two: a pasted relation may have only a few.
    let want = caps.test.min(total / 3).max(usize::from(total >= 2));
    let mut pairs: Vec<_> = by_pair.into_iter().collect();
    SplitMix64::new(seed).shuffle(&mut pairs);
    // Pairs already on the test side first, so they count towards `want`.
    pairs.sort_by_key(|(p, _)| sides.get(p) != Some(&true));
    let (mut train, mut test) = (Vec::new(), Vec::new());
    for (p, v) in pairs {
        let to_test = match sides.get(&p) {
            Some(&side) => side,
            None => test.len() < want,
        };
        sides.insert(p, to_test);
        if to_test { &mut test } else { &mut train }.extend(v);
    }
    test.truncate(caps.test);
    let overflow = if train.len() > caps.train {
        train.split_off(caps.train)
    } else {
        Vec::new()
    };
    (train, test, overflow)
}

#[cfg(test)]
mod tests {
    use super::*;

    const CAPS: Caps = Caps {
        test: 20,
        train: 100,
    };

    fn ex(h: &str, t: &str, rel: &str) -> Example {
        Example {
            head: Some(h.into()),
            tail: Some(t.into()),
            ..Example::new(format!("[[{h}]] {rel} <<{t}>>"), rel)
        }
    }

    #[test]
    fn no_entity_pair_is_on_both_sides_of_the_relation_split() {
        // Two relations sharing pairs (as 21 WebNLG pairs do); one pair written in two cases.
        let a: Vec<Example> = (0..30)
            .map(|i| ex(&format!("H{}", i % 10), "T", "a"))
            .collect();
        let b: Vec<Example> = (0..30)
            .map(|i| ex(&format!("h{}", i % 12), "t", "b"))
            .collect();
        let mut sides = Sides::new();
        let mut seen: Sides = HashMap::new();
        for v in [a, b] {
            let (train, test, over) = split_by_pair(v, &mut sides, CAPS, 0);
            assert!(!test.is_empty() && test.len() <= CAPS.test);
            assert!(test.len() >= 30 / 3, "about a third: {}", test.len());
            for (e, side) in train
                .iter()
                .map(|e| (e, false))
                .chain(test.iter().map(|e| (e, true)))
                .chain(over.iter().map(|e| (e, false)))
            {
                let was = *seen.entry(pair_of(e)).or_insert(side);
                assert_eq!(was, side, "pair {:?} on both sides", pair_of(e));
            }
        }
    }

    #[test]
    fn train_past_its_cap_overflows_and_nothing_is_lost() {
        let v: Vec<Example> = (0..30).map(|i| ex(&format!("h{i}"), "t", "a")).collect();
        let caps = Caps { test: 5, train: 12 };
        let (train, test, over) = split_by_pair(v, &mut Sides::new(), caps, 3);
        assert_eq!((train.len(), test.len(), over.len()), (12, 5, 13));
    }
}
