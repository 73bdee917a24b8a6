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
    /// The stored aggregate type.
    pub(super) stored_name: String,
    /// The snapshot shape version, and whether `snapshot_version` declared it.
    pub(super) snapshot_version: (u32, bool),
    /// False when a derive above `#[aggregate]` was reported: the struct is
    /// left without the hidden field, so that the derive's impls compile
    /// and that report is the only error.
    pub(super) has_state: bool,
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
        derive_above,
        fields,
    } = input;
    let has_state = derive_above.is_none();
    let fields = fields.unwrap_or_default();
    if derives.copy.is_some() {
        attr::remove_copy(&mut item.attrs);
    }
    if has_state && let Err(error) = add_state_field(&mut item, derives.serde) {
        return error.to_compile_error();
    }
    let snapshot_version = match options.snapshot_version {
        Some(declared) => (declared, true),
        None => (fingerprint(&item, &fields), false),
    };
    let shape = Shape {
        item: &item,
        created: format_ident!("{}Created", item.ident),
        fields: &fields,
        id: fields.iter().find(|field| field.ident == "id"),
        stored_name: options
            .name
            .as_ref()
            .map_or_else(|| item.ident.to_string(), syn::LitStr::value),
        snapshot_version,
        has_state,
    };
    let checks = checks::struct_checks(shape.fields);
    let derive_order =
        has_state.then(|| checks::derive_order(shape.name(), &derives, options.default.is_some()));
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

/// The snapshot shape version derived from the fields: a hash of their
/// names, types and serde attributes (and the struct's serde attributes),
/// with the top bit set so that it never equals a declared version
/// (`snapshot_version` stays below 2^31). Writing a field differently
/// changes it: one full replay per aggregate, then a fresh snapshot.
fn fingerprint(item: &ItemStruct, fields: &[Field]) -> u32 {
    let mut shape = String::new();
    for attr in attr::serde_attrs(&item.attrs) {
        shape.push_str(&quote!(#attr).to_string());
    }
    for field in fields {
        let (ident, ty, serde) = (&field.ident, &field.ty, &field.serde);
        shape.push_str(&quote!(#(#serde)* #ident: #ty;).to_string());
    }
    // FNV-1a: stable across builds and Rust versions, unlike `Hash`.
    let hash = shape.bytes().fold(0x811c_9dc5_u32, |hash, byte| {
        (hash ^ u32::from(byte)).wrapping_mul(0x0100_0193)
    });
    hash | 0x8000_0000
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
