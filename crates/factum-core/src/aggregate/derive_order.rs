//! Catches `#[derive(...)]` written above `#[aggregate]` when the source
//! could not tell.
//!
//! A derive listed first expands first, on the struct before `#[aggregate]`
//! adds its hidden field, and `#[aggregate]` never sees it. The macro reads
//! the lines above itself for such a derive and reports it as the only
//! error; where it cannot read them (a struct written by another macro, a
//! tool that gives no source file), the code generated for the struct asks
//! the type system instead: a `Clone` (or
//! `Default`) that `#[aggregate]` did not see derived below it was derived
//! above it (a hand-written one would have to name the hidden field).
//!
//! Method resolution picks [`DerivedClone::check_clone`] when the trait is
//! implemented (it matches without auto-referencing) and falls back to
//! [`NotDerivedClone::check_clone`] otherwise; the first has a bound nothing
//! meets, so it is reported with the message of [`AggregateBeforeDerive`].

use std::marker::PhantomData;

/// Names the aggregate `A` in the probes.
pub struct Probe<A>(pub PhantomData<A>);

/// Never implemented: reports the order of the attributes.
#[diagnostic::on_unimplemented(
    message = "`#[aggregate]` must come before `#[derive(...)]` on `{Self}`",
    label = "`{Self}` has derives that `#[aggregate]` did not see",
    note = "a derive listed above `#[aggregate]` expands before `#[aggregate]` adds its hidden field: write `#[aggregate]` first, then `#[derive(...)]`",
    note = "for a hand-written `impl Default`, write `#[aggregate(default)]`"
)]
pub trait AggregateBeforeDerive {}

/// Chosen when `A: Clone`.
pub trait DerivedClone<A> {
    /// Fails to compile: `Clone` was derived above `#[aggregate]`.
    fn check_clone(&self)
    where
        A: AggregateBeforeDerive,
    {
    }
}

impl<A: Clone> DerivedClone<A> for Probe<A> {}

/// Chosen otherwise.
pub trait NotDerivedClone {
    /// Nothing to report.
    fn check_clone(&self) {}
}

impl<A> NotDerivedClone for &Probe<A> {}

/// Chosen when `A: Default`.
pub trait DerivedDefault<A> {
    /// Fails to compile: `Default` was derived above `#[aggregate]`.
    fn check_default(&self)
    where
        A: AggregateBeforeDerive,
    {
    }
}

impl<A: Default> DerivedDefault<A> for Probe<A> {}

/// Chosen otherwise.
pub trait NotDerivedDefault {
    /// Nothing to report.
    fn check_default(&self) {}
}

impl<A> NotDerivedDefault for &Probe<A> {}
