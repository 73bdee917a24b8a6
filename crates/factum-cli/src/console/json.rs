//! Payloads laid out for reading, by moving whitespace only: parsing them
//! into `serde_json::Value` and printing again would round big numbers
//! (`12345678901234567890123` becomes `1.2345678901234568e22`) and
//! rewrite escapes, and the console must show what is stored.

/// `text` (JSON) indented by two spaces per level, one member per line.
pub(crate) fn pretty(text: &str) -> String {
    layout(text, true)
}

/// `text` (JSON) on one line, with a space after each `:` and `,`.
pub(crate) fn compact(text: &str) -> String {
    layout(text, false)
}

/// The first `limit` characters of `text`, with `…` when it was longer.
pub(crate) fn shorten(text: &str, limit: usize) -> String {
    match text.char_indices().nth(limit) {
        Some((end, _)) => format!("{}…", &text[..end]),
        None => text.to_owned(),
    }
}

fn layout(text: &str, indent: bool) -> String {
    let mut out = String::with_capacity(text.len() + text.len() / 4);
    let mut depth = 0usize;
    let mut in_string = false;
    let mut escaped = false;
    let mut chars = text.chars().peekable();
    let newline = |out: &mut String, depth: usize| {
        if indent {
            out.push('\n');
            out.extend(std::iter::repeat_n("  ", depth));
        }
    };
    while let Some(character) = chars.next() {
        if in_string {
            out.push(character);
            match (escaped, character) {
                (true, _) => escaped = false,
                (false, '\\') => escaped = true,
                (false, '"') => in_string = false,
                _ => {}
            }
            continue;
        }
        match character {
            '"' => {
                in_string = true;
                out.push(character);
            }
            '{' | '[' => {
                out.push(character);
                skip_whitespace(&mut chars);
                if matches!(chars.peek(), Some('}' | ']')) {
                    // `{}` and `[]` stay on one line.
                    continue;
                }
                depth += 1;
                newline(&mut out, depth);
            }
            '}' | ']' => {
                if !out.ends_with(['{', '[']) {
                    depth = depth.saturating_sub(1);
                    newline(&mut out, depth);
                }
                out.push(character);
            }
            ',' => {
                out.push(',');
                if indent {
                    newline(&mut out, depth);
                } else {
                    out.push(' ');
                }
            }
            ':' => out.push_str(": "),
            whitespace if whitespace.is_whitespace() => {}
            other => out.push(other),
        }
    }
    out
}

fn skip_whitespace(chars: &mut std::iter::Peekable<std::str::Chars<'_>>) {
    while chars.next_if(|character| character.is_whitespace()).is_some() {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_and_escapes_are_kept_as_stored() {
        let stored = r#"{ "big":12345678901234567890123 ,"tiny":1e-7, "s":"a, \"b\": [c]\\" }"#;
        assert_eq!(
            compact(stored),
            r#"{"big": 12345678901234567890123, "tiny": 1e-7, "s": "a, \"b\": [c]\\"}"#
        );
        assert_eq!(
            pretty(stored),
            "{\n  \"big\": 12345678901234567890123,\n  \"tiny\": 1e-7,\n  \"s\": \"a, \\\"b\\\": [c]\\\\\"\n}"
        );
    }

    #[test]
    fn nesting_is_indented_and_empty_containers_stay_short() {
        assert_eq!(
            pretty(r#"{"a":[1,{"b":{}}],"c":[ ]}"#),
            "{\n  \"a\": [\n    1,\n    {\n      \"b\": {}\n    }\n  ],\n  \"c\": []\n}"
        );
        assert_eq!(pretty("42"), "42");
    }

    #[test]
    fn shortening_counts_characters() {
        assert_eq!(shorten("🦀🦀🦀", 2), "🦀🦀…");
        assert_eq!(shorten("ab", 2), "ab");
    }
}
