//! Finds a `#[derive(...)]` written above `#[aggregate]`, in the source.
//!
//! A derive listed first expands first: `#[aggregate]` then receives the
//! struct without it, and the derived `Clone`, `Default` or `Deserialize`
//! build the struct without the hidden field `#[aggregate]` adds, each
//! failing in rustc's words. Nothing in the tokens `#[aggregate]` receives
//! says a derive was there, so the text above the attribute is read. When
//! that text cannot be read, or is not a run of attributes and comments,
//! nothing is reported here, and the type-level probe of
//! `factum::__private::derive_order` still catches `Clone` and `Default`.

/// The first `#[derive(...)]` written above the `#[aggregate]` at
/// `call_site`, as written.
pub(crate) fn derive_above(call_site: proc_macro::Span) -> Option<String> {
    let path = call_site.local_file()?;
    let source = std::fs::read_to_string(path).ok()?;
    let at = offset(&source, call_site.line(), call_site.column())?;
    // The position must hold the attribute itself, or the span and the
    // file disagree (a file changed since, a span from another file).
    let attribute = call_site.source_text()?;
    if !source[at..].starts_with(attribute.as_str()) {
        return None;
    }
    derive_in(attributes_above(&source[..at]))
}

/// The byte offset of a one-based line and column (counted in chars).
fn offset(source: &str, line: usize, column: usize) -> Option<usize> {
    let line_start = if line <= 1 {
        0
    } else {
        source.match_indices('\n').nth(line - 2)?.0 + 1
    };
    let rest = &source[line_start..];
    let (in_line, _) = rest.char_indices().nth(column.checked_sub(1)?)?;
    Some(line_start + in_line)
}

/// The end of `prefix` that holds the item's earlier attributes: the lines
/// back to the one that ends the previous item or opens the enclosing
/// block (`;`, `{`, `}`), or an inner attribute (`#![...]`).
fn attributes_above(prefix: &str) -> &str {
    let mut start = prefix.rfind('\n').map_or(0, |newline| newline + 1);
    while start > 0 {
        let line_start = prefix[..start - 1].rfind('\n').map_or(0, |newline| newline + 1);
        let code = prefix[line_start..start - 1]
            .split("//")
            .next()
            .unwrap_or_default()
            .trim();
        if code.ends_with([';', '{', '}']) || code.starts_with("#!") {
            break;
        }
        start = line_start;
    }
    &prefix[start..]
}

/// The first derive among `text`'s attributes, with its whitespace made
/// single spaces; `None` when there is none or `text` is not only
/// attributes and comments.
fn derive_in(text: &str) -> Option<String> {
    let derive = attributes(text)?.into_iter().find(|attribute| {
        let inner = attribute[1..].trim_start().trim_start_matches('[').trim_start();
        inner
            .strip_prefix("derive")
            .is_some_and(|rest| rest.trim_start().starts_with('('))
    })?;
    Some(derive.split_whitespace().collect::<Vec<_>>().join(" "))
}

/// `text` as its outer attributes (`#[...]`, doc comments skipped with the
/// other comments), or `None` if anything else is in it.
fn attributes(text: &str) -> Option<Vec<&str>> {
    let bytes = text.as_bytes();
    let mut attributes = Vec::new();
    let mut index = 0;
    while index < bytes.len() {
        match (bytes[index], bytes.get(index + 1)) {
            (byte, _) if byte.is_ascii_whitespace() => index += 1,
            (b'/', Some(b'/')) => {
                index = text[index..]
                    .find('\n')
                    .map_or(bytes.len(), |end| index + end + 1);
            }
            (b'/', Some(b'*')) => index += text[index + 2..].find("*/")? + 4,
            (b'#', _) => {
                let end = attribute_end(text, index)?;
                attributes.push(&text[index..end]);
                index = end;
            }
            _ => return None,
        }
    }
    Some(attributes)
}

/// The end of the attribute `#[...]` starting at `start`: past its
/// closing bracket, string literals skipped.
fn attribute_end(text: &str, start: usize) -> Option<usize> {
    let bytes = text.as_bytes();
    let mut index = start + 1;
    while bytes.get(index)?.is_ascii_whitespace() {
        index += 1;
    }
    if bytes[index] != b'[' {
        return None;
    }
    let mut depth = 0_usize;
    while index < bytes.len() {
        match bytes[index] {
            b'[' | b'(' | b'{' => depth += 1,
            b']' | b')' | b'}' => {
                depth = depth.checked_sub(1)?;
                if depth == 0 {
                    return Some(index + 1);
                }
            }
            b'"' => {
                index += 1;
                while *bytes.get(index)? != b'"' {
                    index += if bytes[index] == b'\\' { 2 } else { 1 };
                }
            }
            _ => {}
        }
        index += 1;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What `derive_above` finds above the `#[aggregate]` in `source`.
    fn found(source: &str) -> Option<String> {
        let at = source
            .find("#[aggregate]")
            .expect("the case has an `#[aggregate]`");
        derive_in(attributes_above(&source[..at]))
    }

    #[test]
    fn a_derive_on_the_lines_above_is_found() {
        let source =
            "use x;\n\n/// A counter.\n#[derive(Debug,\n    Clone)]\n#[aggregate]\npub struct Counter {}";
        assert_eq!(found(source).as_deref(), Some("#[derive(Debug, Clone)]"));
    }

    #[test]
    fn a_derive_on_the_same_line_is_found() {
        let source = "fn main() {\n    #[derive(Clone)] #[aggregate]\n    struct Counter {}\n}";
        assert_eq!(found(source).as_deref(), Some("#[derive(Clone)]"));
        assert_eq!(
            found("#[derive (Clone)]#[aggregate] struct A {}").as_deref(),
            Some("#[derive (Clone)]")
        );
    }

    #[test]
    fn derives_below_or_on_the_previous_item_are_not_found() {
        assert_eq!(found("#[aggregate]\n#[derive(Clone)]\nstruct A {}"), None);
        assert_eq!(
            found("#[derive(Clone)]\nstruct B;\n#[aggregate]\nstruct A {}"),
            None
        );
        assert_eq!(
            found("#[derive(Clone)]\nstruct B {\n    x: u8,\n}\n#[aggregate]\nstruct A {}"),
            None
        );
        assert_eq!(found("#![allow(x)]\n#[aggregate]\nstruct A {}"), None);
    }

    #[test]
    fn derive_in_comments_strings_and_other_attributes_is_not_found() {
        let source = "mod m {\n// derive(Clone) above would break\n/* #[derive(Clone)] */\n/// #[derive(Clone)]\n#[doc = \"#[derive(Clone)] ]\"]\n#[cfg_attr(test, derive(Clone))]\n#[serde(rename = \"x\")]\n#[aggregate]\nstruct A {}";
        assert_eq!(found(source), None);
    }

    #[test]
    fn text_that_is_not_attributes_is_not_judged() {
        assert_eq!(
            found("let a = b\n#[derive(Clone)]\n#[aggregate]\nstruct A {}"),
            None
        );
        assert_eq!(found("#[derive(Clone)\n#[aggregate]\nstruct A {}"), None);
    }

    #[test]
    fn offsets_count_lines_and_chars_from_one() {
        let source = "ab\n  é#[x]\n";
        assert_eq!(offset(source, 1, 1), Some(0));
        assert_eq!(offset(source, 2, 4), Some(source.find('#').expect("has #")));
        assert_eq!(offset(source, 2, 9), None);
        assert_eq!(offset(source, 4, 1), None);
        assert_eq!(offset(source, 2, 0), None);
    }
}
