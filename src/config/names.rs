//! `named!`: one table per configuration enum of its values and the words the file uses for them,
//! from which the parser, the messages, `check-config`, the dashboard and the API all read.

/// Gives an enum `as_str` (and `Display`), `from_name` and `NAMES` from one table of
/// `Variant => "word"` pairs, in the order messages list them.
macro_rules! named {
    ($ty:ident { $($variant:ident => $name:literal),+ $(,)? }) => {
        impl $ty {
            /// Every value, in the order of the table.
            pub const VALUES: &'static [$ty] = &[$($ty::$variant),+];

            /// The words of the file, in the same order (as messages list them).
            pub const NAMES: &'static [&'static str] = &[$($name),+];

            /// The word the file uses for this value (also in the summary, page and API).
            pub fn as_str(self) -> &'static str {
                match self {
                    $($ty::$variant => $name),+
                }
            }

            /// The value a word of the file names, if any (exactly as written: lower case).
            pub fn from_name(word: &str) -> Option<Self> {
                match word {
                    $($name => Some($ty::$variant),)+
                    _ => None,
                }
            }
        }

        impl $crate::config::names::Named for $ty {
            const NAMES: &'static [&'static str] = $ty::NAMES;

            fn from_name(word: &str) -> Option<Self> {
                $ty::from_name(word)
            }
        }

        impl std::fmt::Display for $ty {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

/// What `named!` gives, for code generic over the named enums (the validator's `word`).
pub(super) trait Named: Sized {
    const NAMES: &'static [&'static str];
    fn from_name(word: &str) -> Option<Self>;
}
