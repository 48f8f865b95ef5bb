//! The generated population and the data items (`record`) of each history row.
//!
//! Everything here is fake and looks it: names come from short lists, every address is in
//! 架空町 ("fictional town"), and the individual number (個人番号) of `001o06` rows deliberately
//! fails its check digit so it can never be a real person's number.

use jiff::civil::Date;
use rand::Rng;
use rand::rngs::StdRng;
use rand::seq::IndexedRandom;
use serde_json::{Value, json};
use shirase_proto::{AtenaNo, InterfaceId};

const FAMILY: &[(&str, &str)] = &[
    ("見本", "ミホン"),
    ("試験", "シケン"),
    ("架空", "カクウ"),
    ("仮名", "カメイ"),
    ("模擬", "モギ"),
    ("例題", "レイダイ"),
    ("検証", "ケンショウ"),
    ("練習", "レンシュウ"),
];
const GIVEN: &[(&str, &str)] = &[
    ("太郎", "タロウ"),
    ("花子", "ハナコ"),
    ("一郎", "イチロウ"),
    ("二郎", "ジロウ"),
    ("三子", "ミツコ"),
    ("四郎", "シロウ"),
    ("五月", "サツキ"),
    ("六花", "リッカ"),
];
const MOVE_REASONS: &[&str] = &["転入", "転居", "転出", "世帯変更", "氏名変更", "職権修正"];

/// One generated resident (addressee). Stable attributes only; what changes lives in rows.
#[derive(Debug, Clone)]
pub(crate) struct Resident {
    pub atena_no: AtenaNo,
    family: usize,
    given: usize,
    birth: Date,
    sex: u8,
    /// Deliberately invalid individual number (see the module doc).
    fake_kojin_no: String,
}

/// Generate `n` residents. Addressee numbers are `000000000100001` upwards.
pub(crate) fn residents(rng: &mut StdRng, n: usize) -> Vec<Resident> {
    (0..n)
        .filter_map(|i| {
            let atena_no = format!("{:015}", 100_001 + i as u64).parse().ok()?;
            let year = rng.random_range(1935..=2024);
            let birth = Date::new(year, rng.random_range(1..=12), rng.random_range(1..=28)).ok()?;
            Some(Resident {
                atena_no,
                family: rng.random_range(0..FAMILY.len()),
                given: rng.random_range(0..GIVEN.len()),
                birth,
                sex: rng.random_range(1..=2),
                fake_kojin_no: fake_individual_number(rng),
            })
        })
        .collect()
}

fn fake_individual_number(rng: &mut StdRng) -> String {
    let first11: String = (0..11)
        .map(|_| char::from(b'0' + rng.random_range(0..10u8)))
        .collect();
    let valid = shirase_proto::check_digit::individual_number_check_digit(&first11).unwrap_or(0);
    format!("{first11}{}", (valid + 1) % 10)
}

fn address(rng: &mut StdRng) -> String {
    format!(
        "東京都千代田区架空町{}丁目{}番{}号",
        rng.random_range(1..=9),
        rng.random_range(1..=30),
        rng.random_range(1..=20)
    )
}

/// The data items of a new history row of `interface` for `resident`.
pub(crate) fn record(
    rng: &mut StdRng,
    interface: &InterfaceId,
    resident: &Resident,
    change_date: Date,
) -> Value {
    let (family, family_kana) = FAMILY[resident.family];
    let (given, given_kana) = GIVEN[resident.given];
    match interface.business_id().as_str() {
        "010" => {
            let income: u64 = rng.random_range(0..800) * 10_000;
            let income_levy = income / 10;
            json!({
                "shimei": format!("{family} {given}"),
                "fiscal_year": change_date.year(),
                "taxable_income": income,
                "shotokuwari": income_levy,
                "kintowari": 5_000,
                "annual_tax": income_levy + 5_000,
                "installments": 4,
            })
        }
        _ => {
            let mut r = json!({
                "shimei": format!("{family} {given}"),
                "shimei_kana": format!("{family_kana} {given_kana}"),
                "birth_date": resident.birth.to_string(),
                "sex": resident.sex,
                "address": address(rng),
                "setai_no": format!("{:015}", rng.random_range(1..1_000_000u64)),
                "ido_jiyu": MOVE_REASONS.choose(rng).copied().unwrap_or("転居"),
            });
            // 001o06 is the "with individual number" variant of the resident-registry change.
            if interface.as_str().starts_with("001o06")
                && let Some(m) = r.as_object_mut()
            {
                m.insert(
                    "kojin_no".into(),
                    Value::String(resident.fake_kojin_no.clone()),
                );
            }
            r
        }
    }
}

#[cfg(test)]
mod tests {
    use rand::SeedableRng;

    use super::*;

    #[test]
    fn generation_is_deterministic_and_fake() {
        let a = residents(&mut StdRng::seed_from_u64(7), 50);
        let b = residents(&mut StdRng::seed_from_u64(7), 50);
        assert_eq!(a.len(), 50);
        assert_eq!(a[0].atena_no.as_str(), "000000000100001");
        assert_eq!(a[49].atena_no.as_str(), "000000000100050");
        for (x, y) in a.iter().zip(&b) {
            assert_eq!(x.fake_kojin_no, y.fake_kojin_no);
            assert!(!shirase_proto::check_digit::is_individual_number(
                &x.fake_kojin_no
            ));
        }
        let i: InterfaceId = "001o06-00".parse().unwrap();
        let d = Date::new(2026, 11, 25).unwrap();
        let r = record(&mut StdRng::seed_from_u64(1), &i, &a[0], d);
        assert!(r["address"].as_str().unwrap().contains("架空町"));
        assert_eq!(r["kojin_no"].as_str().unwrap().len(), 12);
    }
}
