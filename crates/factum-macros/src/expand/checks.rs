//! The bounds checked once, on the user's own tokens, so that a type that
//! cannot be stored is one error at the field or argument that holds it.
//!
//! Everything else generated for such a type carries the same bound as a
//! where-clause (`stored_bounds`) and quietly does not apply, instead of
//! reporting the mistake again in serde's or rustc's words.

use proc_macro2::TokenStream;
use quote::{quote, quote_spanned};
use syn::spanned::Spanned;

use syn::Ident;

use super::aggregate_impl::Names;
use crate::ast::Field;
use crate::attr::Derives;
use crate::valid::{Event, Evolution};

/// Checks of the struct: every field can be stored. (The id's bounds are
/// checked by `AggregateFields::Id`, at the id's type.)
pub(super) fn struct_checks(fields: &[Field]) -> TokenStream {
    let stored = fields.iter().map(|field| stored_in_events(&field.ty, &field.ty));
    quote! {
        const _: () = {
            #[allow(dead_code)]
            struct StoredInEvents<T: ::factum::__private::EventField>(::core::marker::PhantomData<T>);
            #[allow(dead_code)]
            struct Checks(#(#stored)*);
        };
    }
}

/// Catches `#[derive(...)]` written above `#[aggregate]`: a `Clone` or
/// `Default` the struct has but `#[aggregate]` did not see derived (see
/// `factum::__private::derive_order`).
pub(super) fn derive_order(name: &Ident, derives: &Derives, default_option: bool) -> TokenStream {
    let probe = quote_spanned!(name.span()=> (&Probe::<#name>(::core::marker::PhantomData)));
    let clone = (!derives.clone).then(|| quote_spanned!(name.span()=> #probe.check_clone();));
    let default =
        (!derives.default && !default_option).then(|| quote_spanned!(name.span()=> #probe.check_default();));
    quote! {
        const _: () = {
            #[allow(dead_code)]
            fn derive_order() {
                #[allow(unused_imports)]
                use ::factum::__private::derive_order::{
                    DerivedClone as _, DerivedDefault as _, NotDerivedClone as _, NotDerivedDefault as _, Probe,
                };
                #clone
                #default
            }
        };
    }
}

/// The one item that asks for the struct's half, at the impl's type: a
/// struct without `#[aggregate]` is this unmet bound, with the message of
/// `AggregateFields`. Every other item carries the bound as
/// `Names::fields_bound`, which holds there.
pub(super) fn fields_check(names: &Names) -> TokenStream {
    let self_path = &names.self_path;
    let with_fields = quote_spanned!(names.created.span()=> WithFields<#self_path>);
    quote! {
        const _: () = {
            #[allow(dead_code)]
            struct WithFields<A: ::factum::__private::AggregateFields>(::core::marker::PhantomData<A>);
            #[allow(dead_code)]
            struct Checks(#with_fields);
        };
    }
}

/// Checks of the impl block: every argument of every event can be stored.
pub(super) fn impl_checks(events: &[Event]) -> TokenStream {
    let stored = events
        .iter()
        .flat_map(|event| &event.args)
        .map(|arg| stored_in_events(&arg.field_ty, &arg.ty));
    quote! {
        const _: () = {
            #[allow(dead_code)]
            struct StoredInEvents<T: ::factum::__private::EventField>(::core::marker::PhantomData<T>);
            #[allow(dead_code)]
            struct Checks(#(#stored)*);
        };
    }
}

/// `StoredInEvents<ty>`, reported at `written` (the type as the user wrote
/// it; `ty` may have `Self` replaced).
fn stored_in_events(ty: &syn::Type, written: &syn::Type) -> TokenStream {
    quote_spanned!(written.span()=> StoredInEvents<#ty>,)
}

/// Where-predicates `for<'__factum> T: EventField`, one per distinct type.
///
/// The generated serde impls, `DomainEvent` and `Aggregate` carry them: when
/// a type cannot be stored, those impls quietly do not apply, and what the
/// user sees is the one check above. The `for<'__factum>` binder keeps rustc
/// from checking the bound where it is written (a bound without generics is
/// otherwise checked eagerly).
pub(super) fn stored_bounds<'a>(types: impl IntoIterator<Item = &'a syn::Type>) -> Vec<TokenStream> {
    let mut seen = std::collections::HashSet::new();
    types
        .into_iter()
        .filter(|ty| seen.insert(quote!(#ty).to_string()))
        .map(|ty| quote!(for<'__factum> #ty: ::factum::__private::EventField))
        .collect()
}

/// The same predicates as text for `#[serde(bound = "...")]`.
pub(super) fn serde_bound(bounds: &[TokenStream]) -> String {
    bounds
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

/// True when `ty` holds a qualified path (`<T as Trait>::Name`).
pub(super) fn has_projection(ty: &syn::Type) -> bool {
    struct Finder(bool);
    impl<'ast> syn::visit::Visit<'ast> for Finder {
        fn visit_qself(&mut self, _: &'ast syn::QSelf) {
            self.0 = true;
        }
    }
    let mut finder = Finder(false);
    syn::visit::Visit::visit_type(&mut finder, ty);
    finder.0
}

/// Checks, while compiling, that each snapshot upcaster lifts from below
/// the struct's declared `snapshot_version` (the impl block cannot see it).
pub(super) fn snapshot_upcasters(names: &Names, evolution: &Evolution) -> TokenStream {
    let self_path = &names.self_path;
    let checks = evolution.snapshot_upcasters.iter().map(|upcaster| {
        let from = upcaster.from;
        let message = format!(
            "`#[upcast(snapshot, from = {from})]` on `fn {}` lifts snapshots from shape version {from} to {}: declare `#[aggregate(snapshot_version = {})]` (or higher) on the struct, or remove the upcaster",
            upcaster.function.ident,
            from + 1,
            from + 1
        );
        quote_spanned! {upcaster.function.ident.span()=>
            const _: () = {
                if !<#self_path as ::factum::__private::AggregateFields>::SNAPSHOT_VERSION_DECLARED
                    || #from >= <#self_path as ::factum::__private::AggregateFields>::SNAPSHOT_VERSION
                {
                    ::core::panic!(#message);
                }
            };
        }
    });
    quote!(#(#checks)*)
}
