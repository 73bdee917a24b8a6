//! The rules an aggregate follows. Every broken rule is reported with a span
//! on the token at fault; what passes is handed to `expand` as checked data.
//!
//! Here the rules of the struct, the impl block and the event names;
//! `signature` holds those of an event method's signature, `evolution`
//! those of versions, aliases, retired events and upcasters.

use std::collections::HashMap;

use proc_macro2::Span;
use syn::spanned::Spanned;
use syn::visit_mut::VisitMut;
use syn::{Ident, LitStr, Path, Type};

use crate::ast::{Impl, Struct};
use crate::attr::{Options, Version};
use crate::case;
use crate::ctxt::Ctxt;

pub(crate) mod evolution;
mod signature;

pub(crate) use evolution::Evolution;

use signature::check_signature;

/// The name of the hidden bookkeeping field.
pub(crate) const STATE_FIELD: &str = "__factum";

/// Checks the struct. True when its full expansion can be generated (named
/// fields, no generics), even if some other rule was broken.
pub(crate) fn check_struct(cx: &mut Ctxt, input: &Struct) -> bool {
    let item = &input.item;
    let name = &item.ident;
    let mut expandable = true;
    check_placement(cx, &input.options, true);
    if let Some(stored) = &input.options.name
        && let Err(message) = case::check_aggregate_name(&stored.value())
    {
        cx.error_spanned_by(stored, message);
    }
    match &item.fields {
        syn::Fields::Named(_) => {}
        syn::Fields::Unnamed(fields) => {
            cx.error_spanned_by(
                fields,
                format_args!(
                    "an aggregate needs named fields, one of them `id`: write `struct {name} {{ id: {name}Id, ... }}`"
                ),
            );
            expandable = false;
        }
        syn::Fields::Unit => {
            cx.error_spanned_by(
                name,
                format_args!(
                    "an aggregate needs named fields, one of them `id`: write `struct {name} {{ id: {name}Id, ... }}`"
                ),
            );
            expandable = false;
        }
    }
    if !item.generics.params.is_empty() || item.generics.where_clause.is_some() {
        let generics = generics_tokens(&item.generics);
        cx.error_spanned_by(
            generics,
            "generic aggregates are not supported: the event store replays a stream into one concrete type; use concrete field types (a type alias or a newtype per variant)",
        );
        expandable = false;
    }
    if let Some(fields) = &input.fields {
        if input.id().is_none() {
            cx.error_spanned_by(
                name,
                format_args!(
                    "`{name}` has no `id` field: an aggregate keeps its id in a field named `id` (e.g. `pub id: {name}Id` with `factum::id!({name}Id);`, or `pub id: String`)"
                ),
            );
        }
        for field in fields.iter().filter(|field| field.ident == STATE_FIELD) {
            cx.error_spanned_by(
                &field.ident,
                "`__factum` is the name of the field `#[aggregate]` adds: rename this field",
            );
        }
    }
    if let Some(derive) = &input.derive_above {
        cx.error_at(
            Span::call_site(),
            format_args!(
                "`#[aggregate]` must come before `#[derive(...)]`: move `#[aggregate]` above `{derive}` on `{name}` (a derive listed first expands first, on the struct without the hidden field `#[aggregate]` adds)"
            ),
        );
    }
    if let Some(copy) = &input.derives.copy {
        cx.error_spanned_by(
            copy,
            "an aggregate cannot be `Copy`: it owns the events it has recorded but not saved; remove `Copy` (`Clone` is fine)",
        );
    }
    expandable
}

/// Reports the options given on the wrong item: the struct takes `default`,
/// `name` and `snapshot_version`, the impl block `retired`.
fn check_placement(cx: &mut Ctxt, options: &Options, on_struct: bool) {
    for (kind, span) in &options.given {
        if kind.on_struct() == on_struct {
            continue;
        }
        let example = kind.example();
        let message = if on_struct {
            format!(
                "`{example}` goes on the `#[aggregate]` impl block, beside the event methods, not on the struct"
            )
        } else {
            format!("`{example}` goes on the struct, not on the impl block")
        };
        cx.error_at(*span, message);
    }
}

/// An impl block that passed the checks that concern the whole block.
pub(crate) struct CheckedImpl {
    /// The type the block implements, e.g. `Counter`.
    pub(crate) self_path: Path,
    /// Its last segment.
    pub(crate) self_ident: Ident,
    /// The event methods that follow every rule.
    pub(crate) events: Vec<Event>,
    /// Retired events and upcasters.
    pub(crate) evolution: Evolution,
}

/// A checked event method.
pub(crate) struct Event {
    /// Position of the method in the impl block.
    pub(crate) index: usize,
    /// The stored event type, e.g. `incremented`.
    pub(crate) name: String,
    /// The enum variant, e.g. `Incremented`.
    pub(crate) variant: Ident,
    /// The schema version declared, if any.
    pub(crate) version: Version,
    /// Old names it is read under (the valid ones).
    pub(crate) aliases: Vec<String>,
    /// The method, e.g. `add`.
    pub(crate) method: Ident,
    /// The method's doc comments, repeated on its variant.
    pub(crate) docs: Vec<syn::Attribute>,
    pub(crate) args: Vec<Arg>,
    pub(crate) returns: Returns,
}

/// An argument of an event method: a field of its variant.
pub(crate) struct Arg {
    pub(crate) ident: Ident,
    /// The type as written in the signature.
    pub(crate) ty: Type,
    /// The type in the event enum: `Self` replaced by the aggregate's name.
    pub(crate) field_ty: Type,
}

/// What an event method returns.
pub(crate) enum Returns {
    /// `()`: the event is always recorded.
    Unit,
    /// `Result<(), E>`: recorded on `Ok`. Holds where to report an `E` that
    /// cannot say why replay failed: `E` when written out, else the type.
    Result(Span),
}

/// Checks the impl block and each event method in it.
pub(crate) fn check_impl(cx: &mut Ctxt, input: &Impl) -> Option<CheckedImpl> {
    check_placement(cx, &input.options, false);
    let item = &input.item;
    let mut usable = true;
    if let Some((_, trait_path, _)) = &item.trait_ {
        cx.error_spanned_by(
            trait_path,
            "`#[aggregate]` goes on the inherent `impl Name { ... }` block that holds the `#[event]` methods, not on a trait impl",
        );
        usable = false;
    }
    if !item.generics.params.is_empty() || item.generics.where_clause.is_some() {
        cx.error_spanned_by(
            &item.generics,
            "generic aggregates are not supported: write the impl block for one concrete type",
        );
        usable = false;
    }
    if let Some(unsafety) = &item.unsafety {
        cx.error_spanned_by(unsafety, "an aggregate impl block cannot be `unsafe`");
        usable = false;
    }
    let self_path = match &*item.self_ty {
        Type::Path(path)
            if path.qself.is_none()
                && path
                    .path
                    .segments
                    .iter()
                    .all(|segment| segment.arguments.is_none()) =>
        {
            Some(path.path.clone())
        }
        other => {
            cx.error_spanned_by(
                other,
                "`#[aggregate]` goes on the impl block of an aggregate struct: `impl Name { ... }`",
            );
            None
        }
    };
    let mut events = check_events(cx, input);
    let evolution = evolution::check(cx, input, &mut events);
    let self_path = self_path.filter(|_| usable)?;
    let self_ident = self_path.segments.last()?.ident.clone();
    for event in &mut events {
        for arg in &mut event.args {
            ReplaceSelf(&self_path).visit_type_mut(&mut arg.field_ty);
        }
    }
    Some(CheckedImpl {
        self_path,
        self_ident,
        events,
        evolution,
    })
}

/// Checks every event method, then the names across them.
fn check_events(cx: &mut Ctxt, input: &Impl) -> Vec<Event> {
    let mut checked = Vec::new();
    // Event name → the method recording it; variant → (event name, method).
    let mut names: HashMap<String, Ident> = HashMap::new();
    let mut variants: HashMap<String, (String, Ident)> = HashMap::new();
    for event in &input.events {
        let method = input.method(event);
        let signature_ok = check_signature(cx, method, event.attr_span);
        let named = event.attr.name.as_ref().and_then(|name| check_name(cx, name));
        let (Some((name, variant)), Some((args, returns))) = (named, signature_ok) else {
            continue;
        };
        let method_ident = &method.sig.ident;
        let name_lit = event
            .attr
            .name
            .as_ref()
            .map_or_else(|| method_ident.span(), LitStr::span);
        if let Some(first) = names.get(&name) {
            cx.error_at(
                name_lit,
                format_args!(
                    "duplicate event name `{name}`: `fn {first}` already records it; give each event method its own name"
                ),
            );
            continue;
        }
        if let Some((other_name, other_method)) = variants.get(&variant.to_string()) {
            cx.error_at(
                name_lit,
                format_args!(
                    "event names `{other_name}` (on `fn {other_method}`) and `{name}` both become the enum variant `{variant}`; rename one of them"
                ),
            );
            continue;
        }
        names.insert(name.clone(), method_ident.clone());
        variants.insert(variant.to_string(), (name.clone(), method_ident.clone()));
        checked.push(Event {
            index: event.index,
            name,
            variant,
            version: event.attr.version,
            // Checked with the other names, in `evolution::check`.
            aliases: Vec::new(),
            method: method_ident.clone(),
            docs: crate::attr::docs(&method.attrs),
            args,
            returns,
        });
    }
    checked
}

/// Checks an event name; returns it with its variant.
fn check_name(cx: &mut Ctxt, lit: &LitStr) -> Option<(String, Ident)> {
    let name = lit.value();
    if let Err(message) = case::check_event_name(&name) {
        cx.error_spanned_by(lit, message);
        return None;
    }
    let variant = case::variant_name(&name);
    if name == "created" {
        cx.error_spanned_by(
            lit,
            "`created` is reserved: it is the first event of every aggregate, recorded by `create`; name this event after what it changes (e.g. `renamed`, `opened`)",
        );
        return None;
    }
    if variant == "Created" {
        cx.error_spanned_by(
            lit,
            format_args!(
                "the event name `{name}` becomes the enum variant `Created`, which is reserved for the `created` event; choose another name"
            ),
        );
        return None;
    }
    if variant == "Self" {
        cx.error_spanned_by(
            lit,
            format_args!(
                "the event name `{name}` would become the enum variant `Self`, a keyword; choose another name"
            ),
        );
        return None;
    }
    Some((name, Ident::new(&variant, lit.span())))
}

/// Replaces `Self` in an argument type by the aggregate's type, since the
/// type moves from the impl block into the event enum.
struct ReplaceSelf<'a>(&'a Path);

impl VisitMut for ReplaceSelf<'_> {
    fn visit_type_mut(&mut self, ty: &mut Type) {
        if let Type::Path(path) = ty
            && path.qself.is_none()
            && path.path.is_ident("Self")
        {
            let span = path.path.span();
            let mut replacement = self.0.clone();
            for segment in &mut replacement.segments {
                segment.ident.set_span(span);
            }
            path.path = replacement;
            return;
        }
        syn::visit_mut::visit_type_mut(self, ty);
    }
}

/// The tokens of `<...>` or, without parameters, of the where clause: the
/// part of a signature to underline for "cannot be generic".
pub(super) fn generics_tokens(generics: &syn::Generics) -> proc_macro2::TokenStream {
    if generics.params.is_empty() {
        quote::ToTokens::to_token_stream(&generics.where_clause)
    } else {
        let (lt, params, gt) = (&generics.lt_token, &generics.params, &generics.gt_token);
        quote::quote!(#lt #params #gt)
    }
}
