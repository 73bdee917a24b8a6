//! factum's shared conformance suite, against a real PostgreSQL: each test
//! gets a store in a schema of its own, so the tests run in parallel.

mod common;

factum_core::conformance_suite!(common::fresh_store);
// For stores that override `subscribe_stream` only (see the case's docs).
factum_core::__conformance_tests!(common::fresh_store; unscoped_stream_subscription_follows_the_default_tenant);
