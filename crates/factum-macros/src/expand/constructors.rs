//! The ways to start an aggregate: `<Name>::create` and, for a struct with
//! `Default`, the `DefaultAggregate` impl that `load_or_create` needs.

use proc_macro2::{Span, TokenStream};
use quote::{quote, quote_spanned};

use super::aggregate_struct::Shape;

/// `<Name>::create(field, ...)`, recording `created`.
pub(super) fn create(shape: &Shape<'_>) -> TokenStream {
    let name = shape.name();
    let type_name = shape.type_name();
    let vis = &shape.item.vis;
    let created = &shape.created;
    let idents: Vec<_> = shape.fields.iter().map(|field| &field.ident).collect();
    let types = shape.fields.iter().map(|field| &field.ty);
    // Spanned at the struct name: without an `#[aggregate]` impl block, the
    // `AggregateEvents` bound of `start` fails there, once, with its message.
    let start = quote_spanned!(name.span()=> ::factum::__private::start::<Self>(#created { #(#idents),* }));
    let doc = format!(
        " Starts a new `{type_name}` with these field values, recording its `created` event.\n\n Save it with `Application::save`; its first event is `created`, with every field."
    );
    quote! {
        impl #name {
            #[doc = #doc]
            #[allow(clippy::too_many_arguments)]
            #vis fn create(#( #idents: #types ),*) -> Self {
                #start
            }
        }
    }
}

/// `impl DefaultAggregate`: `create` with the id given and every other
/// field from `Default`. `None` without an `id` field (reported already).
pub(super) fn default_aggregate(shape: &Shape<'_>, option: Option<Span>) -> Option<TokenStream> {
    let id = shape.id?;
    let name = shape.name();
    let id_ident = &id.ident;
    let id_ty = shape.id_ty();
    let default_span = option.unwrap_or_else(|| name.span());
    let default = quote_spanned!(default_span=> <Self as ::core::default::Default>::default());
    let args = shape.fields.iter().map(|field| {
        let ident = &field.ident;
        if field.ident == *id_ident {
            quote!(#ident)
        } else {
            quote!(defaults.#ident)
        }
    });
    // The binder defers the `Aggregate` bound to the uses of the impl: when
    // the impl block is missing or has a mistake, that is reported once
    // elsewhere, not again here.
    Some(quote! {
        impl ::factum::DefaultAggregate for #name
        where
            for<'__factum> Self: ::factum::Aggregate<Id = #id_ty>,
        {
            #[allow(unused_variables)]
            fn create_default(#id_ident: #id_ty) -> Self {
                let defaults: Self = #default;
                Self::create(#(#args),*)
            }
        }
    })
}
