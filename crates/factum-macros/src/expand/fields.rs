//! The `AggregateFields` impl: all that the code generated for the impl
//! block may know of the struct.

use proc_macro2::TokenStream;
use quote::{quote, quote_spanned};
use syn::spanned::Spanned;

use super::aggregate_struct::Shape;

/// `impl AggregateFields for <Name>`.
pub(super) fn expand(shape: &Shape<'_>) -> TokenStream {
    let name = shape.name();
    let stored_name = &shape.stored_name;
    let (snapshot_version, declared) = shape.snapshot_version;
    let created = &shape.created;
    let id_ty = shape.id_ty();
    let idents: Vec<_> = shape.fields.iter().map(|field| &field.ident).collect();
    let id = match shape.id {
        Some(id) => {
            let ident = &id.ident;
            quote!(::core::clone::Clone::clone(&self.#ident))
        }
        // Reported already; the stand-in keeps the rest compiling.
        None => quote!(::std::string::String::new()),
    };
    // Spanned at the id's type: one that cannot be an id is reported there.
    let id_ty = quote_spanned!(id_ty.span()=> type Id = #id_ty;);
    let state = if shape.has_state {
        quote! {
            fn from_created(created: Self::Created) -> Self {
                Self {
                    #( #idents: created.#idents, )*
                    __factum: ::core::default::Default::default(),
                }
            }

            fn state(&self) -> &::factum::__private::AggregateState<Self> {
                &self.__factum
            }

            fn state_mut(&mut self) -> &mut ::factum::__private::AggregateState<Self> {
                &mut self.__factum
            }
        }
    } else {
        // The struct has no hidden field because a compile error was
        // reported on it: these bodies only keep the rest of the
        // expansion quiet, and the crate never builds to run them.
        let reported = "`#[aggregate]` reported a compile error on this struct";
        quote! {
            fn from_created(_: Self::Created) -> Self {
                ::core::unreachable!(#reported)
            }

            fn state(&self) -> &::factum::__private::AggregateState<Self> {
                ::core::unreachable!(#reported)
            }

            fn state_mut(&mut self) -> &mut ::factum::__private::AggregateState<Self> {
                ::core::unreachable!(#reported)
            }
        }
    };
    quote! {
        impl ::factum::__private::AggregateFields for #name {
            #id_ty
            type Created = #created;
            const TYPE: &'static str = #stored_name;
            const SNAPSHOT_VERSION: u32 = #snapshot_version;
            const SNAPSHOT_VERSION_DECLARED: bool = #declared;

            fn id(&self) -> Self::Id {
                #id
            }

            #state
        }
    }
}
