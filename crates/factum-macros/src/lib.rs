//! The `#[aggregate]` and `#[event]` macros of
//! [factum](https://docs.rs/factum). Use them through the `factum` crate,
//! which re-exports them and documents them with compiling examples; the
//! generated code names only `::factum::` paths.
//!
//! Layout (after thiserror's `impl/`): `ast` turns the syn input into our
//! model, `attr` parses our attributes, `valid` checks the rules and
//! collects every broken one in a `Ctxt`, `expand` writes the code, one
//! file per generated item.

mod ast;
mod attr;
mod case;
mod ctxt;
mod expand;
mod placement;
mod valid;

use proc_macro::TokenStream;

/// Turns a struct and its impl block into an event-sourced aggregate.
///
/// ```text
/// #[aggregate]                       // before #[derive]
/// #[derive(Debug, Clone, Default)]
/// pub struct Counter { pub id: CounterId, pub value: i64 }
///
/// #[aggregate]
/// impl Counter {
///     #[event("incremented")]
///     pub fn add(&mut self, amount: i64) { self.value += amount; }
/// }
/// ```
///
/// On the struct it adds a hidden bookkeeping field and generates
/// `CounterCreated`, `Counter::create` and, when the struct derives
/// `Default` or says `#[aggregate(default)]`, `DefaultAggregate`. On the impl
/// block it generates `CounterEvent`, the `Aggregate` impl, and for each
/// `#[event]` method a wrapper that records the event when the body
/// succeeds. See `factum::aggregate` for the full documentation.
#[proc_macro_attribute]
pub fn aggregate(args: TokenStream, input: TokenStream) -> TokenStream {
    let call_site = proc_macro::Span::call_site();
    expand::aggregate(args.into(), input.into(), || placement::derive_above(call_site)).into()
}

/// Marks a method of an `#[aggregate]` impl block as an event:
/// `#[event("name")]`.
///
/// `#[aggregate]` consumes this attribute; expanded on its own (outside an
/// `#[aggregate]` impl block) it is a compile error saying so. See
/// `factum::event` for the full documentation.
#[proc_macro_attribute]
pub fn event(_args: TokenStream, item: TokenStream) -> TokenStream {
    expand::stray_event(item.into()).into()
}

/// Marks a function of an `#[aggregate]` impl block as an upcaster:
/// `#[upcast("name", from = N)]` lifts stored `name` payloads from schema
/// version `N` to `N + 1`; `#[upcast(snapshot, from = N)]` lifts snapshots.
///
/// `#[aggregate]` consumes this attribute; expanded on its own it is a
/// compile error saying so. See `factum::upcast` for the full documentation.
#[proc_macro_attribute]
pub fn upcast(_args: TokenStream, item: TokenStream) -> TokenStream {
    expand::stray_upcast(item.into()).into()
}
