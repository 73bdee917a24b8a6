//! The `DomainEvent` impl of `<Name>Event`: its event types, and the payload
//! structs that (de)serialize each variant's fields.

use proc_macro2::TokenStream;
use quote::{format_ident, quote};
use syn::Ident;

use super::aggregate_impl::Names;
use super::checks;
use crate::valid::Event;

/// The payload structs and `impl DomainEvent for <Name>Event`.
pub(super) fn expand(names: &Names, events: &[Event], stored: &[TokenStream]) -> TokenStream {
    let event_enum = &names.event_enum;
    let fields_bound = &names.fields_bound;
    let event_names = events.iter().map(|event| event.name.as_str());
    let payload_types = events
        .iter()
        .filter(|event| !event.args.is_empty())
        .map(payload_types);
    let event_type_arms = events.iter().map(|event| {
        let variant = &event.variant;
        let name = &event.name;
        quote!(Self::#variant { .. } => #name,)
    });
    let to_payload_arms = events.iter().map(to_payload_arm);
    let from_payload_arms = events.iter().map(from_payload_arm);
    let from_value_arms = events.iter().map(from_value_arm);
    quote! {
        #(#payload_types)*

        impl ::factum::DomainEvent for #event_enum
        where
            #fields_bound,
            #(#stored,)*
        {
            const EVENT_TYPES: &'static [&'static str] = &["created", #(#event_names),*];

            fn event_type(&self) -> &'static str {
                match self {
                    Self::Created(_) => "created",
                    #(#event_type_arms)*
                }
            }

            fn to_payload(&self) -> ::core::result::Result<::factum::Payload, ::factum::__private::serde_json::Error> {
                match self {
                    Self::Created(created) => ::factum::Payload::encode(created),
                    #(#to_payload_arms)*
                }
            }

            fn from_payload(
                event_type: &str,
                payload: &::factum::Payload,
            ) -> ::core::result::Result<Self, ::factum::DecodeError> {
                match event_type {
                    "created" => ::core::result::Result::Ok(Self::Created(::factum::Payload::decode(payload)?)),
                    #(#from_payload_arms)*
                    _ => ::core::result::Result::Err(::factum::DecodeError::UnknownEventType),
                }
            }

            fn from_value(
                event_type: &str,
                payload: ::factum::__private::serde_json::Value,
            ) -> ::core::result::Result<Self, ::factum::DecodeError> {
                match event_type {
                    "created" => ::core::result::Result::Ok(Self::Created(
                        ::factum::__private::serde_json::from_value(payload)?,
                    )),
                    #(#from_value_arms)*
                    _ => ::core::result::Result::Err(::factum::DecodeError::UnknownEventType),
                }
            }
        }
    }
}

fn borrowed_payload(event: &Event) -> Ident {
    format_ident!("__{}Payload", event.variant)
}

fn owned_payload(event: &Event) -> Ident {
    format_ident!("__{}PayloadOwned", event.variant)
}

/// A struct that serializes a variant's fields by reference, and one that
/// deserializes them.
fn payload_types(event: &Event) -> TokenStream {
    let borrowed = borrowed_payload(event);
    let owned = owned_payload(event);
    let idents: Vec<&Ident> = event.args.iter().map(|arg| &arg.ident).collect();
    let types: Vec<&syn::Type> = event.args.iter().map(|arg| &arg.field_ty).collect();
    let bound = checks::serde_bound(&checks::stored_bounds(types.iter().copied()));
    quote! {
        #[derive(::factum::__private::serde::Serialize)]
        #[serde(crate = "::factum::__private::serde", bound = #bound)]
        struct #borrowed<'__a> { #( #idents: &'__a #types, )* }

        #[derive(::factum::__private::serde::Deserialize)]
        #[serde(crate = "::factum::__private::serde", bound = #bound)]
        struct #owned { #( #idents: #types, )* }
    }
}

fn to_payload_arm(event: &Event) -> TokenStream {
    let variant = &event.variant;
    if event.args.is_empty() {
        return quote!(Self::#variant => ::factum::Payload::parse("{}"),);
    }
    let borrowed = borrowed_payload(event);
    let idents: Vec<&Ident> = event.args.iter().map(|arg| &arg.ident).collect();
    quote! {
        Self::#variant { #(#idents),* } => ::factum::Payload::encode(&#borrowed { #(#idents),* }),
    }
}

/// The pattern of the stored types an event is read from: its name and
/// its old names.
fn stored_names(event: &Event) -> TokenStream {
    let name = &event.name;
    let aliases = &event.aliases;
    quote!(#name #(| #aliases)*)
}

fn from_payload_arm(event: &Event) -> TokenStream {
    let variant = &event.variant;
    let name = stored_names(event);
    if event.args.is_empty() {
        return quote! {
            #name => {
                ::factum::Payload::decode::<::factum::__private::serde::de::IgnoredAny>(payload)?;
                ::core::result::Result::Ok(Self::#variant)
            }
        };
    }
    let owned = owned_payload(event);
    let idents: Vec<&Ident> = event.args.iter().map(|arg| &arg.ident).collect();
    quote! {
        #name => {
            let #owned { #(#idents),* } = ::factum::Payload::decode(payload)?;
            ::core::result::Result::Ok(Self::#variant { #(#idents),* })
        }
    }
}

/// Decodes a payload already parsed (and lifted): from the `Value`, field
/// by field, without writing it back to text.
fn from_value_arm(event: &Event) -> TokenStream {
    let variant = &event.variant;
    let name = stored_names(event);
    if event.args.is_empty() {
        return quote! {
            // Like `from_payload`: any payload will do.
            #name => {
                ::core::mem::drop(payload);
                ::core::result::Result::Ok(Self::#variant)
            }
        };
    }
    let owned = owned_payload(event);
    let idents: Vec<&Ident> = event.args.iter().map(|arg| &arg.ident).collect();
    quote! {
        #name => {
            let #owned { #(#idents),* } = ::factum::__private::serde::Deserialize::deserialize(&payload)?;
            ::core::result::Result::Ok(Self::#variant { #(#idents),* })
        }
    }
}
