//! Test support: the conformance suite every event store runs, and a
//! given/when/then harness for aggregates.
