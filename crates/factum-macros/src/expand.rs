//! Writes the code: for the struct, the hidden field, `<Name>Created`,
//! `create` and the field checks; for the impl block, the event wrappers,
//! `<Name>Event` and the `Aggregate` impl.
//!
//! Generated paths start with `::factum::`; helpers live in `const _` blocks.

use std::collections::HashMap;

use proc_macro2::{Span, TokenStream};
use quote::{format_ident, quote, quote_spanned};
use syn::parse::Parser;
use syn::spanned::Spanned;
use syn::{Attribute, FnArg, Ident, ImplItem, ImplItemFn, Item, Pat, Path, Visibility};

use crate::ast::{Impl, Input, Struct};
use crate::attr;
use crate::ctxt::Ctxt;
use crate::valid::{self, CheckedImpl, Event, Returns};

/// `#[aggregate]` on any item.
pub(crate) fn aggregate(args: TokenStream, input: TokenStream) -> TokenStream {
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
    let (expanded, cx) = match Input::from_syn(&mut cx, item, options) {
        Input::Struct(input) => {
            let expandable = valid::check_struct(&mut cx, &input);
            let expanded = if expandable {
                aggregate_struct(*input)
            } else {
                let item = &input.item;
                quote!(#item)
            };
            (expanded, cx)
        }
        Input::Impl(input) => {
            let checked = valid::check_impl(&mut cx, &input);
            let expanded = match checked {
                Some(checked) => aggregate_impl(*input, checked),
                None => {
                    let item = &input.item;
                    quote!(#item)
                }
            };
            (expanded, cx)
        }
        Input::Other(item) => {
            let message = "`#[aggregate]` goes on a struct with named fields and on its `impl` block (e.g. `#[aggregate] pub struct Counter { pub id: CounterId, ... }` and `#[aggregate] impl Counter { ... }`)";
            match &*item {
                Item::Enum(item) => cx.error_spanned_by(
                    item.enum_token,
                    "`#[aggregate]` goes on a struct with named fields, not on an enum: the events enum is generated from the `#[event]` methods of its `#[aggregate] impl` block",
                ),
                Item::Union(item) => cx.error_spanned_by(item.union_token, message),
                Item::Fn(item) => cx.error_spanned_by(item.sig.fn_token, message),
                Item::Trait(item) => cx.error_spanned_by(item.trait_token, message),
                other => cx.error_spanned_by(other, message),
            }
            (quote!(#item), cx)
        }
    };
    let errors = cx.into_compile_errors();
    quote!(#expanded #errors)
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

/// The struct with its hidden field, `<Name>Created`, the `AggregateFields`
/// impl, `create`, `DefaultAggregate` when asked for, and the field checks.
fn aggregate_struct(input: Struct) -> TokenStream {
    let Struct {
        mut item,
        options,
        derives,
        fields,
    } = input;
    let fields = fields.unwrap_or_default();
    if derives.copy.is_some() {
        attr::remove_copy(&mut item.attrs);
    }
    let name = item.ident.clone();
    let vis = item.vis.clone();
    let created = format_ident!("{}Created", name);
    let type_name = name.to_string();

    // Spanned at the struct name: with no `#[aggregate]` impl block, the
    // `Aggregate` bound of `AggregateState` fails there, with its message.
    let state_ty = quote_spanned!(name.span()=> ::factum::__private::AggregateState<#name>);
    let serde_skip = derives.serde.then(|| quote!(#[serde(skip)]));
    let state_field = syn::Field::parse_named.parse2(quote! {
        #[doc(hidden)]
        #serde_skip
        #vis __factum: #state_ty
    });
    match (&mut item.fields, state_field) {
        (syn::Fields::Named(named), Ok(field)) => named.named.push(field),
        (_, Err(error)) => return error.to_compile_error(),
        _ => {}
    }

    let idents: Vec<&Ident> = fields.iter().map(|field| &field.ident).collect();
    let types: Vec<&syn::Type> = fields.iter().map(|field| &field.ty).collect();
    let field_docs = fields.iter().map(|field| {
        if field.docs.is_empty() {
            let doc = format!(" The `{}` field of `{type_name}`.", field.ident);
            vec![syn::parse_quote!(#[doc = #doc])]
        } else {
            field.docs.clone()
        }
    });
    let created_doc = format!(
        " The `created` event of `{type_name}`: every field of the aggregate when it was created.\n\n Recorded by `{type_name}::create` as the first event of every `{type_name}` stream; generated by `#[aggregate]`."
    );
    let created_bound = serde_bound(&stored_bounds(types.iter().copied()));
    let field_checks = types
        .iter()
        .map(|ty| quote_spanned!(ty.span()=> StoredInEvents<#ty>,));
    let id = fields.iter().find(|field| field.ident == "id");
    let id_ty = match id {
        Some(id) => {
            let ty = &id.ty;
            quote!(#ty)
        }
        // Reported already; a stand-in keeps the impl block compiling.
        None => quote!(::std::string::String),
    };
    let id_check = id.map(|id| {
        let ty = &id.ty;
        quote_spanned!(ty.span()=> UsableAsAggregateId<#ty>,)
    });
    let start = quote_spanned!(name.span()=> ::factum::__private::start::<Self>);
    let create_doc = format!(
        " Starts a new `{type_name}` with these field values, recording its `created` event.\n\n Save it with `Application::save`; its first event is `created`, with every field."
    );

    let default_impl = (derives.default || options.default.is_some())
        .then_some(id)
        .flatten()
        .map(|id| {
            let id_ident = &id.ident;
            let others: Vec<&Ident> = idents.iter().copied().filter(|ident| *ident != "id").collect();
            let default_span = options.default.unwrap_or_else(|| name.span());
            let default = quote_spanned!(default_span=> <Self as ::core::default::Default>::default());
            let defaults = if others.is_empty() {
                quote!(let _: Self = #default;)
            } else {
                quote!(let defaults: Self = #default;)
            };
            quote! {
                impl ::factum::DefaultAggregate for #name {
                    fn create_default(#id_ident: #id_ty) -> Self {
                        #defaults
                        #start(#created {
                            #id_ident,
                            #( #others: defaults.#others, )*
                        })
                    }
                }
            }
        });

    quote! {
        // First, so that a field type that cannot be stored is reported
        // before anything else.
        const _: () = {
            #[allow(dead_code)]
            struct StoredInEvents<T: ::factum::__private::EventField>(::core::marker::PhantomData<T>);
            #[allow(dead_code)]
            struct UsableAsAggregateId<T: ::factum::AggregateId>(::core::marker::PhantomData<T>);
            #[allow(dead_code)]
            struct Checks(#(#field_checks)* #id_check);
        };

        #item

        #[doc = #created_doc]
        #[derive(
            ::factum::__private::serde::Serialize,
            ::factum::__private::serde::Deserialize,
            ::core::fmt::Debug,
            ::core::clone::Clone,
            ::core::cmp::PartialEq,
        )]
        #[serde(crate = "::factum::__private::serde", bound = #created_bound)]
        #vis struct #created {
            #(
                #(#field_docs)*
                #vis #idents: #types,
            )*
        }


        impl ::factum::__private::AggregateFields for #name {
            type Id = #id_ty;
            type Created = #created;
            const TYPE: &'static str = #type_name;

            fn from_created(created: Self::Created) -> Self {
                Self {
                    #( #idents: created.#idents, )*
                    __factum: ::core::default::Default::default(),
                }
            }
        }

        impl #name {
            #[doc = #create_doc]
            #[allow(clippy::too_many_arguments)]
            #vis fn create(#( #idents: #types ),*) -> Self {
                #start(#created { #(#idents),* })
            }
        }

        #default_impl
    }
}

/// The impl block with event wrappers, the event enum, and the `Aggregate`
/// and `DomainEvent` impls.
fn aggregate_impl(input: Impl, checked: CheckedImpl) -> TokenStream {
    let CheckedImpl {
        self_path,
        self_ident,
        events,
    } = checked;
    let mut item = input.item;
    let type_name = self_ident.to_string();
    let event_enum = format_ident!("{}Event", self_ident);
    let created = sibling(&self_path, format_ident!("{}Created", self_ident));

    let by_index: HashMap<usize, &Event> = events.iter().map(|event| (event.index, event)).collect();
    let mut methods: HashMap<usize, Ident> = HashMap::new();
    let mut items = Vec::with_capacity(item.items.len() + events.len());
    for (index, impl_item) in std::mem::take(&mut item.items).into_iter().enumerate() {
        match (impl_item, by_index.get(&index)) {
            (ImplItem::Fn(method), Some(event)) => {
                methods.insert(index, method.sig.ident.clone());
                let body = body_method(&method);
                let wrapper = wrapper_method(method, event, &event_enum);
                items.push(body);
                items.push(wrapper);
            }
            (impl_item, _) => items.push(impl_item),
        }
    }
    item.items = items;

    let method_of = |event: &Event| {
        methods
            .get(&event.index)
            .cloned()
            .unwrap_or_else(|| event.variant.clone())
    };
    let names: Vec<&str> = events.iter().map(|event| event.name.as_str()).collect();

    let enum_doc = format!(
        " The events of `{type_name}`: `created`, then one variant per `#[event]` method.\n\n Generated by `#[aggregate]`. Each variant is stored as its event type and a JSON object of its fields; serde writes it as `{{\"event_type\": ..., \"payload\": {{...}}}}`."
    );
    let created_variant_doc =
        format!(" `created`: the first event of every `{type_name}`, recorded by `{type_name}::create`.");
    let enum_variants = events.iter().map(|event| {
        let variant = &event.variant;
        let name = &event.name;
        let method = method_of(event);
        let method_name = method.to_string();
        let method_name = method_name.trim_start_matches("r#");
        let doc = format!(" `{name}`: recorded by `{type_name}::{method_name}`.");
        let method_docs = item
            .items
            .iter()
            .find_map(|impl_item| match impl_item {
                ImplItem::Fn(wrapper) if wrapper.sig.ident == method => Some(attr::docs(&wrapper.attrs)),
                _ => None,
            })
            .unwrap_or_default();
        let spacer = (!method_docs.is_empty()).then(|| quote!(#[doc = ""]));
        if event.args.is_empty() {
            quote! {
                #[doc = #doc]
                #spacer
                #(#method_docs)*
                #[serde(rename = #name)]
                #variant
            }
        } else {
            let fields = event.args.iter().map(|arg| {
                let ident = &arg.ident;
                let ty = &arg.field_ty;
                let doc = format!(
                    " The `{}` argument of `{type_name}::{method_name}`.",
                    ident.to_string().trim_start_matches("r#")
                );
                quote!(#[doc = #doc] #ident: #ty)
            });
            quote! {
                #[doc = #doc]
                #spacer
                #(#method_docs)*
                #[serde(rename = #name)]
                #variant { #(#fields),* }
            }
        }
    });

    let created_ty: syn::Type = syn::parse_quote!(#created);
    let stored = stored_bounds(
        std::iter::once(&created_ty).chain(
            events
                .iter()
                .flat_map(|event| event.args.iter().map(|arg| &arg.field_ty)),
        ),
    );
    let enum_bound = serde_bound(&stored);
    let checks = events.iter().flat_map(|event| {
        let args = event.args.iter().map(|arg| {
            let ty = &arg.field_ty;
            quote_spanned!(arg.ty.span()=> StoredInEvents<#ty>,)
        });
        let error = match &event.returns {
            Returns::Result(Some(error)) => Some(quote_spanned!(error.span()=> ReportedOnReplay<#error>,)),
            _ => None,
        };
        args.chain(error)
    });

    let payload_types = events.iter().filter(|event| !event.args.is_empty()).map(|event| {
        let borrowed = format_ident!("__{}Payload", event.variant);
        let owned = format_ident!("__{}PayloadOwned", event.variant);
        let idents = event.args.iter().map(|arg| &arg.ident);
        let idents2 = idents.clone();
        let types = event.args.iter().map(|arg| &arg.field_ty);
        let types2 = types.clone();
        let bound = serde_bound(&stored_bounds(event.args.iter().map(|arg| &arg.field_ty)));
        quote! {
            #[derive(::factum::__private::serde::Serialize)]
            #[serde(crate = "::factum::__private::serde", bound = #bound)]
            struct #borrowed<'__a> { #( #idents: &'__a #types, )* }

            #[derive(::factum::__private::serde::Deserialize)]
            #[serde(crate = "::factum::__private::serde", bound = #bound)]
            struct #owned { #( #idents2: #types2, )* }
        }
    });

    let event_type_arms = events.iter().map(|event| {
        let variant = &event.variant;
        let name = &event.name;
        quote!(Self::#variant { .. } => #name,)
    });

    let to_payload_arms = events.iter().map(|event| {
        let variant = &event.variant;
        if event.args.is_empty() {
            quote!(Self::#variant => ::factum::Payload::parse("{}"),)
        } else {
            let borrowed = format_ident!("__{}Payload", event.variant);
            let idents: Vec<&Ident> = event.args.iter().map(|arg| &arg.ident).collect();
            quote! {
                Self::#variant { #(#idents),* } => ::factum::Payload::encode(&#borrowed { #(#idents),* }),
            }
        }
    });

    let from_payload_arms = events.iter().map(|event| {
        let variant = &event.variant;
        let name = &event.name;
        if event.args.is_empty() {
            quote! {
                #name => {
                    ::factum::Payload::decode::<::factum::__private::serde::de::IgnoredAny>(payload)?;
                    ::core::result::Result::Ok(Self::#variant)
                }
            }
        } else {
            let owned = format_ident!("__{}PayloadOwned", event.variant);
            let idents: Vec<&Ident> = event.args.iter().map(|arg| &arg.ident).collect();
            quote! {
                #name => {
                    let #owned { #(#idents),* } = ::factum::Payload::decode(payload)?;
                    ::core::result::Result::Ok(Self::#variant { #(#idents),* })
                }
            }
        }
    });

    let apply_arms = events.iter().map(|event| {
        let variant = &event.variant;
        let body = format_ident!("__factum_{}", method_of(event));
        let idents: Vec<&Ident> = event.args.iter().map(|arg| &arg.ident).collect();
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
            Returns::Result(_) => quote! {
                #pattern => ::core::result::Result::map_err(
                    Self::#body(self, #(#idents),*),
                    |error| ::factum::ApplyError::new(::std::string::ToString::to_string(&error)),
                ),
            },
        }
    });

    // Names the event without `DomainEvent`, whose impl may not apply when
    // a type cannot be stored (that is reported once, by the checks).
    let not_created_arm = (!events.is_empty()).then(|| {
        let arms = events.iter().map(|event| {
            let variant = &event.variant;
            let name = &event.name;
            quote!(#event_enum::#variant { .. } => #name,)
        });
        quote! {
            other => ::core::result::Result::Err(::factum::ApplyError::new(::std::format!(
                "the first event of a stream must be `created`, found `{}`",
                match other {
                    #event_enum::Created(_) => "created",
                    #(#arms)*
                },
            ))),
        }
    });

    quote! {
        // First, so that an argument type that cannot be stored is reported
        // before anything else.
        const _: () = {
            #[allow(dead_code)]
            struct StoredInEvents<T: ::factum::__private::EventField>(::core::marker::PhantomData<T>);
            #[allow(dead_code)]
            struct ReportedOnReplay<T: ::core::fmt::Display>(::core::marker::PhantomData<T>);
            #[allow(dead_code)]
            struct Checks(#(#checks)*);
        };

        #item

        #[doc = #enum_doc]
        #[derive(
            ::core::fmt::Debug,
            ::core::clone::Clone,
            ::core::cmp::PartialEq,
            ::factum::__private::serde::Serialize,
            ::factum::__private::serde::Deserialize,
        )]
        #[serde(crate = "::factum::__private::serde", tag = "event_type", content = "payload", bound = #enum_bound)]
        // `pub` because the impl block cannot see the struct's visibility;
        // argument types as private as the aggregate are fine.
        #[allow(private_interfaces)]
        pub enum #event_enum {
            #[doc = #created_variant_doc]
            #[serde(rename = "created")]
            Created(#created),
            #(#enum_variants,)*
        }

        impl ::core::convert::From<#created> for #event_enum {
            fn from(created: #created) -> Self {
                Self::Created(created)
            }
        }

        const _: () = {
            #(#payload_types)*

            impl ::factum::DomainEvent for #event_enum
            where
                #(#stored,)*
            {
                const EVENT_TYPES: &'static [&'static str] = &["created", #(#names),*];

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
            }

            impl ::factum::Aggregate for #self_path {
                const TYPE: &'static str = <Self as ::factum::__private::AggregateFields>::TYPE;
                type Id = <Self as ::factum::__private::AggregateFields>::Id;
                type Event = #event_enum;

                fn id(&self) -> Self::Id {
                    let Self { id, .. } = self;
                    ::core::clone::Clone::clone(id)
                }

                fn from_first_event(event: Self::Event) -> ::core::result::Result<Self, ::factum::ApplyError> {
                    match event {
                        #event_enum::Created(created) => ::core::result::Result::Ok(
                            <Self as ::factum::__private::AggregateFields>::from_created(created),
                        ),
                        #not_created_arm
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
                    &self.__factum
                }

                fn state_mut(&mut self) -> &mut ::factum::__private::AggregateState<Self> {
                    &mut self.__factum
                }
            }
        };
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

/// Lint and `cfg` attributes, which apply to the hidden body too.
fn body_attrs(attrs: &[Attribute]) -> Vec<&Attribute> {
    attrs
        .iter()
        .filter(|attr| {
            ["cfg", "allow", "warn", "deny", "forbid", "expect"]
                .iter()
                .any(|name| attr.path().is_ident(name))
        })
        .collect()
}

/// The method body, moved into a hidden method that replay calls directly.
fn body_method(method: &ImplItemFn) -> ImplItem {
    let mut body = method.clone();
    body.sig.ident = format_ident!("__factum_{}", method.sig.ident);
    body.vis = Visibility::Inherited;
    let attrs: Vec<Attribute> = body_attrs(&method.attrs).into_iter().cloned().collect();
    body.attrs = attrs;
    body.attrs.push(syn::parse_quote!(#[doc(hidden)]));
    body.attrs.push(syn::parse_quote!(#[inline]));
    ImplItem::Fn(body)
}

/// The public method: runs the body, then records the event when it succeeded.
fn wrapper_method(mut method: ImplItemFn, event: &Event, event_enum: &Ident) -> ImplItem {
    let body = format_ident!("__factum_{}", method.sig.ident);
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
    let record = quote! {
        <Self as ::factum::Aggregate>::state_mut(self).record(#event_var);
    };
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

/// Where-predicates `for<'__factum> T: EventField`, one per distinct type.
///
/// The generated serde impls and the `DomainEvent` impl carry them: when a
/// type cannot be stored, those impls quietly do not apply instead of each
/// reporting the same mistake again, and what the user sees is the
/// `assert_event_field` check on their type. The `for<'__factum>` binder
/// keeps rustc from checking the bound where it is written (a bound without
/// generics is otherwise checked eagerly).
fn stored_bounds<'a>(types: impl IntoIterator<Item = &'a syn::Type>) -> Vec<TokenStream> {
    let mut seen = std::collections::HashSet::new();
    types
        .into_iter()
        .filter(|ty| seen.insert(quote!(#ty).to_string()))
        .map(|ty| quote!(for<'__factum> #ty: ::factum::__private::EventField))
        .collect()
}

/// The same predicates as text for `#[serde(bound = "...")]`.
fn serde_bound(bounds: &[TokenStream]) -> String {
    bounds
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}
