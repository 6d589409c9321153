//! Keys → key groups → subtasks, after Flink's `KeyGroupRangeAssignment`.
//!
//! The hash is ours and fixed forever: key groups are stored in
//! checkpoints and savepoints, so changing it would scatter restored state.

/// Default max parallelism (number of key groups).
pub const DEFAULT_MAX_PARALLELISM: u32 = 128;

/// A stable 64-bit hash of key bytes (FNV-1a followed by a murmur3
/// finalizer to spread the bits).
pub fn hash_key(key: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in key {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    h ^ (h >> 33)
}

/// The key group of `key` among `max_parallelism` groups.
pub fn key_group(key: &[u8], max_parallelism: u32) -> u32 {
    (hash_key(key) % u64::from(max_parallelism)) as u32
}

/// The subtask (of `parallelism`) that owns key group `group`.
pub fn subtask_of_group(group: u32, max_parallelism: u32, parallelism: u32) -> u32 {
    (u64::from(group) * u64::from(parallelism) / u64::from(max_parallelism)) as u32
}

/// The key groups subtask `subtask` (of `parallelism`) owns: a contiguous
/// range, empty (`None`) when there are more subtasks than groups.
pub fn key_group_range(subtask: u32, max_parallelism: u32, parallelism: u32) -> Option<std::ops::RangeInclusive<u16>> {
    let (s, m, p) = (u64::from(subtask), u64::from(max_parallelism), u64::from(parallelism.max(1)));
    // The first group g with g * p / m >= s, and the one before the next
    // subtask's first.
    let first = (s * m).div_ceil(p);
    let end = ((s + 1) * m).div_ceil(p).min(m);
    (first < end).then(|| first as u16..=(end - 1) as u16)
}

/// The subtask that owns `key`.
pub fn subtask_of_key(key: &[u8], max_parallelism: u32, parallelism: u32) -> u32 {
    subtask_of_group(key_group(key, max_parallelism), max_parallelism, parallelism)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_groups_are_spread_and_stable() {
        assert_eq!(key_group(b"hello", 128), key_group(b"hello", 128));
        let mut seen = [0u32; 128];
        for i in 0..12_800u32 {
            seen[key_group(i.to_string().as_bytes(), 128) as usize] += 1;
        }
        assert!(seen.iter().all(|&n| (50..=150).contains(&n)), "{seen:?}");
    }

    #[test]
    fn subtasks_own_contiguous_key_group_ranges() {
        let owners: Vec<u32> = (0..128).map(|g| subtask_of_group(g, 128, 3)).collect();
        assert!(owners.windows(2).all(|w| w[0] <= w[1]));
        assert_eq!(owners[0], 0);
        assert_eq!(owners[127], 2);
        assert!((0..128).all(|g| subtask_of_group(g, 128, 1) == 0));
    }

    #[test]
    fn a_subtasks_key_group_range_holds_exactly_the_groups_it_owns() {
        for (m, p) in [(128, 1), (128, 3), (128, 128), (7, 3), (5, 9), (32768, 7)] {
            for s in 0..p {
                let owned: Vec<u32> = (0..m).filter(|&g| subtask_of_group(g, m, p) == s).collect();
                let range: Vec<u32> = key_group_range(s, m, p).map_or(vec![], |r| r.map(u32::from).collect());
                assert_eq!(owned, range, "subtask {s} of {p}, {m} groups");
            }
        }
    }
}
