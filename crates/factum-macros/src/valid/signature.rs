//! The rules of an event method's signature: qualifiers, receiver,
//! arguments (named, of types an event can own) and return type.

use proc_macro2::Span;
use syn::spanned::Spanned;
use syn::visit::Visit;
use syn::{FnArg, GenericArgument, ImplItemFn, Pat, PathArguments, ReturnType, Type};

use super::{Arg, Returns, generics_tokens};
use crate::ctxt::Ctxt;

/// Checks the signature of an event method.
pub(super) fn check_signature(
    cx: &mut Ctxt,
    method: &ImplItemFn,
    attr_span: Span,
) -> Option<(Vec<Arg>, Returns)> {
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
