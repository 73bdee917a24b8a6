//! Values to SQLite columns: what the shared rules of
//! [`factum_core::backend`] leave to this store.

use time::OffsetDateTime;

/// `at` as nanoseconds since the Unix epoch, the way the store keeps times;
/// the reason when an `i64` cannot hold it.
pub(crate) fn nanos(at: OffsetDateTime) -> Result<i64, String> {
    i64::try_from(at.unix_timestamp_nanos())
        .map_err(|_| format!("{at} is outside the years 1678 to 2261 the store can keep"))
}
