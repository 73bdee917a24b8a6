//! Event names: the rule they follow and the enum variant each becomes.

/// The rule every event name follows, quoted in error messages.
pub(crate) const NAME_RULE: &str = "an event name starts with an ASCII letter, followed by ASCII letters, digits, `_`, `-` or `.` (e.g. `incremented`, `money_deposited`, `order.shipped`)";

/// The rule every stored aggregate name follows, quoted in error messages.
/// No `-`: a stream id displays as `Type-id`.
pub(crate) const AGGREGATE_NAME_RULE: &str = "an aggregate name starts with an ASCII letter, followed by ASCII letters, digits, `_` or `.` (e.g. `Counter`, `bank_account`, `billing.Invoice`)";

/// Checks `name` against [`NAME_RULE`]; on failure says what is wrong.
pub(crate) fn check_event_name(name: &str) -> Result<(), String> {
    check_name("the event name", name, NAME_RULE, |c| {
        matches!(c, '_' | '-' | '.')
    })
}

/// Checks `name` against [`AGGREGATE_NAME_RULE`]; on failure says what is wrong.
pub(crate) fn check_aggregate_name(name: &str) -> Result<(), String> {
    check_name("the aggregate name", name, AGGREGATE_NAME_RULE, |c| {
        matches!(c, '_' | '.')
    })
}

fn check_name(what: &str, name: &str, rule: &str, punctuation: fn(char) -> bool) -> Result<(), String> {
    let mut chars = name.chars();
    let Some(first) = chars.next() else {
        return Err(format!("{what} is empty: {rule}"));
    };
    if !first.is_ascii_alphabetic() {
        return Err(format!("{what} `{name}` starts with `{first}`: {rule}"));
    }
    if let Some(bad) = chars.find(|&c| !(c.is_ascii_alphanumeric() || punctuation(c))) {
        return Err(format!(
            "{what} `{name}` contains `{}`: {rule}",
            bad.escape_default()
        ));
    }
    Ok(())
}

/// The enum variant of an event name, in UpperCamelCase: `incremented` →
/// `Incremented`, `money_deposited`, `money-deposited`, `money.deposited`
/// and `moneyDeposited` → `MoneyDeposited`, `HTTPCallMade` → `HttpCallMade`.
///
/// `name` must pass [`check_event_name`].
pub(crate) fn variant_name(name: &str) -> String {
    let chars: Vec<char> = name.chars().collect();
    let mut variant = String::with_capacity(name.len());
    let mut word_start = true;
    for (index, &current) in chars.iter().enumerate() {
        if matches!(current, '_' | '-' | '.') {
            word_start = true;
            continue;
        }
        let previous = index.checked_sub(1).map(|i| chars[i]);
        let next = chars.get(index + 1).copied();
        if current.is_ascii_uppercase() {
            // A new word starts at `aB` and at the last capital of `ABc`.
            let after_lower = previous.is_some_and(|p| p.is_ascii_lowercase() || p.is_ascii_digit());
            let ends_acronym = previous.is_some_and(|p| p.is_ascii_uppercase())
                && next.is_some_and(|n| n.is_ascii_lowercase());
            if after_lower || ends_acronym {
                word_start = true;
            }
        }
        if word_start {
            variant.push(current.to_ascii_uppercase());
            word_start = false;
        } else {
            variant.push(current.to_ascii_lowercase());
        }
    }
    variant
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn variants() {
        assert_eq!(variant_name("incremented"), "Incremented");
        assert_eq!(variant_name("money_deposited"), "MoneyDeposited");
        assert_eq!(variant_name("money-deposited"), "MoneyDeposited");
        assert_eq!(variant_name("money.deposited"), "MoneyDeposited");
        assert_eq!(variant_name("moneyDeposited"), "MoneyDeposited");
        assert_eq!(variant_name("MONEY_DEPOSITED"), "MoneyDeposited");
        assert_eq!(variant_name("HTTPCallMade"), "HttpCallMade");
        assert_eq!(variant_name("order.v2.shipped"), "OrderV2Shipped");
        assert_eq!(variant_name("a__b-"), "AB");
    }

    #[test]
    fn names() {
        assert!(check_event_name("incremented").is_ok());
        assert!(check_event_name("order.v2-shipped_x").is_ok());
        assert!(check_event_name("").is_err());
        assert!(check_event_name("2fa").is_err());
        assert!(check_event_name("_x").is_err());
        assert!(check_event_name("money deposited").is_err());
        assert!(check_event_name("café").is_err());
        assert!(check_aggregate_name("billing.Invoice_2").is_ok());
        assert!(check_aggregate_name("bank-account").is_err());
        assert!(check_aggregate_name("$all").is_err());
        assert!(check_aggregate_name("").is_err());
    }
}
