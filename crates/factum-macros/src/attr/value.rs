//! The values our attributes take: whole-number versions and lists of
//! names, each checked with a message that says what to write instead.

use syn::{Expr, ExprLit, Lit, LitStr};

use crate::ctxt::Ctxt;

/// A version written as `key = N`: a whole number from 1. `zero` is what
/// to say about `key = 0`; reported, `None` when it is not one.
pub(crate) fn version(cx: &mut Ctxt, key: &str, value: &Expr, zero: &str) -> Option<u32> {
    let literal = match value {
        Expr::Lit(ExprLit { lit, .. }) => lit,
        Expr::Group(group) => return version(cx, key, &group.expr, zero),
        other => {
            cx.error_spanned_by(
                other,
                format_args!("`{key}` takes a whole number from 1: write `{key} = 2`"),
            );
            return None;
        }
    };
    match literal {
        Lit::Int(int) => match int.base10_parse::<u32>() {
            Ok(0) => {
                cx.error_spanned_by(int, zero);
                None
            }
            Ok(number) => Some(number),
            Err(_) => {
                cx.error_spanned_by(
                    int,
                    format_args!(
                        "`{key}` is a whole number from 1 to {}: write `{key} = 2`",
                        u32::MAX
                    ),
                );
                None
            }
        },
        Lit::Str(text) if text.value().parse::<u32>().is_ok_and(|number| number > 0) => {
            cx.error_spanned_by(
                text,
                format_args!(
                    "`{key}` takes a number, not a string: write `{key} = {}`",
                    text.value()
                ),
            );
            None
        }
        other => {
            cx.error_spanned_by(
                other,
                format_args!("`{key}` takes a whole number from 1: write `{key} = 2`"),
            );
            None
        }
    }
}

/// A list of names written as `key = ["a", "b"]`; reported, `None` when it
/// is not one. `example` is a correct list for the message.
pub(crate) fn names(cx: &mut Ctxt, key: &str, value: &Expr, example: &str) -> Option<Vec<LitStr>> {
    let elements = match value {
        Expr::Array(array) => &array.elems,
        Expr::Group(group) => return names(cx, key, &group.expr, example),
        Expr::Lit(ExprLit {
            lit: Lit::Str(text), ..
        }) => {
            cx.error_spanned_by(
                text,
                format_args!("`{key}` takes a list: write `{key} = [{:?}]`", text.value()),
            );
            return None;
        }
        other => {
            cx.error_spanned_by(
                other,
                format_args!("`{key}` takes a list of names as strings: write `{key} = {example}`"),
            );
            return None;
        }
    };
    let mut ok = true;
    let mut found = Vec::new();
    for element in elements {
        match element {
            Expr::Lit(ExprLit {
                lit: Lit::Str(text), ..
            }) => found.push(text.clone()),
            other => {
                cx.error_spanned_by(
                    other,
                    format_args!("each name in `{key}` is a string: write `{key} = {example}`"),
                );
                ok = false;
            }
        }
    }
    ok.then_some(found)
}

/// The key of `key = value`, when `expr` has that form.
pub(crate) fn assignment(expr: &Expr) -> Option<(&syn::Ident, &Expr)> {
    let Expr::Assign(assign) = expr else {
        return None;
    };
    let Expr::Path(path) = &*assign.left else {
        return None;
    };
    Some((path.path.get_ident()?, &assign.right))
}
