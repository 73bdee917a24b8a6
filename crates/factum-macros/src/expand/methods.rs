//! The impl block as written, each `#[event]` method split in two: its body,
//! moved into a hidden method that replay calls, and a public wrapper that
//! runs the body and records the event.

use std::collections::HashMap;

use proc_macro2::Span;
use quote::{format_ident, quote, quote_spanned};
use syn::spanned::Spanned;
use syn::{Attribute, FnArg, Ident, ImplItem, ImplItemFn, ItemImpl, Pat, Visibility};

use super::aggregate_impl::Names;
use crate::valid::{Event, Returns};

/// The impl block with every event method replaced by its body and wrapper,
/// under `Names::fields_bound` (the wrappers name the event enum, which
/// carries it).
pub(super) fn expand(mut item: ItemImpl, events: &[Event], names: &Names) -> ItemImpl {
    let fields_bound = &names.fields_bound;
    item.generics
        .make_where_clause()
        .predicates
        .push(syn::parse_quote!(#fields_bound));
    let event_enum = &names.event_enum;
    let by_index: HashMap<usize, &Event> = events.iter().map(|event| (event.index, event)).collect();
    let mut items = Vec::with_capacity(item.items.len() + events.len());
    for (index, impl_item) in std::mem::take(&mut item.items).into_iter().enumerate() {
        match (impl_item, by_index.get(&index)) {
            (ImplItem::Fn(method), Some(event)) => {
                items.push(body_method(&method));
                items.push(wrapper_method(method, event, event_enum));
            }
            (impl_item, _) => items.push(impl_item),
        }
    }
    item.items = items;
    item
}

/// The name of the hidden method holding an event method's body.
pub(super) fn body_ident(method: &Ident) -> Ident {
    format_ident!("__factum_{}", method)
}

/// Lint and `cfg` attributes, which apply to the hidden body too.
fn body_attrs(attrs: &[Attribute]) -> Vec<Attribute> {
    attrs
        .iter()
        .filter(|attr| {
            ["cfg", "allow", "warn", "deny", "forbid", "expect"]
                .iter()
                .any(|name| attr.path().is_ident(name))
        })
        .cloned()
        .collect()
}

/// The method body, moved into a hidden method that replay calls directly.
fn body_method(method: &ImplItemFn) -> ImplItem {
    let mut body = method.clone();
    body.sig.ident = body_ident(&method.sig.ident);
    body.vis = Visibility::Inherited;
    body.attrs = body_attrs(&method.attrs);
    body.attrs.push(syn::parse_quote!(#[doc(hidden)]));
    body.attrs.push(syn::parse_quote!(#[inline]));
    ImplItem::Fn(body)
}

/// The public method: runs the body, then records the event when it succeeded.
fn wrapper_method(mut method: ImplItemFn, event: &Event, event_enum: &Ident) -> ImplItem {
    let body = body_ident(&method.sig.ident);
    method.attrs.retain(|attr| !attr.path().is_ident("expect"));
    for input in &mut method.sig.inputs {
        if let FnArg::Typed(typed) = input
            && let Pat::Ident(pat) = &mut *typed.pat
        {
            pat.mutability = None;
        }
    }
    let variant = &event.variant;
    let idents: Vec<&Ident> = event.args.iter().map(|arg| &arg.ident).collect();
    let clones = event.args.iter().map(|arg| {
        let ident = &arg.ident;
        let clone = quote_spanned!(arg.ty.span()=> ::core::clone::Clone::clone(&#ident));
        quote!(#ident: #clone)
    });
    let new_event = if idents.is_empty() {
        quote!(#event_enum::#variant)
    } else {
        quote!(#event_enum::#variant { #(#clones),* })
    };
    let event_var = Ident::new("event", Span::mixed_site());
    let outcome = Ident::new("outcome", Span::mixed_site());
    let record = quote!(::factum::__private::record(self, #event_var););
    let stmts: syn::Block = match &event.returns {
        Returns::Unit => syn::parse_quote!({
            let #event_var = #new_event;
            Self::#body(self, #(#idents),*);
            #record
        }),
        Returns::Result(_) => syn::parse_quote!({
            let #event_var = #new_event;
            let #outcome = Self::#body(self, #(#idents),*);
            if ::core::result::Result::is_ok(&#outcome) {
                #record
            }
            #outcome
        }),
    };
    // The original braces keep the wrapper's span on the user's method, so
    // lints about it (missing docs, dead code) point there.
    method.block = syn::Block {
        brace_token: method.block.brace_token,
        stmts: stmts.stmts,
    };
    ImplItem::Fn(method)
}
