//! `#[event("name", version = N, aliases = ["old"])]` and
//! `#[upcast("name", from = N)]` / `#[upcast(snapshot, from = N)]`.

use proc_macro2::Span;
use syn::punctuated::Punctuated;
use syn::spanned::Spanned;
use syn::{Attribute, Expr, ExprLit, Lit, LitStr, Meta, Token};

use super::value;
use crate::ctxt::Ctxt;

/// The schema version an `#[event]` declares.
#[derive(Clone, Copy)]
pub(crate) enum Version {
    /// None written: version 1, upcasters (if any) from the run-time registry.
    Default,
    /// `version = N`, with the span of `N`.
    Declared(u32, Span),
    /// Written wrongly (reported): checks that need it are skipped.
    Invalid,
}

/// What `#[event(...)]` says.
pub(crate) struct EventAttr {
    /// The name, when the attribute gave one.
    pub(crate) name: Option<LitStr>,
    pub(crate) version: Version,
    /// Old names stored events of this type are still read under.
    pub(crate) aliases: Vec<LitStr>,
}

const EVENT_FORM: &str = "write the name as a string: `#[event(\"incremented\")]`";
const EVENT_OPTIONS: &str = "expected `version = 2` or `aliases = [\"old_name\"]` after the name";

/// Parses `#[event(...)]`, reporting every mistake in it.
pub(crate) fn event_attr(cx: &mut Ctxt, attr: &Attribute) -> EventAttr {
    let mut parsed = EventAttr {
        name: None,
        version: Version::Default,
        aliases: Vec::new(),
    };
    let list = match &attr.meta {
        Meta::Path(path) => {
            cx.error_spanned_by(path, format_args!("the event has no name: {EVENT_FORM}"));
            return parsed;
        }
        Meta::NameValue(meta) => {
            cx.error_spanned_by(meta, format_args!("{EVENT_FORM}, not `#[event = ...]`"));
            return parsed;
        }
        Meta::List(list) => list,
    };
    if list.tokens.is_empty() {
        cx.error_spanned_by(list, format_args!("the event has no name: {EVENT_FORM}"));
        return parsed;
    }
    let Ok(args) = list.parse_args_with(Punctuated::<Expr, Token![,]>::parse_terminated) else {
        cx.error_spanned_by(&list.tokens, EVENT_FORM);
        return parsed;
    };
    let (options, names): (Vec<&Expr>, Vec<&Expr>) =
        args.iter().partition(|arg| value::assignment(arg).is_some());
    match names.as_slice() {
        [
            Expr::Lit(ExprLit {
                lit: Lit::Str(name), ..
            }),
        ] => parsed.name = Some(name.clone()),
        [other] => cx.error_spanned_by(
            other,
            format_args!("the event name must be a string literal: {EVENT_FORM}"),
        ),
        [] => cx.error_spanned_by(&list.tokens, format_args!("the event has no name: {EVENT_FORM}")),
        several => cx.error_spanned_by(
            &list.tokens,
            format_args!(
                "an event has exactly one name, {} were given: {EVENT_FORM}",
                several.len()
            ),
        ),
    }
    for option in options {
        let Some((key, value)) = value::assignment(option) else {
            continue;
        };
        match key.to_string().as_str() {
            "version" if !matches!(parsed.version, Version::Default) => {
                cx.error_spanned_by(key, "`version` is given twice: keep one");
            }
            "version" => {
                parsed.version = match value::version(
                    cx,
                    "version",
                    value,
                    "schema versions start at 1: leave `version` out for the first shape of an event, and write `version = 2` for the next",
                ) {
                    Some(version) => Version::Declared(version, value.span()),
                    None => Version::Invalid,
                };
            }
            "aliases" => {
                parsed.aliases = value::names(cx, "aliases", value, "[\"old_name\"]").unwrap_or_default();
            }
            other => cx.error_spanned_by(
                key,
                format_args!("unknown `#[event]` option `{other}`: {EVENT_OPTIONS}"),
            ),
        }
    }
    parsed
}

/// What an `#[upcast(...)]` lifts.
pub(crate) enum Target {
    /// The payloads of one event type.
    Event(LitStr),
    /// The aggregate's snapshots (`#[upcast(snapshot, from = N)]`).
    Snapshot,
}

/// What `#[upcast(...)]` says; `None` fields were reported.
pub(crate) struct UpcastAttr {
    pub(crate) target: Option<Target>,
    /// The version lifted from, with the span of the number.
    pub(crate) from: Option<(u32, Span)>,
}

const UPCAST_FORM: &str = "write `#[upcast(\"incremented\", from = 1)]` for an event, or `#[upcast(snapshot, from = 1)]` for the aggregate's snapshots";

/// Parses `#[upcast(...)]`, reporting every mistake in it.
pub(crate) fn upcast_attr(cx: &mut Ctxt, attr: &Attribute) -> UpcastAttr {
    let mut parsed = UpcastAttr {
        target: None,
        from: None,
    };
    let Meta::List(list) = &attr.meta else {
        cx.error_spanned_by(attr, format_args!("say what the upcaster lifts: {UPCAST_FORM}"));
        return parsed;
    };
    let Ok(args) = list.parse_args_with(Punctuated::<Expr, Token![,]>::parse_terminated) else {
        cx.error_spanned_by(&list.tokens, UPCAST_FORM);
        return parsed;
    };
    let (options, targets): (Vec<&Expr>, Vec<&Expr>) =
        args.iter().partition(|arg| value::assignment(arg).is_some());
    match targets.as_slice() {
        [
            Expr::Lit(ExprLit {
                lit: Lit::Str(name), ..
            }),
        ] => parsed.target = Some(Target::Event(name.clone())),
        [Expr::Path(path)] if path.path.is_ident("snapshot") => parsed.target = Some(Target::Snapshot),
        [other] => cx.error_spanned_by(other, format_args!("name the event as a string: {UPCAST_FORM}")),
        _ => cx.error_spanned_by(
            &list.tokens,
            format_args!("an upcaster lifts one event type: {UPCAST_FORM}"),
        ),
    }
    let mut from_given = false;
    for option in options {
        let Some((key, value)) = value::assignment(option) else {
            continue;
        };
        if key != "from" {
            cx.error_spanned_by(
                key,
                format_args!("unknown `#[upcast]` option `{key}`: {UPCAST_FORM}"),
            );
            continue;
        }
        if from_given {
            cx.error_spanned_by(key, "`from` is given twice: keep one");
            continue;
        }
        from_given = true;
        parsed.from = value::version(
            cx,
            "from",
            value,
            "schema versions start at 1: the first upcaster lifts `from = 1`",
        )
        .map(|from| (from, value.span()));
    }
    if !from_given && parsed.target.is_some() {
        cx.error_spanned_by(
            &list.tokens,
            format_args!("say which version the upcaster lifts from: {UPCAST_FORM}"),
        );
    }
    parsed
}
