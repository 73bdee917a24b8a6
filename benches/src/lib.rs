//! Benchmarks of factum: see `benches/`.
