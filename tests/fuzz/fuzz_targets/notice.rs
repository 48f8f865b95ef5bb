//! One notice from untrusted bytes (`shirase_proto::parse_notice`), as a provider sends it.
//!
//! Invariants, beyond "no panic":
//! - a notice that validates re-serializes into JSON that validates again to an equal notice,
//!   through `parse_notice`, `check_value` and serde alike;
//! - a refused notice has at least one violation, sorted by path, each path a JSON Pointer
//!   (empty or starting with `/`), and no path or message repeats an individual number.
#![no_main]

use libfuzzer_sys::fuzz_target;
use shirase_proto::check_digit::find_individual_numbers;
use shirase_proto::validate::check_value;
use shirase_proto::{Limits, Notice, parse_notice};

fuzz_target!(|data: &[u8]| {
    let limits = Limits::default();
    match parse_notice(data, &limits) {
        Ok(notice) => {
            assert!(
                notice
                    .data
                    .keys
                    .as_ref()
                    .is_none_or(|k| k.atena_no.len() <= limits.max_keys)
            );
            assert_eq!(notice.subject, notice.data.interface_id);
            assert_eq!(notice.source.provider, notice.data.provider);
            assert_eq!(notice.source.municipality, notice.data.municipality_code);
            let json = notice.to_json();
            assert!(
                json.len() <= limits.max_notice_bytes,
                "re-serialized notice grew"
            );
            assert_eq!(parse_notice(&json, &limits).as_ref(), Ok(&notice));
            let value: serde_json::Value = match serde_json::from_slice(&json) {
                Ok(v) => v,
                Err(e) => panic!("re-serialized notice is not JSON: {e}"),
            };
            assert_eq!(check_value(&value, &limits).as_ref(), Ok(&notice));
            match serde_json::from_slice::<Notice>(&json) {
                Ok(n) => assert_eq!(n, notice),
                Err(e) => panic!("serde refuses a re-serialized notice: {e}"),
            }
            assert_eq!(notice.to_json(), json, "serialization is deterministic");
        }
        Err(violations) => {
            assert!(!violations.is_empty());
            for v in &violations {
                assert!(
                    v.path.is_empty() || v.path.starts_with('/'),
                    "not a JSON Pointer: {:?}",
                    v.path
                );
                assert!(find_individual_numbers(&v.path).is_empty(), "{v:?}");
                assert!(find_individual_numbers(&v.message).is_empty(), "{v:?}");
                assert!(!v.message.is_empty());
            }
            assert!(violations.windows(2).all(|w| w[0].path <= w[1].path));
        }
    }
});
