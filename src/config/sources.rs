//! Where setting values come from (defaults, a TOML file, `GGPROV_*` variables) and the typed
//! readers every section uses. A setting is named by its declaration (`&LISTEN`), never by a
//! string key, so a typo is a compile error rather than a panic at start-up.

use std::collections::BTreeMap;
use std::path::Path;

/// One configuration setting.
#[derive(Debug)]
pub struct Setting {
    /// Key in the TOML file.
    pub key: &'static str,
    /// Environment variable.
    pub env: &'static str,
    pub default: &'static str,
    pub help: &'static str,
}

/// A value as given, with where it came from (for error messages).
#[derive(Debug, Clone)]
struct Raw {
    text: String,
    source: String,
    /// Set in the file or the environment (not the default).
    given: bool,
}

/// Every setting's value after overlaying the sources, and the problems found reading them.
pub(super) struct Values {
    raw: BTreeMap<&'static str, Raw>,
    pub(super) problems: Vec<String>,
}

impl Values {
    /// The defaults of `settings`.
    pub(super) fn defaults(settings: &[&'static Setting]) -> Self {
        let raw = settings
            .iter()
            .map(|s| (s.key, Raw { text: s.default.to_owned(), source: format!("default of {}", s.env), given: false }))
            .collect();
        Self { raw, problems: Vec::new() }
    }

    /// Overlays the TOML file; unknown keys are problems.
    pub(super) fn overlay_file(&mut self, settings: &[&'static Setting], path: &Path) {
        match read_file(path) {
            Ok(table) => {
                for (key, value) in table {
                    match settings.iter().find(|s| s.key == key) {
                        Some(setting) => {
                            let source = format!("'{}' in {}", setting.key, path.display());
                            self.raw.insert(setting.key, Raw { text: value, source, given: true });
                        }
                        None => self.problems.push(format!(
                            "{}: unknown setting '{key}'; known settings are {}",
                            path.display(),
                            settings.iter().map(|s| s.key).collect::<Vec<_>>().join(", ")
                        )),
                    }
                }
            }
            Err(problem) => self.problems.push(problem),
        }
    }

    /// Overlays the environment; returns the `GGPROV_*` names that are no setting.
    pub(super) fn overlay_env(
        &mut self,
        settings: &[&'static Setting],
        env: impl IntoIterator<Item = (String, String)>,
        ignored: &[&str],
    ) -> Vec<String> {
        let mut unknown = Vec::new();
        for (name, value) in env {
            if let Some(setting) = settings.iter().find(|s| s.env == name) {
                self.raw.insert(setting.key, Raw { text: value, source: setting.env.to_owned(), given: true });
            } else if name.starts_with("GGPROV_") && !ignored.contains(&name.as_str()) {
                unknown.push(name);
            }
        }
        unknown
    }

    fn raw(&self, setting: &Setting) -> Raw {
        self.raw.get(setting.key).cloned().unwrap_or_else(|| Raw {
            text: setting.default.to_owned(),
            source: format!("default of {}", setting.env),
            given: false,
        })
    }

    /// Whether the setting was given (in the file or the environment), not left at its default.
    pub(super) fn is_given(&self, setting: &Setting) -> bool {
        self.raw.get(setting.key).is_some_and(|raw| raw.given)
    }

    /// The value as given (untrimmed).
    pub(super) fn text_of(&self, setting: &Setting) -> String {
        self.raw(setting).text
    }

    /// Records a problem with a setting's value.
    pub(super) fn fail(&mut self, setting: &Setting, why: impl std::fmt::Display) {
        let raw = self.raw(setting);
        self.problems.push(format!("{}='{}': {why}", raw.source, raw.text));
    }

    /// Parses the trimmed value with `parse`, recording its error as a problem.
    pub(super) fn parse<T>(&mut self, setting: &Setting, parse: impl FnOnce(&str) -> Result<T, String>) -> Option<T> {
        let text = self.text_of(setting);
        match parse(text.trim()) {
            Ok(value) => Some(value),
            Err(why) => {
                self.fail(setting, why);
                None
            }
        }
    }

    /// A non-empty text.
    pub(super) fn text(&mut self, setting: &Setting) -> Option<String> {
        self.parse(setting, |t| if t.is_empty() { Err("must not be empty".into()) } else { Ok(t.to_owned()) })
    }

    /// A text that may be empty (`None`).
    pub(super) fn optional(&self, setting: &Setting) -> Option<String> {
        Some(self.text_of(setting).trim().to_owned()).filter(|v| !v.is_empty())
    }

    pub(super) fn flag(&mut self, setting: &Setting) -> Option<bool> {
        self.parse(setting, |t| match t.to_ascii_lowercase().as_str() {
            "true" | "on" | "yes" | "1" => Ok(true),
            "false" | "off" | "no" | "0" => Ok(false),
            _ => Err("must be true or false".into()),
        })
    }

    pub(super) fn number(&mut self, setting: &Setting, min: u64, max: u64) -> Option<u64> {
        self.parse(setting, |t| match t.parse::<u64>() {
            Ok(n) if (min..=max).contains(&n) => Ok(n),
            _ => Err(format!("must be a whole number from {min} to {max}")),
        })
    }

    /// A number that fits `T` (the bounds are checked by `number`).
    pub(super) fn number_as<T: TryFrom<u64>>(&mut self, setting: &Setting, min: u64, max: u64) -> Option<T> {
        self.number(setting, min, max).and_then(|n| T::try_from(n).ok())
    }
}

/// Reads the TOML file into setting → text (arrays of strings are joined with commas).
fn read_file(path: &Path) -> Result<BTreeMap<String, String>, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|err| format!("cannot read the configuration file {}: {err}", path.display()))?;
    let table: toml::Table = text.parse().map_err(|err| format!("{} is not valid TOML: {err}", path.display()))?;
    table
        .into_iter()
        .map(|(key, value)| {
            let text = match value {
                toml::Value::String(s) => s,
                toml::Value::Integer(i) => i.to_string(),
                toml::Value::Boolean(b) => b.to_string(),
                toml::Value::Array(items) => items
                    .into_iter()
                    .map(|i| {
                        i.as_str()
                            .map(str::to_owned)
                            .ok_or_else(|| format!("{}: '{key}' must be a list of strings", path.display()))
                    })
                    .collect::<Result<Vec<_>, _>>()?
                    .join(","),
                other => return Err(format!("{}: '{key}' must be a string, not {}", path.display(), other.type_str())),
            };
            Ok((key, text))
        })
        .collect()
}
