//! Writes the code, one file per generated item.
//!
//! For the struct: the struct with its hidden field (`aggregate_struct`),
//! `<Name>Created` (`created`), the `AggregateFields` impl (`fields`),
//! `create` and `DefaultAggregate` (`constructors`). For the impl block: the
//! block with its event wrappers (`methods`), `<Name>Event` (`event_enum`),
//! the `DomainEvent` impl (`domain_event`) and the `Aggregate` impl
//! (`aggregate_trait`). `checks` holds the bounds checked once, on the
//! user's tokens.
//!
//! Generated paths start with `::factum::`; helpers live in `const _` blocks.
//! The two halves refer to each other only through traits
//! (`AggregateFields`, `AggregateEvents`), so a missing half is one unmet
//! bound with factum's message, not a cascade of rustc's.

mod aggregate_impl;
mod aggregate_struct;
mod aggregate_trait;
mod checks;
mod constructors;
mod created;
mod domain_event;
mod event_enum;
mod fields;
mod methods;
mod upcasters;

use proc_macro2::{Span, TokenStream};
use quote::quote;
use syn::Item;

use crate::ast::Input;
use crate::attr;
use crate::ctxt::Ctxt;
use crate::valid;

/// `#[aggregate]` on any item; `derive_above` reads the source for a
/// derive written above it (asked only for a struct).
pub(crate) fn aggregate(
    args: TokenStream,
    input: TokenStream,
    derive_above: impl FnOnce() -> Option<String>,
) -> TokenStream {
    let mut cx = Ctxt::default();
    let options = attr::options(&mut cx, args);
    let item: Item = match syn::parse2(input.clone()) {
        Ok(item) => item,
        Err(error) => {
            cx.syn_error(error);
            let errors = cx.into_compile_errors();
            return quote!(#errors #input);
        }
    };
    let expanded = match Input::from_syn(&mut cx, item, options, derive_above) {
        Input::Struct(input) => {
            if valid::check_struct(&mut cx, &input) {
                aggregate_struct::expand(*input)
            } else {
                let item = &input.item;
                quote!(#item)
            }
        }
        Input::Impl(input) => match valid::check_impl(&mut cx, &input) {
            Some(checked) => aggregate_impl::expand(*input, checked),
            None => {
                let item = &input.item;
                quote!(#item)
            }
        },
        Input::Other(item) => {
            report_other(&mut cx, &item);
            quote!(#item)
        }
    };
    let errors = cx.into_compile_errors();
    quote!(#expanded #errors)
}

/// `#[aggregate]` on something other than a struct or an impl block.
fn report_other(cx: &mut Ctxt, item: &Item) {
    let message = "`#[aggregate]` goes on a struct with named fields and on its `impl` block (e.g. `#[aggregate] pub struct Counter { pub id: CounterId, ... }` and `#[aggregate] impl Counter { ... }`)";
    match item {
        Item::Enum(item) => cx.error_spanned_by(
            item.enum_token,
            "`#[aggregate]` goes on a struct with named fields, not on an enum: the events enum is generated from the `#[event]` methods of its `#[aggregate] impl` block",
        ),
        Item::Union(item) => cx.error_spanned_by(item.union_token, message),
        Item::Fn(item) => cx.error_spanned_by(item.sig.fn_token, message),
        Item::Trait(item) => cx.error_spanned_by(item.trait_token, message),
        other => cx.error_spanned_by(other, message),
    }
}

/// `#[event]` outside an `#[aggregate]` impl block: its only expansion is an
/// error (inside one, `#[aggregate]` removes the attribute first).
pub(crate) fn stray_event(item: TokenStream) -> TokenStream {
    let error = syn::Error::new(
        Span::call_site(),
        "`#[event]` only works on a method of an `#[aggregate]` impl block: put `#[aggregate]` on the `impl` block that holds this method",
    )
    .to_compile_error();
    quote!(#error #item)
}

/// `#[upcast]` outside an `#[aggregate]` impl block.
pub(crate) fn stray_upcast(item: TokenStream) -> TokenStream {
    let error = syn::Error::new(
        Span::call_site(),
        "`#[upcast]` only works on a function of an `#[aggregate]` impl block: move this function into the `#[aggregate] impl` block of its aggregate, or register it at run time with `Upcasters::register`",
    )
    .to_compile_error();
    quote!(#error #item)
}
