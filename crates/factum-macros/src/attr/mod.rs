//! Our attributes: `#[aggregate(...)]` options (`options`), `#[event(...)]`
//! and `#[upcast(...)]` (`event`), the values they take (`value`), and the
//! derives on an aggregate struct that change what is generated.

mod event;
mod options;
mod value;

use syn::punctuated::Punctuated;
use syn::{Attribute, Meta, Path, Token};

pub(crate) use event::{EventAttr, Target, UpcastAttr, Version, event_attr, upcast_attr};
pub(crate) use options::{Options, options};

/// True for `#[event]`, `#[factum::event]` and `#[::factum::event]`.
pub(crate) fn is_event(attr: &Attribute) -> bool {
    is_ours(attr, "event")
}

/// True for `#[upcast]`, `#[factum::upcast]` and `#[::factum::upcast]`.
pub(crate) fn is_upcast(attr: &Attribute) -> bool {
    is_ours(attr, "upcast")
}

fn is_ours(attr: &Attribute, name: &str) -> bool {
    let path = attr.path();
    let segments: Vec<_> = path.segments.iter().map(|s| s.ident.to_string()).collect();
    match segments.as_slice() {
        [single] => single == name && path.leading_colon.is_none(),
        [krate, single] => krate == "factum" && single == name,
        _ => false,
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

/// The `#[serde(...)]` attributes among `attrs`: part of a struct's shape.
pub(crate) fn serde_attrs(attrs: &[Attribute]) -> Vec<Attribute> {
    attrs
        .iter()
        .filter(|attr| attr.path().is_ident("serde"))
        .cloned()
        .collect()
}

/// The doc comments among `attrs`.
pub(crate) fn docs(attrs: &[Attribute]) -> Vec<Attribute> {
    attrs
        .iter()
        .filter(|attr| attr.path().is_ident("doc"))
        .cloned()
        .collect()
}
