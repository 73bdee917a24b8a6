//! `factum::id!`: UUID v7 newtypes for aggregate ids.

/// Declares a UUID newtype for aggregate ids.
///
/// The type is `pub` unless a visibility is given, and has `generate()`
/// (UUID v7, so ids sort by creation time), `Display`, `FromStr`, serde as a
/// plain UUID string, `Copy`, `Eq`, `Hash`, `Ord` and `Default` (the nil UUID).
///
/// ```
/// factum_core::id!(
///     /// Identifies a counter.
///     CounterId
/// );
///
/// let id = CounterId::generate();
/// let parsed: CounterId = id.to_string().parse().unwrap();
/// assert_eq!(id, parsed);
/// assert_eq!(CounterId::default().to_string(), "00000000-0000-0000-0000-000000000000");
/// ```
#[macro_export]
macro_rules! id {
    ($(#[$meta:meta])* $name:ident) => {
        $crate::id!($(#[$meta])* pub $name);
    };
    ($(#[$meta:meta])* $vis:vis $name:ident) => {
        $(#[$meta])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
        $vis struct $name($crate::__private::uuid::Uuid);

        impl $name {
            /// A new id: a UUID v7, ordered by creation time.
            pub fn generate() -> Self {
                Self($crate::__private::uuid::Uuid::now_v7())
            }

            /// Wraps an existing UUID.
            pub const fn from_uuid(uuid: $crate::__private::uuid::Uuid) -> Self {
                Self(uuid)
            }

            /// The UUID inside.
            pub const fn as_uuid(&self) -> $crate::__private::uuid::Uuid {
                self.0
            }
        }

        impl ::core::fmt::Display for $name {
            fn fmt(&self, f: &mut ::core::fmt::Formatter<'_>) -> ::core::fmt::Result {
                ::core::fmt::Display::fmt(&self.0, f)
            }
        }

        impl ::core::str::FromStr for $name {
            type Err = $crate::__private::uuid::Error;

            fn from_str(text: &str) -> ::core::result::Result<Self, Self::Err> {
                $crate::__private::uuid::Uuid::parse_str(text).map(Self)
            }
        }

        impl ::core::convert::From<$crate::__private::uuid::Uuid> for $name {
            fn from(uuid: $crate::__private::uuid::Uuid) -> Self {
                Self(uuid)
            }
        }

        impl ::core::convert::From<$name> for $crate::__private::uuid::Uuid {
            fn from(id: $name) -> Self {
                id.0
            }
        }

        impl $crate::__private::serde::Serialize for $name {
            fn serialize<S>(&self, serializer: S) -> ::core::result::Result<S::Ok, S::Error>
            where
                S: $crate::__private::serde::Serializer,
            {
                $crate::__private::serde::Serialize::serialize(&self.0, serializer)
            }
        }

        impl<'de> $crate::__private::serde::Deserialize<'de> for $name {
            fn deserialize<D>(deserializer: D) -> ::core::result::Result<Self, D::Error>
            where
                D: $crate::__private::serde::Deserializer<'de>,
            {
                <$crate::__private::uuid::Uuid as $crate::__private::serde::Deserialize<'de>>::deserialize(deserializer).map(Self)
            }
        }
    };
}
