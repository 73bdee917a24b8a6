//! The `#[upcast]` functions as upcaster steps: a shim per function, of the
//! one signature every step has, that calls it. A function of another
//! shape fails a bound of the shim with factum's message, at its argument
//! or return type.

use proc_macro2::TokenStream;
use quote::{format_ident, quote, quote_spanned};
use syn::Ident;

use super::aggregate_impl::Names;

use crate::valid::Evolution;
use crate::valid::evolution::Function;

/// The shim of the event upcaster at `index` of `Evolution::upcasters`.
pub(super) fn event_shim(index: usize) -> Ident {
    format_ident!("__factum_upcaster_{}", index)
}

/// The shim of the snapshot upcaster at `index`.
pub(super) fn snapshot_shim(index: usize) -> Ident {
    format_ident!("__factum_snapshot_upcaster_{}", index)
}

/// Every shim, as free functions of the block that holds the `Aggregate` impl.
pub(super) fn shims(names: &Names, evolution: &Evolution) -> TokenStream {
    let events = evolution
        .upcasters
        .iter()
        .enumerate()
        .map(|(index, upcaster)| shim(names, &event_shim(index), &upcaster.function));
    let snapshots = evolution
        .snapshot_upcasters
        .iter()
        .enumerate()
        .map(|(index, upcaster)| shim(names, &snapshot_shim(index), &upcaster.function));
    quote!(#(#events)* #(#snapshots)*)
}

/// A shim calls a function of the impl block, so it carries the block's
/// `fields_bound`.
fn shim(names: &Names, shim: &Ident, function: &Function) -> TokenStream {
    let Names {
        self_path,
        fields_bound,
        ..
    } = names;
    let ident = &function.ident;
    let input = quote_spanned!(function.input=> ::factum::__private::upcaster::input(payload));
    // Bound first, so that a wrong return type is reported at the return
    // type alone, not across the call.
    let output = quote_spanned!(function.output=> ::factum::__private::upcaster::output(lifted));
    quote! {
        fn #shim(
            payload: ::factum::__private::serde_json::Value,
        ) -> ::core::result::Result<::factum::__private::serde_json::Value, ::factum::UpcastError>
        where
            #fields_bound,
        {
            let lifted = #self_path::#ident(#input);
            #output
        }
    }
}
