//! Reporting an error with its causes, where it is handled (logs).

use std::fmt;

/// Displays an error followed by each of its sources (`outer: cause: root cause`), skipping a
/// source whose text the message already contains (many errors quote their source).
pub struct ErrorChain<'a>(pub &'a (dyn std::error::Error + 'static));

impl fmt::Display for ErrorChain<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut written = self.0.to_string();
        let mut source = self.0.source();
        while let Some(cause) = source {
            let text = cause.to_string();
            if !text.is_empty() && !written.contains(&text) {
                written.push_str(": ");
                written.push_str(&text);
            }
            source = cause.source();
        }
        f.write_str(&written)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("reading the journal")]
    struct Outer(#[source] std::io::Error);

    #[derive(Debug, thiserror::Error)]
    #[error("the store failed: {0}")]
    struct Quoting(#[source] std::io::Error);

    #[test]
    fn causes_are_appended_once() {
        let io = || std::io::Error::new(std::io::ErrorKind::TimedOut, "connection timed out");
        assert_eq!(ErrorChain(&Outer(io())).to_string(), "reading the journal: connection timed out");
        assert_eq!(ErrorChain(&Quoting(io())).to_string(), "the store failed: connection timed out");
    }
}
