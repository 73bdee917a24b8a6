//! `#[aggregate]` on the struct: the struct with its hidden bookkeeping
//! field, then the items generated beside it.

use proc_macro2::TokenStream;
use quote::{format_ident, quote};
use syn::parse::Parser;
use syn::{Ident, ItemStruct};

use super::{checks, constructors, created, fields};
use crate::ast::{Field, Struct};
use crate::attr;

/// What the struct's generated items need to know of it.
pub(super) struct Shape<'a> {
    pub(super) item: &'a ItemStruct,
    /// `<Name>Created`.
    pub(super) created: Ident,
    /// The user's fields, in order (the hidden one excluded).
    pub(super) fields: &'a [Field],
    pub(super) id: Option<&'a Field>,
}

impl Shape<'_> {
    pub(super) fn name(&self) -> &Ident {
        &self.item.ident
    }

    pub(super) fn type_name(&self) -> String {
        self.item.ident.to_string()
    }

    /// The type of the `id` field; `String` when it is missing (reported
    /// already; the stand-in keeps the rest compiling).
    pub(super) fn id_ty(&self) -> TokenStream {
        match self.id {
            Some(id) => {
                let ty = &id.ty;
                quote!(#ty)
            }
            None => quote!(::std::string::String),
        }
    }
}

/// The struct, its checks, `<Name>Created`, the `AggregateFields` impl,
/// `create`, and `DefaultAggregate` when asked for.
pub(super) fn expand(input: Struct) -> TokenStream {
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
    if let Err(error) = add_state_field(&mut item, derives.serde) {
        return error.to_compile_error();
    }
    let shape = Shape {
        item: &item,
        created: format_ident!("{}Created", item.ident),
        fields: &fields,
        id: fields.iter().find(|field| field.ident == "id"),
    };
    let checks = checks::struct_checks(shape.fields);
    let derive_order = checks::derive_order(shape.name(), &derives, options.default.is_some());
    let created = created::expand(&shape);
    let fields_impl = fields::expand(&shape);
    let create = constructors::create(&shape);
    let default = (derives.default || options.default.is_some())
        .then(|| constructors::default_aggregate(&shape, options.default))
        .flatten();
    quote! {
        // First, so that a field type that cannot be stored is reported
        // before anything else.
        #checks
        #derive_order
        #item
        #created
        #fields_impl
        #create
        #default
    }
}

/// Adds the hidden `__factum` field, which serde skips when the struct
/// derives serde.
fn add_state_field(item: &mut ItemStruct, serde: bool) -> syn::Result<()> {
    let name = &item.ident;
    let vis = &item.vis;
    let serde_skip = serde.then(|| quote!(#[serde(skip)]));
    let field = syn::Field::parse_named.parse2(quote! {
        #[doc(hidden)]
        #serde_skip
        #vis __factum: ::factum::__private::AggregateState<#name>
    })?;
    if let syn::Fields::Named(named) = &mut item.fields {
        named.named.push(field);
    }
    Ok(())
}
