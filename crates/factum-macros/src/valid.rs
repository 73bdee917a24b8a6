//! The rules an aggregate follows. Every broken rule is reported with a span
//! on the token at fault; what passes is handed to `expand` as checked data.

use std::collections::HashMap;

use proc_macro2::Span;
use syn::spanned::Spanned;
use syn::visit::Visit;
use syn::visit_mut::VisitMut;
use syn::{FnArg, GenericArgument, Ident, ImplItemFn, LitStr, Pat, Path, PathArguments, ReturnType, Type};

use crate::ast::{Impl, Struct};
use crate::case;
use crate::ctxt::Ctxt;

/// The name of the hidden bookkeeping field.
pub(crate) const STATE_FIELD: &str = "__factum";

/// Checks the struct. True when its full expansion can be generated (named
/// fields, no generics), even if some other rule was broken.
pub(crate) fn check_struct(cx: &mut Ctxt, input: &Struct) -> bool {
    let item = &input.item;
    let name = &item.ident;
    let mut expandable = true;
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
    if let Some(copy) = &input.derives.copy {
        cx.error_spanned_by(
            copy,
            "an aggregate cannot be `Copy`: it owns the events it has recorded but not saved; remove `Copy` (`Clone` is fine)",
        );
    }
    expandable
}

/// An impl block that passed the checks that concern the whole block.
pub(crate) struct CheckedImpl {
    /// The type the block implements, e.g. `Counter`.
    pub(crate) self_path: Path,
    /// Its last segment.
    pub(crate) self_ident: Ident,
    /// The event methods that follow every rule.
    pub(crate) events: Vec<Event>,
}

/// A checked event method.
pub(crate) struct Event {
    /// Position of the method in the impl block.
    pub(crate) index: usize,
    /// The stored event type, e.g. `incremented`.
    pub(crate) name: String,
    /// The enum variant, e.g. `Incremented`.
    pub(crate) variant: Ident,
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
    if let Some(first) = input.options.first {
        cx.error_at(
            first,
            "`#[aggregate]` on an impl block takes no options: `#[aggregate(default)]` goes on the struct",
        );
    }
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
    let events = check_events(cx, input);
    let self_path = self_path.filter(|_| usable)?;
    let self_ident = self_path.segments.last()?.ident.clone();
    let mut events = events;
    for event in &mut events {
        for arg in &mut event.args {
            ReplaceSelf(&self_path).visit_type_mut(&mut arg.field_ty);
        }
    }
    Some(CheckedImpl {
        self_path,
        self_ident,
        events,
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
        let named = event.name.as_ref().and_then(|name| check_name(cx, name));
        let (Some((name, variant)), Some((args, returns))) = (named, signature_ok) else {
            continue;
        };
        let method_ident = &method.sig.ident;
        let name_lit = event
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

/// Checks the signature of an event method.
fn check_signature(cx: &mut Ctxt, method: &ImplItemFn, attr_span: Span) -> Option<(Vec<Arg>, Returns)> {
    let sig = &method.sig;
    // Every check runs, so that each mistake of the method is reported.
    let qualifiers_ok = check_qualifiers(cx, sig);
    let receiver_ok = check_receiver(cx, sig);
    let args = check_args(cx, sig);
    let returns = check_returns(cx, sig, attr_span);
    (qualifiers_ok && receiver_ok).then_some(())?;
    Some((args?, returns?))
}

/// No `async`, `const`, `unsafe`, generics or variadics.
fn check_qualifiers(cx: &mut Ctxt, sig: &syn::Signature) -> bool {
    let mut ok = true;
    if let Some(asyncness) = &sig.asyncness {
        cx.error_spanned_by(
            asyncness,
            "an `#[event]` method cannot be `async`: replay calls it synchronously; do the async work in a command method, then call the event method with the result",
        );
        ok = false;
    }
    if let Some(constness) = &sig.constness {
        cx.error_spanned_by(
            constness,
            "an `#[event]` method cannot be `const`: it records an event; remove `const`",
        );
        ok = false;
    }
    if let Some(unsafety) = &sig.unsafety {
        cx.error_spanned_by(
            unsafety,
            "an `#[event]` method cannot be `unsafe`: replay calls it with stored data; remove `unsafe`",
        );
        ok = false;
    }
    if !sig.generics.params.is_empty() || sig.generics.where_clause.is_some() {
        let generics = generics_tokens(&sig.generics);
        cx.error_spanned_by(
            generics,
            "an `#[event]` method cannot be generic: its arguments are stored as fields of the event enum, which needs concrete types",
        );
        ok = false;
    }
    if let Some(variadic) = &sig.variadic {
        cx.error_spanned_by(variadic, "an `#[event]` method cannot be variadic");
        ok = false;
    }
    ok
}

/// The receiver is `&mut self`.
fn check_receiver(cx: &mut Ctxt, sig: &syn::Signature) -> bool {
    let Some(FnArg::Receiver(receiver)) = sig.inputs.first() else {
        cx.error_at(
            sig.paren_token.span.join(),
            format_args!(
                "an `#[event]` method takes `&mut self`: it changes the aggregate; write `fn {}(&mut self, ...)`",
                sig.ident
            ),
        );
        return false;
    };
    let by_mut_ref = receiver.colon_token.is_none()
        && receiver
            .reference
            .as_ref()
            .is_some_and(|(_, lifetime)| lifetime.is_none())
        && receiver.mutability.is_some();
    if by_mut_ref {
        return true;
    }
    let message = if receiver.colon_token.is_some() {
        "an `#[event]` method takes `&mut self`: write `&mut self`, without a type"
    } else if receiver.reference.is_none() {
        "an `#[event]` method takes `&mut self`, not `self` by value: it changes the aggregate in place; write `&mut self`"
    } else if receiver.mutability.is_none() {
        "an `#[event]` method takes `&mut self`, not `&self`: it changes the aggregate; write `&mut self`"
    } else {
        "an `#[event]` method takes `&mut self`: write it without a lifetime"
    };
    cx.error_spanned_by(receiver, message);
    false
}

/// Each argument after the receiver has a plain name and a storable type.
/// The first input is the receiver's place even when it is not `self`
/// (`check_receiver` reports that), so it is not checked again here.
fn check_args(cx: &mut Ctxt, sig: &syn::Signature) -> Option<Vec<Arg>> {
    let mut ok = true;
    let mut args = Vec::new();
    for input in sig.inputs.iter().skip(1) {
        let FnArg::Typed(typed) = input else {
            continue;
        };
        let ident = match &*typed.pat {
            Pat::Ident(pat) if pat.by_ref.is_none() && pat.subpat.is_none() => Some(pat.ident.clone()),
            _ => None,
        };
        let Some(ident) = ident else {
            cx.error_spanned_by(
                &typed.pat,
                "each argument of an `#[event]` method becomes a field of the event, so it needs a plain name: write `name: Type` and destructure it in the body",
            );
            ok = false;
            continue;
        };
        if !check_arg_type(cx, &typed.ty) {
            ok = false;
            continue;
        }
        args.push(Arg {
            ident,
            ty: (*typed.ty).clone(),
            field_ty: (*typed.ty).clone(),
        });
    }
    ok.then_some(args)
}

/// The method returns `()` or `Result<(), E>`.
fn check_returns(cx: &mut Ctxt, sig: &syn::Signature, attr_span: Span) -> Option<Returns> {
    let returns = match &sig.output {
        ReturnType::Default => Some(Returns::Unit),
        ReturnType::Type(_, ty) => returns(ty),
    };
    if returns.is_none() {
        let span = match &sig.output {
            ReturnType::Type(_, ty) => ty.span(),
            ReturnType::Default => attr_span,
        };
        cx.error_at(
            span,
            "an `#[event]` method returns `()` or `Result<(), E>`: the event stores the method's arguments, not a result; on `Err` nothing is recorded",
        );
    }
    returns
}

/// `()` or `Result<(), E>` (any path ending in `Result` whose first
/// argument is `()`, so `io::Result<()>` and `anyhow::Result<()>` qualify).
fn returns(ty: &Type) -> Option<Returns> {
    match ty {
        Type::Tuple(tuple) if tuple.elems.is_empty() => Some(Returns::Unit),
        Type::Paren(paren) => returns(&paren.elem),
        Type::Path(path) if path.qself.is_none() => {
            let last = path.path.segments.last()?;
            if last.ident != "Result" {
                return None;
            }
            let PathArguments::AngleBracketed(generics) = &last.arguments else {
                return None;
            };
            let mut types = generics.args.iter().filter_map(|arg| match arg {
                GenericArgument::Type(ty) => Some(ty),
                _ => None,
            });
            match types.next()? {
                Type::Tuple(tuple) if tuple.elems.is_empty() => {}
                _ => return None,
            }
            Some(Returns::Result(
                types.next().map_or_else(|| ty.span(), Spanned::span),
            ))
        }
        _ => None,
    }
}

/// Rejects argument types that cannot be fields of the event enum.
fn check_arg_type(cx: &mut Ctxt, ty: &Type) -> bool {
    let mut finder = Unstorable::default();
    finder.visit_type(ty);
    match finder.found {
        Some((tokens, message)) => {
            cx.error_spanned_by(tokens, message);
            false
        }
        None => true,
    }
}

/// Finds the first part of a type that an event cannot own.
#[derive(Default)]
struct Unstorable {
    found: Option<(proc_macro2::TokenStream, &'static str)>,
}

impl<'ast> Visit<'ast> for Unstorable {
    fn visit_type(&mut self, ty: &'ast Type) {
        if self.found.is_some() {
            return;
        }
        let message = match ty {
            Type::Reference(_) => Some(
                "an event stores its arguments, so they must be owned: take `String` instead of `&str`, `Vec<T>` instead of `&[T]`, `T` instead of `&T`",
            ),
            Type::ImplTrait(_) => {
                Some("an event stores its arguments, so each needs a concrete type, not `impl Trait`")
            }
            Type::TraitObject(_) => Some(
                "an event stores its arguments, so each needs a concrete, serializable type, not `dyn Trait`",
            ),
            Type::Infer(_) => Some("write the argument's type out: it becomes a field of the event"),
            Type::Ptr(_) => Some("an event cannot store a raw pointer: take an owned, serializable type"),
            _ => None,
        };
        match message {
            Some(message) => self.found = Some((quote::ToTokens::to_token_stream(ty), message)),
            None => syn::visit::visit_type(self, ty),
        }
    }

    fn visit_lifetime(&mut self, lifetime: &'ast syn::Lifetime) {
        if self.found.is_none() && lifetime.ident != "static" {
            self.found = Some((
                quote::ToTokens::to_token_stream(lifetime),
                "an event stores its arguments, so they cannot borrow: use owned types (only `'static` lifetimes)",
            ));
        }
    }
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
fn generics_tokens(generics: &syn::Generics) -> proc_macro2::TokenStream {
    if generics.params.is_empty() {
        quote::ToTokens::to_token_stream(&generics.where_clause)
    } else {
        let (lt, params, gt) = (&generics.lt_token, &generics.params, &generics.gt_token);
        quote::quote!(#lt #params #gt)
    }
}
