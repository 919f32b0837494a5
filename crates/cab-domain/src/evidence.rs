//! The evidence pack for a period: which refusals are separation of
//! duties, the reproducible random sample of changes an auditor inspects,
//! and the manifest CAB signs over every file of the pack.

use chrono::{DateTime, NaiveDate, Utc};

/// The refusal reasons that are separation of duties (ISO/IEC 27001 A.5.3):
/// one person would have been two of the voices a decision needs, or
/// decided on their own work.
pub const SEPARATION_OF_DUTIES: &[&str] = &[
    "self_approval",
    "self_assessment",
    "self_deployment",
    "self_review",
    "self_confirmation",
    "own_roles",
    "assessor_cannot_vote",
    "voter_cannot_assess",
    "contributor_has_decided",
    "approver_deployment",
    "break_glass_contributor",
    "break_glass_self_confirm",
];

/// Whether a refusal's reason is separation of duties.
pub fn is_separation_of_duties(reason: &str) -> bool {
    SEPARATION_OF_DUTIES.contains(&reason)
}

/// The refusal reasons of the deployment gate that keep environments apart
/// (A.8.31): promotion order, freezes, windows and soak times.
pub const ENVIRONMENT_GUARDS: &[&str] = &[
    "promotion_order",
    "freeze_in_force",
    "outside_window",
    "soak_time",
    "soak_not_over",
];

/// SplitMix64: the generator behind the sample, simple enough to redo by
/// hand. Each step adds 0x9E3779B97F4A7C15 to the state (wrapping) and
/// mixes it: z ^= z >> 30, z *= 0xBF58476D1CE4E5B9, z ^= z >> 27,
/// z *= 0x94D049BB133111EB, z ^= z >> 31 (multiplications wrapping).
pub struct SplitMix64(u64);

impl SplitMix64 {
    pub fn new(seed: u64) -> Self {
        SplitMix64(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}

/// Which of `population` items (in the population's order, e.g. changes by
/// number) make a random sample of `size`, from `seed`: the first `size`
/// places of a Fisher–Yates shuffle, where place `i` takes the item at
/// `i + next() % (population - i)`. The same seed picks the same sample.
pub fn sample(population: usize, size: usize, seed: u64) -> Vec<usize> {
    let size = size.min(population);
    let mut order: Vec<usize> = (0..population).collect();
    let mut rng = SplitMix64::new(seed);
    for i in 0..size {
        let left = (population - i) as u64;
        let j = i + (rng.next_u64() % left) as usize;
        order.swap(i, j);
    }
    order.truncate(size);
    order
}

/// What the signed manifest says about the pack, before the files.
pub struct ManifestHead<'a> {
    pub origin: &'a str,
    pub from: NaiveDate,
    pub to: NaiveDate,
    pub generated: DateTime<Utc>,
    pub sample_size: usize,
    pub seed: u64,
}

/// The manifest's text, which CAB signs as a signed note: five lines about
/// the pack, then one line per file as `sha256sum` writes them (the
/// lowercase hex SHA-256, two spaces, the file's path in the archive).
pub fn manifest_text(head: &ManifestHead<'_>, files: &[(String, [u8; 32])]) -> String {
    let mut text = format!(
        "CAB evidence pack\norigin {}\nperiod {} {}\ngenerated {}\nsample {} seed {}\n",
        head.origin,
        head.from,
        head.to,
        head.generated.format("%Y-%m-%dT%H:%M:%SZ"),
        head.sample_size,
        head.seed
    );
    for (name, sha) in files {
        text.push_str(&hex::encode(sha));
        text.push_str("  ");
        text.push_str(name);
        text.push('\n');
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splitmix64_gives_its_published_sequence() {
        // The reference outputs for seed 1234567 (Vigna's splitmix64.c).
        let mut r = SplitMix64::new(1_234_567);
        let got: Vec<u64> = (0..3).map(|_| r.next_u64()).collect();
        assert_eq!(
            got,
            [
                6_457_827_717_110_365_317,
                3_203_168_211_198_807_973,
                9_817_491_932_198_370_423
            ]
        );
    }

    #[test]
    fn the_sample_is_the_seeds_and_nobody_twice() {
        let a = sample(100, 10, 42);
        assert_eq!(a, sample(100, 10, 42));
        assert_ne!(a, sample(100, 10, 43));
        assert_eq!(a.len(), 10);
        let mut sorted = a.clone();
        sorted.sort();
        sorted.dedup();
        assert_eq!(sorted.len(), 10);
        assert!(a.iter().all(|&i| i < 100));
        // Asking for more than there is gives everything, once.
        let mut all = sample(5, 9, 7);
        all.sort();
        assert_eq!(all, vec![0, 1, 2, 3, 4]);
        assert!(sample(0, 3, 7).is_empty());
        // The first pick follows the documented rule.
        let mut rng = SplitMix64::new(42);
        assert_eq!(a[0], (rng.next_u64() % 100) as usize);
    }

    #[test]
    fn the_sample_reaches_every_place() {
        let mut seen = [false; 20];
        for seed in 0..200 {
            for i in sample(20, 3, seed) {
                seen[i] = true;
            }
        }
        assert!(seen.iter().all(|s| *s));
    }

    #[test]
    fn separation_of_duties_reasons_are_named() {
        assert!(is_separation_of_duties("self_approval"));
        assert!(is_separation_of_duties("contributor_has_decided"));
        assert!(!is_separation_of_duties("stale_revision"));
        assert!(ENVIRONMENT_GUARDS.contains(&"promotion_order"));
    }

    #[test]
    fn the_manifest_lists_each_file_as_sha256sum_does() {
        let head = ManifestHead {
            origin: "cab.test/audit",
            from: NaiveDate::from_ymd_opt(2026, 1, 1).expect("day"),
            to: NaiveDate::from_ymd_opt(2026, 3, 31).expect("day"),
            generated: DateTime::from_timestamp(1_800_000_000, 0).expect("time"),
            sample_size: 10,
            seed: 99,
        };
        let text = manifest_text(&head, &[("a/b.csv".into(), [0xab; 32])]);
        assert_eq!(
            text,
            format!(
                "CAB evidence pack\norigin cab.test/audit\nperiod 2026-01-01 2026-03-31\ngenerated 2027-01-15T08:00:00Z\nsample 10 seed 99\n{}  a/b.csv\n",
                "ab".repeat(32)
            )
        );
    }
}
