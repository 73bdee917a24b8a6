//! The macro input, turned into our own model: an aggregate struct or an
//! aggregate impl block with its event methods.

use proc_macro2::Span;
use syn::spanned::Spanned;
use syn::{Attribute, Fields, Ident, ImplItem, ImplItemFn, Item, ItemImpl, ItemStruct, LitStr, Type};

use crate::attr::{self, Derives, Options};
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
    /// The named fields, in order; `None` for a tuple or unit struct.
    pub(crate) fields: Option<Vec<Field>>,
}

/// One field of an aggregate struct.
pub(crate) struct Field {
    pub(crate) ident: Ident,
    pub(crate) ty: Type,
    pub(crate) docs: Vec<Attribute>,
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
}

/// A method marked `#[event]`, before validation.
pub(crate) struct EventMethod {
    /// Position of the method in `Impl::item.items`.
    pub(crate) index: usize,
    /// The `#[event(...)]` attribute, for errors about the whole method.
    pub(crate) attr_span: Span,
    /// The name, when the attribute gave one.
    pub(crate) name: Option<LitStr>,
}

impl Impl {
    /// The method an [`EventMethod`] refers to.
    pub(crate) fn method(&self, event: &EventMethod) -> &ImplItemFn {
        match &self.item.items[event.index] {
            ImplItem::Fn(method) => method,
            _ => unreachable!("EventMethod::index always points at a method"),
        }
    }
}

impl Input {
    pub(crate) fn from_syn(cx: &mut Ctxt, item: Item, options: Options) -> Self {
        match item {
            Item::Struct(item) => Input::Struct(Box::new(Struct::from_syn(item, options))),
            Item::Impl(item) => Input::Impl(Box::new(Impl::from_syn(cx, item, options))),
            other => Input::Other(Box::new(other)),
        }
    }
}

impl Struct {
    fn from_syn(item: ItemStruct, options: Options) -> Self {
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
            fields,
        }
    }
}

impl Impl {
    fn from_syn(cx: &mut Ctxt, mut item: ItemImpl, options: Options) -> Self {
        let mut events = Vec::new();
        for (index, impl_item) in item.items.iter_mut().enumerate() {
            let attrs = match impl_item {
                ImplItem::Fn(method) => &mut method.attrs,
                ImplItem::Const(item) => &mut item.attrs,
                ImplItem::Type(item) => &mut item.attrs,
                ImplItem::Macro(item) => &mut item.attrs,
                _ => continue,
            };
            let (event_attrs, kept): (Vec<Attribute>, Vec<Attribute>) =
                std::mem::take(attrs).into_iter().partition(attr::is_event);
            *attrs = kept;
            let mut event_attrs = event_attrs.into_iter();
            let Some(first) = event_attrs.next() else {
                continue;
            };
            for extra in event_attrs {
                cx.error_spanned_by(
                    &extra,
                    "a method records one event: remove the extra `#[event]` attribute",
                );
            }
            if !matches!(impl_item, ImplItem::Fn(_)) {
                cx.error_spanned_by(
                    &first,
                    "`#[event]` goes on a method (`fn name(&mut self, ...)`), not on this item",
                );
                continue;
            }
            events.push(EventMethod {
                index,
                attr_span: first.span(),
                name: attr::event_name(cx, &first),
            });
        }
        Impl {
            item,
            options,
            events,
        }
    }
}
