//! `#[aggregate]` on the impl block: the block with its event wrappers,
//! then the items generated beside it.

use proc_macro2::TokenStream;
use quote::{format_ident, quote};
use syn::{Ident, Path};

use super::{aggregate_trait, checks, domain_event, event_enum, methods, upcasters};
use crate::ast::Impl;
use crate::valid::CheckedImpl;

/// What the impl block's generated items need to know of it.
pub(super) struct Names {
    /// The type the block implements, e.g. `Counter` or `model::Counter`.
    pub(super) self_path: Path,
    /// `Counter`, for messages and docs.
    pub(super) type_name: String,
    /// `<Name>Event`.
    pub(super) event_enum: Ident,
    /// `<Name>Created`, beside the struct: `model::CounterCreated`.
    pub(super) created: Path,
}

/// The impl block, its checks, `<Name>Event`, `DomainEvent` and `Aggregate`.
pub(super) fn expand(input: Impl, checked: CheckedImpl) -> TokenStream {
    let CheckedImpl {
        self_path,
        self_ident,
        events,
        evolution,
    } = checked;
    let names = Names {
        // Spanned at the impl's type, so that every mention of a missing
        // `<Name>Created` is the same diagnostic, which rustc shows once.
        // Named directly: through `<Name as AggregateFields>::Created`, a
        // struct without `#[aggregate]` fails at every item that holds the
        // projection (the enum, each derive, `From`: 13 errors, not 2); and
        // no stand-in for a missing name can rank below the real one both
        // when it is glob-imported from another module and when it sits in
        // the same function body (a doc test).
        created: sibling(
            &self_path,
            format_ident!("{}Created", self_ident, span = self_ident.span()),
        ),
        event_enum: format_ident!("{}Event", self_ident),
        type_name: self_ident.to_string(),
        self_path,
    };
    let checks = checks::impl_checks(&events);
    let item = methods::expand(input.item, &events, &names.event_enum);
    let event_enum = event_enum::expand(&names, &events);
    let created_ty: syn::Type = {
        let created = &names.created;
        syn::parse_quote!(#created)
    };
    // `created` and every argument must be storable for the enum to be an
    // event; `Aggregate` needs `DomainEvent`, so it carries them too, except
    // a projection such as `<Self as Aggregate>::Id`: on the impl that
    // defines it, that bound would be a cycle.
    let types = || {
        std::iter::once(&created_ty).chain(
            events
                .iter()
                .flat_map(|event| event.args.iter().map(|arg| &arg.field_ty)),
        )
    };
    let stored = checks::stored_bounds(types());
    let aggregate_stored = checks::stored_bounds(types().filter(|ty| !checks::has_projection(ty)));
    let domain_event = domain_event::expand(&names, &events, &stored);
    let aggregate = aggregate_trait::expand(&names, &events, &evolution, &aggregate_stored);
    let snapshot_checks = checks::snapshot_upcasters(&names, &evolution);
    let shims = upcasters::shims(&names.self_path, &evolution);
    quote! {
        // First, so that an argument type that cannot be stored is reported
        // before anything else.
        #checks
        #item
        #event_enum
        const _: () = {
            #domain_event
            #aggregate
            #shims
        };
        #snapshot_checks
    }
}

/// `path` with its last segment replaced by `ident`: the type generated
/// beside the aggregate struct, e.g. `crate::Counter` → `crate::CounterCreated`.
fn sibling(path: &Path, ident: Ident) -> Path {
    let mut path = path.clone();
    if let Some(last) = path.segments.last_mut() {
        last.ident = ident;
    }
    path
}
