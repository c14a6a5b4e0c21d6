//! The subset of the AWS IoT fleet-indexing query syntax that ggprov understands itself (the
//! local cloud's `SearchIndex`, and checking a `thingIndexQuery` before it is stored):
//! `thingName`, `thingGroupNames`, `attributes.<name>`, `connectivity.connected`, `AND`, `OR`,
//! `NOT`, parentheses, implicit `AND` between terms, and a trailing `*` on a value. Anything
//! else is refused with the position where it goes wrong.

use std::collections::BTreeMap;
use std::fmt;

/// A parsed query.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ThingQuery {
    Term { field: Field, value: String, prefix: bool },
    Not(Box<ThingQuery>),
    And(Box<ThingQuery>, Box<ThingQuery>),
    Or(Box<ThingQuery>, Box<ThingQuery>),
}

/// The fields a term may name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Field {
    ThingName,
    ThingGroupNames,
    Attribute(String),
    Connected,
}

/// Why a query was refused: what, and at which character (1-based).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueryError {
    pub position: usize,
    pub problem: String,
}

impl fmt::Display for QueryError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "at character {}: {}", self.position, self.problem)
    }
}

/// What a query is matched against.
#[derive(Debug, Clone, Copy)]
pub struct ThingFacts<'a> {
    pub name: &'a str,
    pub groups: &'a [String],
    pub attributes: &'a BTreeMap<String, String>,
    pub connected: bool,
}

/// The most characters a query may have.
pub const MAX_QUERY_CHARS: usize = 1024;

#[derive(Debug, Clone, PartialEq)]
enum Token {
    Open,
    Close,
    Word(String),
}

fn tokens(text: &str) -> Result<Vec<(usize, Token)>, QueryError> {
    let mut out = Vec::new();
    let chars: Vec<(usize, char)> = text.char_indices().collect();
    let mut i = 0;
    while i < chars.len() {
        let (pos, c) = chars[i];
        let position = text[..pos].chars().count() + 1;
        match c {
            c if c.is_whitespace() => i += 1,
            '(' => {
                out.push((position, Token::Open));
                i += 1;
            }
            ')' => {
                out.push((position, Token::Close));
                i += 1;
            }
            c if c.is_ascii_alphanumeric() || "_-.:*".contains(c) => {
                let start = i;
                while i < chars.len() && (chars[i].1.is_ascii_alphanumeric() || "_-.:*".contains(chars[i].1)) {
                    i += 1;
                }
                out.push((position, Token::Word(chars[start..i].iter().map(|(_, c)| c).collect())));
            }
            other => {
                return Err(QueryError {
                    position,
                    problem: format!("'{other}' is not supported (use letters, digits, _ - . : and a trailing *)"),
                });
            }
        }
    }
    Ok(out)
}

struct Parser {
    tokens: Vec<(usize, Token)>,
    at: usize,
    end: usize,
}

impl Parser {
    fn peek(&self) -> Option<&Token> {
        self.tokens.get(self.at).map(|(_, t)| t)
    }

    fn position(&self) -> usize {
        self.tokens.get(self.at).map_or(self.end, |(p, _)| *p)
    }

    fn fail<T>(&self, problem: impl Into<String>) -> Result<T, QueryError> {
        Err(QueryError { position: self.position(), problem: problem.into() })
    }

    fn keyword(&self, word: &str) -> bool {
        matches!(self.peek(), Some(Token::Word(w)) if w == word)
    }

    fn or(&mut self) -> Result<ThingQuery, QueryError> {
        let mut left = self.and()?;
        while self.keyword("OR") {
            self.at += 1;
            left = ThingQuery::Or(Box::new(left), Box::new(self.and()?));
        }
        Ok(left)
    }

    fn and(&mut self) -> Result<ThingQuery, QueryError> {
        let mut left = self.not()?;
        loop {
            if self.keyword("AND") {
                self.at += 1;
            } else if self.keyword("OR") || matches!(self.peek(), None | Some(Token::Close)) {
                return Ok(left);
            }
            left = ThingQuery::And(Box::new(left), Box::new(self.not()?));
        }
    }

    fn not(&mut self) -> Result<ThingQuery, QueryError> {
        if self.keyword("NOT") {
            self.at += 1;
            return Ok(ThingQuery::Not(Box::new(self.not()?)));
        }
        self.primary()
    }

    fn primary(&mut self) -> Result<ThingQuery, QueryError> {
        match self.peek().cloned() {
            Some(Token::Open) => {
                self.at += 1;
                let inner = self.or()?;
                if self.peek() != Some(&Token::Close) {
                    return self.fail("expected ')'");
                }
                self.at += 1;
                Ok(inner)
            }
            Some(Token::Word(word)) if !matches!(word.as_str(), "AND" | "OR" | "NOT") => {
                let term = self.term(&word)?;
                self.at += 1;
                Ok(term)
            }
            Some(Token::Word(word)) => self.fail(format!("expected a term (field:value), found {word}")),
            Some(Token::Close) => self.fail("unexpected ')'"),
            None => self.fail("the query ends where a term (field:value) is expected"),
        }
    }

    fn term(&self, word: &str) -> Result<ThingQuery, QueryError> {
        let Some((field, value)) = word.split_once(':') else {
            return self.fail(format!("'{word}' is not a term: write field:value, e.g. thingName:core-*"));
        };
        let field = match field {
            "thingName" => Field::ThingName,
            "thingGroupNames" => Field::ThingGroupNames,
            "connectivity.connected" => Field::Connected,
            f if f.starts_with("attributes.") && f.len() > "attributes.".len() => {
                Field::Attribute(f["attributes.".len()..].to_owned())
            }
            other => {
                return self.fail(format!(
                    "field '{other}' is not supported: use thingName, thingGroupNames, attributes.<name> or connectivity.connected"
                ));
            }
        };
        let (value, prefix) = match value.strip_suffix('*') {
            Some(v) => (v, true),
            None => (value, false),
        };
        if value.contains('*') || value.contains(':') {
            return self.fail(format!("'{value}': only a trailing * is supported in a value"));
        }
        if value.is_empty() && !prefix {
            return self.fail(format!("{word} has no value"));
        }
        if field == Field::Connected && (prefix || !matches!(value, "true" | "false")) {
            return self.fail("connectivity.connected takes true or false");
        }
        Ok(ThingQuery::Term { field, value: value.to_owned(), prefix })
    }
}

impl ThingQuery {
    pub fn parse(text: &str) -> Result<Self, QueryError> {
        let length = text.chars().count();
        if length > MAX_QUERY_CHARS {
            return Err(QueryError {
                position: MAX_QUERY_CHARS + 1,
                problem: format!("the query has {length} characters; at most {MAX_QUERY_CHARS}"),
            });
        }
        let mut parser = Parser { tokens: tokens(text)?, at: 0, end: length + 1 };
        if parser.tokens.is_empty() {
            return Err(QueryError { position: 1, problem: "the query is empty".into() });
        }
        let query = parser.or()?;
        if parser.at < parser.tokens.len() {
            return parser.fail("unexpected text after the end of the query (unbalanced ')'?)");
        }
        Ok(query)
    }

    pub fn matches(&self, thing: &ThingFacts<'_>) -> bool {
        match self {
            Self::Term { field, value, prefix } => {
                let hit =
                    |candidate: &str| if *prefix { candidate.starts_with(value.as_str()) } else { candidate == value };
                match field {
                    Field::ThingName => hit(thing.name),
                    Field::ThingGroupNames => thing.groups.iter().any(|g| hit(g)),
                    Field::Attribute(name) => thing.attributes.get(name).is_some_and(|v| hit(v)),
                    Field::Connected => (value == "true") == thing.connected,
                }
            }
            Self::Not(inner) => !inner.matches(thing),
            Self::And(a, b) => a.matches(thing) && b.matches(thing),
            Self::Or(a, b) => a.matches(thing) || b.matches(thing),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn matches(query: &str, name: &str, groups: &[&str], attrs: &[(&str, &str)], connected: bool) -> bool {
        let groups: Vec<String> = groups.iter().map(|g| (*g).to_owned()).collect();
        let attributes = attrs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
        ThingQuery::parse(query).unwrap().matches(&ThingFacts {
            name,
            groups: &groups,
            attributes: &attributes,
            connected,
        })
    }

    #[test]
    fn terms_operators_and_prefixes_select_things() {
        assert!(matches("thingName:core-*", "core-1", &[], &[], false));
        assert!(!matches("thingName:core", "core-1", &[], &[], false));
        assert!(matches(
            "attributes.site:berlin AND connectivity.connected:true",
            "c",
            &[],
            &[("site", "berlin")],
            true
        ));
        assert!(matches("attributes.site:berlin connectivity.connected:false", "c", &[], &[("site", "berlin")], false));
        assert!(matches("NOT thingGroupNames:lab OR thingName:x", "x", &["lab"], &[], false));
        assert!(!matches("NOT (thingGroupNames:lab OR thingName:x)", "x", &["lab"], &[], false));
        assert!(matches("(thingName:a OR thingName:b) AND attributes.ring:1", "b", &[], &[("ring", "1")], false));
        assert!(
            !matches("thingName:a OR thingName:b AND attributes.ring:1", "b", &[], &[], false),
            "AND binds tighter"
        );
    }

    #[test]
    fn anything_else_is_refused_with_its_position() {
        for (query, position) in [
            ("", 1),
            ("thingName", 1),
            ("thingName:a AND", 16),
            ("shadow.reported.x:1", 1),
            ("thingName:a*b", 1),
            ("(thingName:a", 13),
            ("thingName:a)", 12),
            ("attributes.x:\"y\"", 14),
            ("connectivity.connected:yes", 1),
            ("thingName:a OR OR thingName:b", 16),
        ] {
            let err = ThingQuery::parse(query).unwrap_err();
            assert_eq!(err.position, position, "{query}: {err}");
        }
    }
}
