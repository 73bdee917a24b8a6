//! `#[aggregate]` on the impl block: the block with its event wrappers,
//! then the items generated beside it.

use proc_macro2::TokenStream;
use quote::{format_ident, quote, quote_spanned};
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
    /// `<Name>Created`, reached through the struct's half:
    /// `<Counter as AggregateFields>::Created`.
    pub(super) created: syn::Type,
    /// `for<'__factum> Counter: AggregateFields`, the where-clause of every
    /// item that holds `created` or the enum.
    pub(super) fields_bound: TokenStream,
}

impl Names {
    fn new(self_path: Path, self_ident: &Ident) -> Self {
        // Spanned at the impl's type, where a missing struct half is
        // reported. The projection (instead of the name `CounterCreated`)
        // keeps name resolution from failing first, in rustc's words; the
        // `for<'__factum>` binder keeps rustc from checking the bound where
        // it is written, so that every item carrying it quietly holds and
        // `fields_check` reports it once.
        let span = self_ident.span();
        let fields = quote_spanned!(span=> ::factum::__private::AggregateFields);
        Names {
            created: syn::parse_quote_spanned!(span=> <#self_path as #fields>::Created),
            fields_bound: quote_spanned!(span=> for<'__factum> #self_path: #fields),
            event_enum: format_ident!("{}Event", self_ident),
            type_name: self_ident.to_string(),
            self_path,
        }
    }
}

/// The impl block, its checks, `<Name>Event`, `DomainEvent` and `Aggregate`.
pub(super) fn expand(input: Impl, checked: CheckedImpl) -> TokenStream {
    let CheckedImpl {
        self_path,
        self_ident,
        events,
        evolution,
    } = checked;
    let names = Names::new(self_path, &self_ident);
    let checks = checks::impl_checks(&events);
    let fields_check = checks::fields_check(&names);
    let item = methods::expand(input.item, &events, &names);
    let event_enum = event_enum::expand(&names, &events);
    let created_ty = &names.created;
    // `created` and every argument must be storable for the enum to be an
    // event; `Aggregate` needs `DomainEvent`, so it carries them too, except
    // an argument's projection such as `<Self as Aggregate>::Id`: on the impl
    // that defines it, that bound would be a cycle.
    let args = || {
        events
            .iter()
            .flat_map(|event| event.args.iter().map(|arg| &arg.field_ty))
    };
    let stored = checks::stored_bounds(std::iter::once(created_ty).chain(args()));
    let aggregate_stored = checks::stored_bounds(
        std::iter::once(created_ty).chain(args().filter(|ty| !checks::has_projection(ty))),
    );
    let domain_event = domain_event::expand(&names, &events, &stored);
    let aggregate = aggregate_trait::expand(&names, &events, &evolution, &aggregate_stored);
    let snapshot_checks = checks::snapshot_upcasters(&names, &evolution);
    let shims = upcasters::shims(&names, &evolution);
    quote! {
        // First, so that an argument type that cannot be stored is reported
        // before anything else.
        #checks
        #fields_check
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
