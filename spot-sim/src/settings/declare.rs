//! How a setting is declared: once, in `sections.rs`, with everything the command line, the
//! scenario file and the resolution need to know of it.
//!
//! ```text
//! /// Help text, shown by `--help` [default: 2m]
//! #[arg(long, value_name = "DURATION", value_parser = Dur::parse)]
//! interruption_in: Dur = Dur(NOTICE_LEAD), check at_most_a_year;
//! ```
//!
//! From that one declaration come the `--interruption-in` flag (clap reads the doc comment
//! and `#[arg]`), the `interruption-in` key of its section in the scenario file (serde, kebab
//! case), the merge of the command line over the file, the check of the merged value (whose
//! error names the file's key), and the default the resolution falls back to. A setting only
//! the file has takes `#[arg(skip)]`; one that, given on the command line, voids others of
//! the file (`--start-in` and the file's `manual`) lists them after `replaces`.

/// Declares a section of settings: a struct that is both a clap `Args` group and a serde
/// table, every field optional so that the command line, the file and the defaults can each
/// fill a gap; `overlay` (command line over file), `check` (each value given) and, for a
/// setting with a default, an accessor of the same name that falls back to it.
macro_rules! declare_settings {
    (
        $(#[$smeta:meta])*
        pub struct $name:ident in $section:literal {
            $(
                $(#[$fmeta:meta])*
                $field:ident : $ty:ty
                $(= $default:expr)?
                $(, check $check:path)?
                $(, replaces [$($voided:ident),+])?
                ;
            )*
        }
    ) => {
        #[derive(clap::Args, serde::Deserialize, Clone, Debug, Default)]
        #[serde(rename_all = "kebab-case")]
        $(#[$smeta])*
        pub struct $name {
            $(
                $(#[$fmeta])*
                #[serde(default)]
                pub $field: Option<$ty>,
            )*
        }

        #[allow(dead_code, reason = "an accessor per setting with a default, used or not")]
        impl $name {
            /// Its table in the scenario file.
            pub const SECTION: &'static str = $section;

            /// Every value given on the command line (`cli`) replaces the file's, and voids
            /// the file's values it contradicts.
            pub(crate) fn overlay(&mut self, cli: &Self) {
                $(
                    if cli.$field.is_some() {
                        self.$field = cli.$field.clone();
                        $($(self.$voided = None;)+)?
                    }
                )*
            }

            /// Checks each value given, naming the scenario file's key in the error.
            pub(crate) fn check(&self, origin: &str) -> Result<(), crate::scenario::ScenarioError> {
                let _ = origin; // A section may declare no check.
                $($(
                    if let Some(value) = &self.$field {
                        $check(origin, &crate::settings::declare::key($section, stringify!($field)), value)?;
                    }
                )?)*
                Ok(())
            }

            $($(
                /// The value given, else the declared default.
                pub(crate) fn $field(&self) -> $ty {
                    self.$field.clone().unwrap_or_else(|| $default)
                }
            )?)*
        }
    };
}

pub(crate) use declare_settings;

/// `scenario.interruption-in` for the field `interruption_in` of `[scenario]`.
pub(crate) fn key(section: &str, field: &str) -> String {
    format!("{section}.{}", field.replace('_', "-"))
}
