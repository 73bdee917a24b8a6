//! Our attributes: `#[aggregate(...)]` options, `#[event("name")]`, and the
//! derives on an aggregate struct that change what is generated.

use proc_macro2::{Span, TokenStream};
use syn::punctuated::Punctuated;
use syn::{Attribute, LitStr, Meta, Path, Token};

use crate::ctxt::Ctxt;

/// The options of `#[aggregate(...)]`.
#[derive(Default)]
pub(crate) struct Options {
    /// `default`: the struct implements `Default` by hand.
    pub(crate) default: Option<Span>,
    /// Where the first option was written, for "options go on the struct".
    pub(crate) first: Option<Span>,
}

const VALID_OPTIONS: &str =
    "the only option is `default` (`#[aggregate(default)]`, for a struct with a hand-written `impl Default`)";

/// Parses the arguments of `#[aggregate(...)]`.
pub(crate) fn options(cx: &mut Ctxt, args: TokenStream) -> Options {
    let mut options = Options::default();
    let parser = syn::meta::parser(|meta| {
        let span = syn::spanned::Spanned::span(&meta.path);
        options.first.get_or_insert(span);
        if meta.path.is_ident("default") {
            if meta.input.peek(Token![=]) || meta.input.peek(syn::token::Paren) {
                return Err(meta.error("write `#[aggregate(default)]`, without a value"));
            }
            if options.default.replace(span).is_some() {
                return Err(meta.error("`default` is given twice"));
            }
            Ok(())
        } else {
            let path = &meta.path;
            let name = quote::quote!(#path).to_string().replace(' ', "");
            Err(meta.error(format_args!(
                "unknown `#[aggregate]` option `{name}`: {VALID_OPTIONS}"
            )))
        }
    });
    if let Err(error) = syn::parse::Parser::parse2(parser, args) {
        cx.syn_error(error);
    }
    options
}

/// True for `#[event]`, `#[factum::event]` and `#[::factum::event]`.
pub(crate) fn is_event(attr: &Attribute) -> bool {
    let path = attr.path();
    let segments: Vec<_> = path.segments.iter().map(|s| s.ident.to_string()).collect();
    match segments.as_slice() {
        [event] => event == "event" && path.leading_colon.is_none(),
        [krate, event] => krate == "factum" && event == "event",
        _ => false,
    }
}

const EVENT_FORM: &str = "write the name as a string: `#[event(\"incremented\")]`";

/// The name given in `#[event("name")]`, or `None` after reporting why
/// there is none.
pub(crate) fn event_name(cx: &mut Ctxt, attr: &Attribute) -> Option<LitStr> {
    match &attr.meta {
        Meta::Path(path) => {
            cx.error_spanned_by(path, format_args!("the event has no name: {EVENT_FORM}"));
            None
        }
        Meta::NameValue(meta) => {
            cx.error_spanned_by(meta, format_args!("{EVENT_FORM}, not `#[event = ...]`"));
            None
        }
        Meta::List(list) => {
            if list.tokens.is_empty() {
                cx.error_spanned_by(list, format_args!("the event has no name: {EVENT_FORM}"));
                return None;
            }
            match list.parse_args_with(Punctuated::<syn::Expr, Token![,]>::parse_terminated) {
                Ok(args) if args.len() == 1 => match &args[0] {
                    syn::Expr::Lit(syn::ExprLit {
                        lit: syn::Lit::Str(name),
                        ..
                    }) => Some(name.clone()),
                    other => {
                        cx.error_spanned_by(
                            other,
                            format_args!("the event name must be a string literal: {EVENT_FORM}"),
                        );
                        None
                    }
                },
                Ok(args) => {
                    cx.error_spanned_by(
                        &list.tokens,
                        format_args!(
                            "an event has exactly one name, {} were given: {EVENT_FORM}",
                            args.len()
                        ),
                    );
                    None
                }
                Err(_) => {
                    cx.error_spanned_by(&list.tokens, EVENT_FORM);
                    None
                }
            }
        }
    }
}

/// What the struct's `#[derive]`s mean for the generated code.
#[derive(Default)]
pub(crate) struct Derives {
    /// `Default` is derived: generate `DefaultAggregate`.
    pub(crate) default: bool,
    /// `Clone` is derived.
    pub(crate) clone: bool,
    /// `Serialize` or `Deserialize` is derived: serde must skip the hidden field.
    pub(crate) serde: bool,
    /// `Copy` is derived (an error: the aggregate owns its pending events).
    pub(crate) copy: Option<Path>,
}

/// Reads the derives of the aggregate struct.
pub(crate) fn derives(attrs: &[Attribute]) -> Derives {
    let mut derives = Derives::default();
    for attr in attrs.iter().filter(|attr| attr.path().is_ident("derive")) {
        // A derive list that does not parse is rustc's to report.
        let Ok(paths) = attr.parse_args_with(Punctuated::<Path, Token![,]>::parse_terminated) else {
            continue;
        };
        for path in paths {
            let Some(last) = path.segments.last() else {
                continue;
            };
            match last.ident.to_string().as_str() {
                "Default" => derives.default = true,
                "Clone" => derives.clone = true,
                "Serialize" | "Deserialize" => derives.serde = true,
                "Copy" => derives.copy = Some(path.clone()),
                _ => {}
            }
        }
    }
    derives
}

/// Removes `Copy` from the derives, once it has been reported.
pub(crate) fn remove_copy(attrs: &mut [Attribute]) {
    for attr in attrs.iter_mut().filter(|attr| attr.path().is_ident("derive")) {
        let Ok(paths) = attr.parse_args_with(Punctuated::<Path, Token![,]>::parse_terminated) else {
            continue;
        };
        let kept: Punctuated<Path, Token![,]> = paths
            .into_iter()
            .filter(|path| path.segments.last().is_none_or(|last| last.ident != "Copy"))
            .collect();
        if let Meta::List(list) = &mut attr.meta {
            list.tokens = quote::quote!(#kept);
        }
    }
}

/// The doc comments among `attrs`.
pub(crate) fn docs(attrs: &[Attribute]) -> Vec<Attribute> {
    attrs
        .iter()
        .filter(|attr| attr.path().is_ident("doc"))
        .cloned()
        .collect()
}
