//! Collects every error found in one macro input, so a user sees all of
//! their mistakes in one build (serde_derive's `internals/ctxt.rs`).

use proc_macro2::TokenStream;
use quote::ToTokens;
use std::fmt::Display;

/// The errors found so far in one macro input.
#[derive(Default)]
pub(crate) struct Ctxt {
    errors: Vec<syn::Error>,
}

impl Ctxt {
    /// Records an error spanning `tokens`.
    pub(crate) fn error_spanned_by<T: ToTokens, M: Display>(&mut self, tokens: T, message: M) {
        self.errors.push(syn::Error::new_spanned(tokens, message));
    }

    /// Records an error at `span`.
    pub(crate) fn error_at<M: Display>(&mut self, span: proc_macro2::Span, message: M) {
        self.errors.push(syn::Error::new(span, message));
    }

    /// Records an error syn produced while parsing.
    pub(crate) fn syn_error(&mut self, error: syn::Error) {
        self.errors.push(error);
    }

    /// Every error as `compile_error!` invocations, combined into one
    /// `syn::Error` so each keeps its own span.
    pub(crate) fn into_compile_errors(self) -> TokenStream {
        let mut errors = self.errors.into_iter();
        let Some(mut combined) = errors.next() else {
            return TokenStream::new();
        };
        for error in errors {
            combined.combine(error);
        }
        combined.to_compile_error()
    }
}
