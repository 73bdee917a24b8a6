//! The rules of evolution across an impl block: retired event types, old
//! names (aliases), upcasters and the chains they form. Each mistake is one
//! error; a mistake already reported (a bad version, a bad upcaster) turns
//! off the checks that would only repeat it.

use std::collections::{BTreeSet, HashMap, HashSet};

use proc_macro2::{Span, TokenStream};
use syn::spanned::Spanned;
use syn::{FnArg, Ident, ImplItemFn, LitStr, ReturnType};

use super::{Event, generics_tokens};
use crate::ast::Impl;
use crate::attr::{Target, Version};
use crate::case;
use crate::ctxt::Ctxt;

/// What the impl block declares about its history, once checked.
pub(crate) struct Evolution {
    /// Event types removed from the code whose stored events are skipped.
    pub(crate) retired: Vec<String>,
    /// The schema version of `created`: one above its last upcaster.
    pub(crate) created_version: u32,
    /// The event upcasters to generate.
    pub(crate) upcasters: Vec<Upcaster>,
    /// The snapshot upcasters to generate.
    pub(crate) snapshot_upcasters: Vec<SnapshotUpcaster>,
}

/// `#[upcast("event", from = N)] fn function(...)`.
pub(crate) struct Upcaster {
    pub(crate) event: String,
    pub(crate) from: u32,
    pub(crate) function: Function,
}

/// `#[upcast(snapshot, from = N)] fn function(...)`.
pub(crate) struct SnapshotUpcaster {
    pub(crate) from: u32,
    pub(crate) function: Function,
}

/// An upcaster function, with where to report a wrong argument or
/// return type.
pub(crate) struct Function {
    pub(crate) ident: Ident,
    pub(crate) input: Span,
    pub(crate) output: Span,
}

impl Function {
    fn of(function: &ImplItemFn) -> Self {
        let sig = &function.sig;
        let input = match sig.inputs.first() {
            Some(FnArg::Typed(typed)) => typed.ty.span(),
            _ => sig.ident.span(),
        };
        let output = match &sig.output {
            ReturnType::Type(_, ty) => ty.span(),
            ReturnType::Default => sig.ident.span(),
        };
        Function {
            ident: sig.ident.clone(),
            input,
            output,
        }
    }
}

/// Checks retired types, aliases and upcasters; fills each event's valid
/// aliases.
pub(super) fn check(cx: &mut Ctxt, input: &Impl, events: &mut [Event]) -> Evolution {
    let retired = check_retired(cx, &input.options.retired, events);
    check_aliases(cx, input, events, &retired);
    let mut upcasts = Upcasts::default();
    for version_broken in events
        .iter()
        .filter(|event| matches!(event.version, Version::Invalid))
    {
        upcasts.broken.insert(version_broken.name.clone());
    }
    upcasts.check(cx, input, events, &retired);
    for event in events.iter() {
        if let Version::Declared(version, span) = event.version {
            upcasts.check_chain(cx, &event.name, version, span);
        }
    }
    let created_version = upcasts.created_version(cx);
    Evolution {
        retired,
        created_version,
        upcasters: upcasts.upcasters,
        snapshot_upcasters: upcasts.snapshot_upcasters,
    }
}

/// The valid names of `#[aggregate(retired = [...])]`.
fn check_retired(cx: &mut Ctxt, retired: &[LitStr], events: &[Event]) -> Vec<String> {
    let mut valid: Vec<String> = Vec::new();
    for literal in retired {
        let name = literal.value();
        if let Err(message) = case::check_event_name(&name) {
            cx.error_spanned_by(literal, message);
        } else if name == "created" {
            cx.error_spanned_by(
                literal,
                "`created` cannot be retired: it is the first event of every stream; remove it from `retired`",
            );
        } else if let Some(event) = events.iter().find(|event| event.name == name) {
            cx.error_spanned_by(
                literal,
                format_args!(
                    "`{name}` is recorded by `fn {}` in this impl block: `retired` lists only event types removed from the code; remove it from `retired`",
                    event.method
                ),
            );
        } else if valid.contains(&name) {
            cx.error_spanned_by(literal, format_args!("`{name}` is retired twice: keep one"));
        } else {
            valid.push(name);
        }
    }
    valid
}

/// Checks the aliases of every event and keeps the valid ones.
fn check_aliases(cx: &mut Ctxt, input: &Impl, events: &mut [Event], retired: &[String]) {
    let names: HashMap<String, Ident> = events
        .iter()
        .map(|event| (event.name.clone(), event.method.clone()))
        .collect();
    // Alias → the event it is an old name of.
    let mut seen: HashMap<String, String> = HashMap::new();
    for event in events.iter_mut() {
        let Some(method) = input.events.iter().find(|method| method.index == event.index) else {
            continue;
        };
        for literal in &method.attr.aliases {
            let alias = literal.value();
            let message = if let Err(message) = case::check_event_name(&alias) {
                message
            } else if alias == "created" {
                "`created` is the first event of every aggregate; it cannot be an old name of another event: remove it from `aliases`".to_owned()
            } else if alias == event.name {
                format!("`{alias}` is this event's own name: `aliases` lists only its old names; remove it")
            } else if let Some(other) = names.get(&alias) {
                format!(
                    "the alias `{alias}` is the name of the event `fn {other}` records: a stored `{alias}` can be read as only one of them; remove the alias, or rename that event"
                )
            } else if retired.contains(&alias) {
                format!(
                    "`{alias}` is both retired and an old name of `{}`: a stored `{alias}` is either skipped or read as `{}`; remove it from one of the two lists",
                    event.name, event.name
                )
            } else if let Some(owner) = seen.get(&alias) {
                format!(
                    "`{alias}` is already an old name of `{owner}`: a stored `{alias}` can be read as only one event; keep one"
                )
            } else {
                seen.insert(alias.clone(), event.name.clone());
                event.aliases.push(alias);
                continue;
            };
            cx.error_spanned_by(literal, message);
        }
    }
}

/// The upcasters found so far, and the event types whose chains are not
/// checked again because a mistake in them was reported.
#[derive(Default)]
struct Upcasts {
    upcasters: Vec<Upcaster>,
    snapshot_upcasters: Vec<SnapshotUpcaster>,
    /// Every step declared, generated or not: (event, from).
    links: HashSet<(String, u32)>,
    /// Where the last step of `created` was declared.
    created_top: Option<(u32, TokenStream)>,
    broken: HashSet<String>,
    /// The steps of upcasters whose event is unknown (reported): probably
    /// a misspelt step of a chain, which is not reported missing again.
    misspelt: HashSet<u32>,
}

impl Upcasts {
    fn check(&mut self, cx: &mut Ctxt, input: &Impl, events: &[Event], retired: &[String]) {
        // The functions of each step, to name the first of two.
        let mut first: HashMap<(Option<String>, u32), Ident> = HashMap::new();
        // Every name an event method asked for, checked or not: an upcaster
        // of an event whose method has a reported mistake is not reported.
        let asked: HashSet<String> = input
            .events
            .iter()
            .filter_map(|method| method.attr.name.as_ref().map(LitStr::value))
            .collect();
        for upcast in &input.upcasts {
            let function = input.function(upcast.index);
            let signature_ok = check_signature(cx, function);
            let ident = function.sig.ident.clone();
            let attr = &upcast.attr_tokens;
            let (Some(target), Some((from, from_span))) = (&upcast.attr.target, upcast.attr.from) else {
                if let Some(Target::Event(literal)) = &upcast.attr.target {
                    self.broken.insert(literal.value());
                }
                continue;
            };
            let literal = match target {
                Target::Snapshot => {
                    if let Some(other) = first.get(&(None, from)) {
                        cx.error_spanned_by(
                            attr,
                            format_args!(
                                "a second upcaster of snapshots from version {from}: `fn {other}` already lifts it; keep one"
                            ),
                        );
                        continue;
                    }
                    first.insert((None, from), ident.clone());
                    if signature_ok {
                        self.snapshot_upcasters.push(SnapshotUpcaster {
                            from,
                            function: Function::of(function),
                        });
                    }
                    continue;
                }
                Target::Event(literal) => literal,
            };
            let name = literal.value();
            let event = events.iter().find(|event| event.name == name);
            if name != "created" && event.is_none() {
                if !asked.contains(&name) {
                    match unknown_target(cx, literal, events, retired) {
                        Some(owner) => self.broken.insert(owner),
                        None => self.misspelt.insert(from),
                    };
                }
                continue;
            }
            if let Some(event) = event
                && !self.in_range(cx, event, from, from_span)
            {
                continue;
            }
            if let Some(other) = first.get(&(Some(name.clone()), from)) {
                cx.error_spanned_by(
                    attr,
                    format_args!(
                        "a second upcaster of `{name}` from version {from}: `fn {other}` already lifts it to version {}; keep one",
                        from + 1
                    ),
                );
                self.broken.insert(name);
                continue;
            }
            first.insert((Some(name.clone()), from), ident.clone());
            self.links.insert((name.clone(), from));
            if name == "created" && self.created_top.as_ref().is_none_or(|(top, _)| *top < from) {
                self.created_top = Some((from, attr.clone()));
            }
            if signature_ok {
                self.upcasters.push(Upcaster {
                    event: name,
                    from,
                    function: Function::of(function),
                });
            }
        }
    }

    /// True when `from` is below the event's current version.
    fn in_range(&mut self, cx: &mut Ctxt, event: &Event, from: u32, from_span: Span) -> bool {
        let name = &event.name;
        let message = match event.version {
            Version::Invalid => return false,
            Version::Declared(version, _) if from < version => return true,
            Version::Declared(version, _) => format!(
                "`{name}` is at schema version {version} (`version = {version}` on `fn {}`): its upcasters lift it from versions below {version}, and this one lifts from {from}; raise the event's `version` to {}, or remove this upcaster",
                event.method,
                from + 1
            ),
            Version::Default => format!(
                "`{name}` declares no `version`, so it is at schema version 1 and nothing lifts it; declare `version = {}` on the `#[event]` of `fn {}`, or remove this upcaster",
                from + 1,
                event.method
            ),
        };
        cx.error_at(from_span, message);
        self.broken.insert(name.clone());
        false
    }

    /// Reports the steps missing below `version`, in one error.
    fn check_chain(&self, cx: &mut Ctxt, name: &str, version: u32, span: Span) {
        if self.broken.contains(name) {
            return;
        }
        let missing: Vec<u32> = (1..version)
            .filter(|from| !self.links.contains(&(name.to_owned(), *from)) && !self.misspelt.contains(from))
            .collect();
        if missing.is_empty() {
            return;
        }
        cx.error_at(
            span,
            format_args!(
                "`{name}` is at schema version {version}, but nothing lifts it from version {}: add {}",
                list(&missing),
                suggestions(name, &missing)
            ),
        );
    }

    /// One above the last upcaster of `created`; its missing steps reported.
    fn created_version(&self, cx: &mut Ctxt) -> u32 {
        let Some((top, attr)) = &self.created_top else {
            return 1;
        };
        let top = *top;
        if !self.broken.contains("created") {
            let missing: Vec<u32> = (1..top)
                .filter(|from| !self.links.contains(&("created".to_owned(), *from)))
                .collect();
            if !missing.is_empty() {
                cx.error_spanned_by(
                    attr,
                    format_args!(
                        "the upcasters of `created` lift it up to schema version {}, but nothing lifts it from version {}: add {}",
                        top + 1,
                        list(&missing),
                        suggestions("created", &missing)
                    ),
                );
            }
        }
        top + 1
    }
}

/// An upcaster names an event this impl block does not record. Returns
/// the event it is an old name of, if it is one.
fn unknown_target(cx: &mut Ctxt, literal: &LitStr, events: &[Event], retired: &[String]) -> Option<String> {
    let name = literal.value();
    let owner = events.iter().find(|event| event.aliases.contains(&name));
    let message = if let Some(owner) = owner {
        format!(
            "`{name}` is an old name of `{}`: upcasters name the event by its current name; write `#[upcast(\"{}\", from = ...)]`",
            owner.name, owner.name
        )
    } else if retired.contains(&name) {
        format!("`{name}` is retired: its stored events are skipped, never decoded; remove this upcaster")
    } else {
        let known: BTreeSet<String> = std::iter::once("created".to_owned())
            .chain(events.iter().map(|event| event.name.clone()))
            .collect();
        let known: Vec<String> = known.into_iter().map(|name| format!("`{name}`")).collect();
        format!(
            "there is no event `{name}` in this impl block: an upcaster lifts the payloads of one of its events ({})",
            known.join(", ")
        )
    };
    cx.error_spanned_by(literal, message);
    owner.map(|owner| owner.name.clone())
}

/// `1`, `1 and 2`, `1, 2 and 3`.
fn list(versions: &[u32]) -> String {
    let text: Vec<String> = versions.iter().map(ToString::to_string).collect();
    match text.split_last() {
        Some((last, rest)) if !rest.is_empty() => format!("{} and {last}", rest.join(", ")),
        _ => text.concat(),
    }
}

/// The upcasters to add, written out.
fn suggestions(name: &str, missing: &[u32]) -> String {
    let function: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '_'
            }
        })
        .collect();
    missing
        .iter()
        .map(|from| {
            format!(
                "`#[upcast(\"{name}\", from = {from})] fn {function}_v{from}(payload: Value) -> Result<Value, UpcastError>`"
            )
        })
        .collect::<Vec<_>>()
        .join(" and ")
}

const UPCAST_SIGNATURE: &str = "write `fn name(payload: Value) -> Result<Value, UpcastError>` (`serde_json::Value`, `factum::UpcastError`)";

/// An upcaster is a plain function of the payload.
fn check_signature(cx: &mut Ctxt, function: &ImplItemFn) -> bool {
    let sig = &function.sig;
    let mut ok = true;
    let mut fail = |cx: &mut Ctxt, tokens: proc_macro2::TokenStream, what: &str| {
        cx.error_spanned_by(tokens, format_args!("{what}: {UPCAST_SIGNATURE}"));
        ok = false;
    };
    if let Some(asyncness) = &sig.asyncness {
        fail(
            cx,
            quote::quote!(#asyncness),
            "an upcaster cannot be `async`: it runs while events are read",
        );
    }
    if let Some(unsafety) = &sig.unsafety {
        fail(cx, quote::quote!(#unsafety), "an upcaster cannot be `unsafe`");
    }
    if !sig.generics.params.is_empty() || sig.generics.where_clause.is_some() {
        fail(
            cx,
            generics_tokens(&sig.generics),
            "an upcaster cannot be generic",
        );
    }
    match sig.inputs.first() {
        Some(FnArg::Receiver(receiver)) => {
            fail(
                cx,
                quote::quote!(#receiver),
                "an upcaster takes the stored payload, not `self`",
            );
        }
        _ if sig.inputs.len() != 1 => {
            let inputs = &sig.inputs;
            let tokens = if inputs.is_empty() {
                let ident = &sig.ident;
                quote::quote!(#ident)
            } else {
                quote::quote!(#inputs)
            };
            fail(cx, tokens, "an upcaster takes one argument, the payload");
        }
        _ => {}
    }
    if let ReturnType::Default = sig.output {
        let ident = &sig.ident;
        fail(
            cx,
            quote::quote!(#ident),
            "an upcaster returns the lifted payload",
        );
    }
    ok
}
