//! The options of `#[aggregate(...)]`: `default`, `name` and
//! `snapshot_version` on the struct, `retired` on the impl block. Which
//! ones belong where is checked in `valid`, so a misplaced one is reported
//! with the others.

use proc_macro2::{Span, TokenStream};
use syn::{Expr, ExprLit, Lit, LitStr, Token};

use super::value;
use crate::ctxt::Ctxt;

/// An option of `#[aggregate(...)]`.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum OptionKind {
    Default,
    Name,
    SnapshotVersion,
    Retired,
}

impl OptionKind {
    /// How the option is written, for messages.
    pub(crate) fn example(self) -> &'static str {
        match self {
            Self::Default => "#[aggregate(default)]",
            Self::Name => "#[aggregate(name = \"counter\")]",
            Self::SnapshotVersion => "#[aggregate(snapshot_version = 2)]",
            Self::Retired => "#[aggregate(retired = [\"reset\"])]",
        }
    }

    /// True for the options of the struct, false for the impl block's.
    pub(crate) fn on_struct(self) -> bool {
        !matches!(self, Self::Retired)
    }
}

/// The options of `#[aggregate(...)]`.
#[derive(Default)]
pub(crate) struct Options {
    /// `default`: the struct implements `Default` by hand.
    pub(crate) default: Option<Span>,
    /// `name = "..."`: the stored aggregate type.
    pub(crate) name: Option<LitStr>,
    /// `snapshot_version = N`: the version of the struct's shape.
    pub(crate) snapshot_version: Option<u32>,
    /// `retired = [...]`: event types removed from the code, still readable.
    pub(crate) retired: Vec<LitStr>,
    /// Every option given, where it was written.
    pub(crate) given: Vec<(OptionKind, Span)>,
}

const VALID_OPTIONS: &str = "on the struct, `name = \"counter\"`, `snapshot_version = 2` or `default` (for a hand-written `impl Default`); on the impl block, `retired = [\"reset\"]`";

/// Parses the arguments of `#[aggregate(...)]`.
pub(crate) fn options(cx: &mut Ctxt, args: TokenStream) -> Options {
    let mut options = Options::default();
    let parser = syn::meta::parser(|meta| {
        let span = syn::spanned::Spanned::span(&meta.path);
        let key = meta.path.get_ident().map(ToString::to_string).unwrap_or_default();
        let kind = match key.as_str() {
            "default" => OptionKind::Default,
            "name" => OptionKind::Name,
            "snapshot_version" => OptionKind::SnapshotVersion,
            "retired" => OptionKind::Retired,
            _ => {
                let path = &meta.path;
                let name = quote::quote!(#path).to_string().replace(' ', "");
                return Err(meta.error(format_args!(
                    "unknown `#[aggregate]` option `{name}`: {VALID_OPTIONS}"
                )));
            }
        };
        if options.given.iter().any(|(given, _)| *given == kind) {
            return Err(meta.error(format_args!("`{key}` is given twice: keep one")));
        }
        options.given.push((kind, span));
        if kind == OptionKind::Default {
            if meta.input.peek(Token![=]) || meta.input.peek(syn::token::Paren) {
                return Err(meta.error("write `#[aggregate(default)]`, without a value"));
            }
            options.default = Some(span);
            return Ok(());
        }
        if !meta.input.peek(Token![=]) {
            return Err(meta.error(format_args!("write `{}`", kind.example())));
        }
        let value: Expr = meta.value()?.parse()?;
        match kind {
            OptionKind::Name => options.name = name(cx, &value),
            OptionKind::SnapshotVersion => {
                options.snapshot_version = value::version(
                    cx,
                    "snapshot_version",
                    &value,
                    "shape versions start at 1: write `snapshot_version = 1` for the first shape you declare, and raise it when the fields change",
                )
                .filter(|version| {
                    // Versions from 2^31 up are the ones derived from the fields.
                    let fits = i32::try_from(*version).is_ok();
                    if !fits {
                        cx.error_spanned_by(
                            &value,
                            format_args!("`snapshot_version` is at most {}: count shapes from 1", i32::MAX),
                        );
                    }
                    fits
                });
            }
            OptionKind::Retired => {
                options.retired = value::names(cx, "retired", &value, "[\"reset\"]").unwrap_or_default();
            }
            OptionKind::Default => {}
        }
        Ok(())
    });
    if let Err(error) = syn::parse::Parser::parse2(parser, args) {
        cx.syn_error(error);
    }
    options
}

/// The stored name given as `name = "..."`.
fn name(cx: &mut Ctxt, value: &Expr) -> Option<LitStr> {
    match value {
        Expr::Lit(ExprLit {
            lit: Lit::Str(name), ..
        }) => Some(name.clone()),
        Expr::Path(path) if path.path.get_ident().is_some() => {
            let written = quote::quote!(#path).to_string();
            cx.error_spanned_by(
                value,
                format_args!("write the name as a string: `#[aggregate(name = \"{written}\")]`"),
            );
            None
        }
        other => {
            cx.error_spanned_by(
                other,
                "write the name as a string: `#[aggregate(name = \"counter\")]`",
            );
            None
        }
    }
}
