//! factum's shared conformance suite, against a real PostgreSQL: each test
//! gets a store in a schema of its own, so the tests run in parallel.

mod common;

factum_core::conformance_suite!(common::fresh_store);
