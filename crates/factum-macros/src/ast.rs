//! The macro input, turned into our own model: an aggregate struct or an
//! aggregate impl block with its event methods.

use proc_macro2::Span;
use syn::spanned::Spanned;
use syn::{Attribute, Fields, Ident, ImplItem, ImplItemFn, Item, ItemImpl, ItemStruct, Type};

use crate::attr::{self, Derives, EventAttr, Options, UpcastAttr};
use crate::ctxt::Ctxt;

/// What `#[aggregate]` was put on.
pub(crate) enum Input {
    Struct(Box<Struct>),
    Impl(Box<Impl>),
    /// Anything else: reported, emitted unchanged.
    Other(Box<Item>),
}

/// An aggregate struct.
pub(crate) struct Struct {
    /// The struct as written (derives included).
    pub(crate) item: ItemStruct,
    pub(crate) options: Options,
    pub(crate) derives: Derives,
    /// A `#[derive(...)]` written above `#[aggregate]`, as written: it
    /// expanded before the hidden field was added.
    pub(crate) derive_above: Option<String>,
    /// The named fields, in order; `None` for a tuple or unit struct.
    pub(crate) fields: Option<Vec<Field>>,
}

/// One field of an aggregate struct.
pub(crate) struct Field {
    pub(crate) ident: Ident,
    pub(crate) ty: Type,
    pub(crate) docs: Vec<Attribute>,
    /// Its `#[serde(...)]` attributes: part of the snapshot shape.
    pub(crate) serde: Vec<Attribute>,
}

impl Struct {
    /// The `id` field.
    pub(crate) fn id(&self) -> Option<&Field> {
        self.fields.as_ref()?.iter().find(|field| field.ident == "id")
    }
}

/// An aggregate impl block.
pub(crate) struct Impl {
    /// The impl block with the `#[event]` attributes removed.
    pub(crate) item: ItemImpl,
    pub(crate) options: Options,
    /// Its methods marked `#[event]`, in order.
    pub(crate) events: Vec<EventMethod>,
    /// Its functions marked `#[upcast]`, in order.
    pub(crate) upcasts: Vec<UpcastMethod>,
}

/// A method marked `#[event]`, before validation.
pub(crate) struct EventMethod {
    /// Position of the method in `Impl::item.items`.
    pub(crate) index: usize,
    /// The `#[event(...)]` attribute, for errors about the whole method.
    pub(crate) attr_span: Span,
    /// What the attribute says.
    pub(crate) attr: EventAttr,
}

/// A function marked `#[upcast]`, before validation.
pub(crate) struct UpcastMethod {
    /// Position of the function in `Impl::item.items`.
    pub(crate) index: usize,
    /// The `#[upcast(...)]` attribute, for errors about the whole of it.
    pub(crate) attr_tokens: proc_macro2::TokenStream,
    /// What the attribute says.
    pub(crate) attr: UpcastAttr,
}

impl Impl {
    /// The method an [`EventMethod`] refers to.
    pub(crate) fn method(&self, event: &EventMethod) -> &ImplItemFn {
        self.function(event.index)
    }

    /// The function at `index` of the block.
    pub(crate) fn function(&self, index: usize) -> &ImplItemFn {
        match &self.item.items[index] {
            ImplItem::Fn(method) => method,
            _ => unreachable!("EventMethod and UpcastMethod indexes always point at a function"),
        }
    }
}

impl Input {
    pub(crate) fn from_syn(
        cx: &mut Ctxt,
        item: Item,
        options: Options,
        derive_above: impl FnOnce() -> Option<String>,
    ) -> Self {
        match item {
            Item::Struct(item) => Input::Struct(Box::new(Struct::from_syn(item, options, derive_above()))),
            Item::Impl(item) => Input::Impl(Box::new(Impl::from_syn(cx, item, options))),
            other => Input::Other(Box::new(other)),
        }
    }
}

impl Struct {
    fn from_syn(item: ItemStruct, options: Options, derive_above: Option<String>) -> Self {
        let derives = attr::derives(&item.attrs);
        let fields = match &item.fields {
            Fields::Named(named) => Some(
                named
                    .named
                    .iter()
                    .filter_map(|field| {
                        Some(Field {
                            ident: field.ident.clone()?,
                            ty: field.ty.clone(),
                            docs: attr::docs(&field.attrs),
                            serde: attr::serde_attrs(&field.attrs),
                        })
                    })
                    .collect(),
            ),
            Fields::Unnamed(_) | Fields::Unit => None,
        };
        Struct {
            item,
            options,
            derives,
            derive_above,
            fields,
        }
    }
}

impl Impl {
    fn from_syn(cx: &mut Ctxt, mut item: ItemImpl, options: Options) -> Self {
        let mut events = Vec::new();
        let mut upcasts = Vec::new();
        for (index, impl_item) in item.items.iter_mut().enumerate() {
            let attrs = match impl_item {
                ImplItem::Fn(method) => &mut method.attrs,
                ImplItem::Const(item) => &mut item.attrs,
                ImplItem::Type(item) => &mut item.attrs,
                ImplItem::Macro(item) => &mut item.attrs,
                _ => continue,
            };
            let (ours, kept): (Vec<Attribute>, Vec<Attribute>) = std::mem::take(attrs)
                .into_iter()
                .partition(|attr| attr::is_event(attr) || attr::is_upcast(attr));
            *attrs = kept;
            let (event_attrs, upcast_attrs): (Vec<Attribute>, Vec<Attribute>) =
                ours.into_iter().partition(attr::is_event);
            let is_fn = matches!(impl_item, ImplItem::Fn(_));
            if let Some(event) = first_of(cx, event_attrs, is_fn, &EVENT_MISUSE) {
                if let Some(upcast) = upcast_attrs.first() {
                    cx.error_spanned_by(
                        upcast,
                        "a function is an event method or an upcaster, not both: remove `#[upcast]` here and write the upcaster as a function of its own",
                    );
                }
                events.push(EventMethod {
                    index,
                    attr_span: event.span(),
                    attr: attr::event_attr(cx, &event),
                });
            } else if let Some(upcast) = first_of(cx, upcast_attrs, is_fn, &UPCAST_MISUSE) {
                upcasts.push(UpcastMethod {
                    index,
                    attr_tokens: quote::ToTokens::to_token_stream(&upcast),
                    attr: attr::upcast_attr(cx, &upcast),
                });
            }
        }
        Impl {
            item,
            options,
            events,
            upcasts,
        }
    }
}

/// What to say when one of our attributes is repeated or misplaced.
struct Misuse {
    extra: &'static str,
    not_a_function: &'static str,
}

const EVENT_MISUSE: Misuse = Misuse {
    extra: "a method records one event: remove the extra `#[event]` attribute",
    not_a_function: "`#[event]` goes on a method (`fn name(&mut self, ...)`), not on this item",
};

const UPCAST_MISUSE: Misuse = Misuse {
    extra: "an upcaster lifts one step: remove the extra `#[upcast]` attribute and write another function for the other step",
    not_a_function: "`#[upcast]` goes on a function (`fn name(payload: Value) -> Result<Value, UpcastError>`), not on this item",
};

/// The first of `attrs`, once the others (and a misplaced one) are reported.
fn first_of(cx: &mut Ctxt, attrs: Vec<Attribute>, is_fn: bool, misuse: &Misuse) -> Option<Attribute> {
    let mut attrs = attrs.into_iter();
    let first = attrs.next()?;
    for extra in attrs {
        cx.error_spanned_by(&extra, misuse.extra);
    }
    if !is_fn {
        cx.error_spanned_by(&first, misuse.not_a_function);
        return None;
    }
    Some(first)
}
