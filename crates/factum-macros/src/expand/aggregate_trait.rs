//! The `Aggregate` impl: replay. `apply` calls the original method bodies,
//! so replaying a history records nothing by construction.

use proc_macro2::TokenStream;
use quote::{quote, quote_spanned};

use super::aggregate_impl::Names;
use super::methods::body_ident;
use super::upcasters;
use crate::attr::Version;
use crate::valid::{Event, Evolution, Returns};

/// `impl Aggregate for <Name>`.
///
/// It carries the `stored` bounds (it needs `DomainEvent`) and the struct's
/// `AggregateFields`: when either is missing, that is reported once
/// elsewhere, and this impl quietly does not apply.
pub(super) fn expand(
    names: &Names,
    events: &[Event],
    evolution: &Evolution,
    stored: &[TokenStream],
) -> TokenStream {
    let Names {
        self_path,
        event_enum,
        fields_bound,
        ..
    } = names;
    let apply_arms = events.iter().map(|event| apply_arm(event_enum, event));
    let not_created = not_created_arm(event_enum, events);
    let evolution = evolution_const(events, evolution);
    quote! {
        impl ::factum::Aggregate for #self_path
        where
            #fields_bound,
            #(#stored,)*
        {
            const TYPE: &'static str = <Self as ::factum::__private::AggregateFields>::TYPE;
            type Id = <Self as ::factum::__private::AggregateFields>::Id;
            type Event = #event_enum;
            #evolution

            fn id(&self) -> Self::Id {
                <Self as ::factum::__private::AggregateFields>::id(self)
            }

            fn from_first_event(event: Self::Event) -> ::core::result::Result<Self, ::factum::ApplyError> {
                match event {
                    #event_enum::Created(created) => ::core::result::Result::Ok(
                        <Self as ::factum::__private::AggregateFields>::from_created(created),
                    ),
                    #not_created
                }
            }

            fn apply(&mut self, event: Self::Event) -> ::core::result::Result<(), ::factum::ApplyError> {
                match event {
                    #event_enum::Created(_) => ::core::result::Result::Err(::factum::ApplyError::new(
                        "`created` can only be the first event of a stream, but it was found again",
                    )),
                    #(#apply_arms)*
                }
            }

            fn state(&self) -> &::factum::__private::AggregateState<Self> {
                <Self as ::factum::__private::AggregateFields>::state(self)
            }

            fn state_mut(&mut self) -> &mut ::factum::__private::AggregateState<Self> {
                <Self as ::factum::__private::AggregateFields>::state_mut(self)
            }
        }
    }
}

/// Replays one event through its method's body. An `Err` of the body keeps
/// the error whole when it is a `std::error::Error`, else its text.
fn apply_arm(event_enum: &syn::Ident, event: &Event) -> TokenStream {
    let variant = &event.variant;
    let body = body_ident(&event.method);
    let idents: Vec<_> = event.args.iter().map(|arg| &arg.ident).collect();
    let pattern = if idents.is_empty() {
        quote!(#event_enum::#variant)
    } else {
        quote!(#event_enum::#variant { #(#idents),* })
    };
    match &event.returns {
        Returns::Unit => quote! {
            #pattern => {
                Self::#body(self, #(#idents),*);
                ::core::result::Result::Ok(())
            }
        },
        Returns::Result(error_span) => {
            // Spanned at the error type: one that is neither an error nor
            // `Display` is reported there, with factum's message.
            let keep = quote_spanned! {*error_span=>
                (&error).replay_error_kind().apply_error(error)
            };
            quote! {
                #pattern => ::core::result::Result::map_err(
                    Self::#body(self, #(#idents),*),
                    |error| {
                        #[allow(unused_imports)]
                        use ::factum::__private::replay_error::{KeepError as _, KeepText as _};
                        #keep
                    },
                ),
            }
        }
    }
}

/// The arm of `from_first_event` for a history that does not start with
/// `created`. It names the event without `DomainEvent`, whose impl may not
/// apply when a type cannot be stored.
fn not_created_arm(event_enum: &syn::Ident, events: &[Event]) -> Option<TokenStream> {
    if events.is_empty() {
        return None;
    }
    let arms = events.iter().map(|event| {
        let variant = &event.variant;
        let name = &event.name;
        quote!(#event_enum::#variant { .. } => #name,)
    });
    Some(quote! {
        other => ::core::result::Result::Err(::factum::ApplyError::new(::std::format!(
            "the first event of a stream must be `created`, found `{}`",
            match other {
                #event_enum::Created(_) => "created",
                #(#arms)*
            },
        ))),
    })
}

/// `const EVOLUTION`: every event with its version and old names, the
/// retired types, the upcasters and the snapshot shape version.
fn evolution_const(events: &[Event], evolution: &Evolution) -> TokenStream {
    let created_version = evolution.created_version;
    let created_declared = created_version > 1;
    let versions = events.iter().map(|event| {
        let name = &event.name;
        let aliases = &event.aliases;
        let (version, declared) = match event.version {
            Version::Declared(version, _) => (version, true),
            Version::Default | Version::Invalid => (1, false),
        };
        quote!(::factum::EventVersion::new(#name, #version, #declared, &[#(#aliases),*]))
    });
    let retired = &evolution.retired;
    let upcasters = evolution.upcasters.iter().enumerate().map(|(index, upcaster)| {
        let (event, from) = (&upcaster.event, upcaster.from);
        let shim = upcasters::event_shim(index);
        quote!(::factum::EventUpcaster::new(#event, #from, #shim))
    });
    let snapshot_upcasters = evolution
        .snapshot_upcasters
        .iter()
        .enumerate()
        .map(|(index, upcaster)| {
            let from = upcaster.from;
            let shim = upcasters::snapshot_shim(index);
            quote!(::factum::SnapshotUpcaster::new(#from, #shim))
        });
    quote! {
        const EVOLUTION: ::factum::Evolution = ::factum::Evolution::new(
            &[
                ::factum::EventVersion::new("created", #created_version, #created_declared, &[]),
                #(#versions,)*
            ],
            &[#(#retired),*],
            &[#(#upcasters),*],
            <Self as ::factum::__private::AggregateFields>::SNAPSHOT_VERSION,
            &[#(#snapshot_upcasters),*],
        );
    }
}
