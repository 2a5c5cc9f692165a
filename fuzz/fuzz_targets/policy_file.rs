//! Any bytes as a partition policy: either a problem list naming the file, or a policy whose pure
//! create plan, for any "now", is a run of contiguous periods starting at the one containing now,
//! each named after its bounds. It never panics.

#![no_main]

use chrono::{DateTime, Utc};
use dhctl::partitions::plan::{self, Action};
use dhctl::partitions::policy;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // The first 8 bytes pick "now" (seconds since 1970, up to about year 2500), the rest is the file.
    if data.len() < 8 {
        return;
    }
    let (clock, body) = data.split_at(8);
    let seconds = u64::from_le_bytes(clock.try_into().unwrap()) % 16_725_225_600;
    let now: DateTime<Utc> = DateTime::from_timestamp(seconds as i64, 0).unwrap();
    let file = "partitions/fuzz.toml";
    let policy = match policy::parse(file, body) {
        Ok(policy) => policy,
        Err(problems) => {
            assert!(!problems.is_empty());
            assert!(problems.iter().all(|p| p.file == file));
            return;
        }
    };
    let Ok(actions) = plan::create(&policy, &[], now, policy.premake) else {
        return;
    };
    assert_eq!(actions.len() as u32, policy.premake + 1);
    let mut previous_end: Option<DateTime<Utc>> = None;
    for (i, action) in actions.iter().enumerate() {
        let Action::Create { name, from, to } = action else {
            panic!("create planned {action:?}")
        };
        assert!(from < to);
        if i == 0 {
            assert!(
                *from <= now && now < *to,
                "the first period must contain now"
            );
        }
        if let Some(end) = previous_end {
            assert_eq!(end, *from, "periods must be contiguous");
        }
        assert!(name.starts_with(&policy.table));
        previous_end = Some(*to);
    }
});
