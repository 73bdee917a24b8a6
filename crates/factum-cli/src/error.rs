//! The command's one error type: a one-line message for the shell user,
//! the exit code that goes with it, and the cause kept as the source.

use std::error::Error as StdError;
use std::fmt;

/// How the command ends; the process exit code is the number.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Exit {
    /// The work failed (a store error, a conflict): 1.
    Failed = 1,
    /// The command line is wrong: an unknown store URL, a missing file: 2.
    Usage = 2,
    /// The store cannot be used as it is: unreachable, missing, at another
    /// schema version: 3.
    Unavailable = 3,
    /// The input was refused: a corrupt import line, an import into a store
    /// holding other events: 4.
    Refused = 4,
    /// Whoever read the output stopped reading (`| head`): a quiet success.
    PipeClosed = 0,
}

/// An error of the `factum` command.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub(crate) struct CliError {
    pub(crate) exit: Exit,
    message: String,
    #[source]
    source: Option<Box<dyn StdError + Send + Sync + 'static>>,
}

impl CliError {
    pub(crate) fn new(exit: Exit, message: impl Into<String>) -> Self {
        Self {
            exit,
            message: message.into(),
            source: None,
        }
    }

    pub(crate) fn with_source(
        mut self,
        source: impl Into<Box<dyn StdError + Send + Sync + 'static>>,
    ) -> Self {
        self.source = Some(source.into());
        self
    }

    pub(crate) fn usage(message: impl Into<String>) -> Self {
        Self::new(Exit::Usage, message)
    }

    pub(crate) fn unavailable(message: impl Into<String>) -> Self {
        Self::new(Exit::Unavailable, message)
    }

    pub(crate) fn refused(message: impl Into<String>) -> Self {
        Self::new(Exit::Refused, message)
    }

    pub(crate) fn failed(message: impl Into<String>) -> Self {
        Self::new(Exit::Failed, message)
    }
}

impl From<factum_core::Error> for CliError {
    fn from(error: factum_core::Error) -> Self {
        Self {
            exit: Exit::Failed,
            message: error.to_string(),
            source: Some(Box::new(error)),
        }
    }
}

impl From<std::io::Error> for CliError {
    fn from(error: std::io::Error) -> Self {
        if error.kind() == std::io::ErrorKind::BrokenPipe {
            return Self::new(Exit::PipeClosed, "the output was closed");
        }
        Self {
            exit: Exit::Failed,
            message: format!("writing the output failed: {error}"),
            source: Some(Box::new(error)),
        }
    }
}

/// The error and its causes on one line, `: `-separated, each cause left
/// out when the text before it already says it (most errors quote their
/// source in their own message).
pub(crate) struct Chain<'a>(pub(crate) &'a (dyn StdError + 'static));

impl fmt::Display for Chain<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut line = self.0.to_string();
        let mut cause = self.0.source();
        while let Some(error) = cause {
            let text = error.to_string();
            if !text.is_empty() && !line.contains(&text) {
                line.push_str(": ");
                line.push_str(&text);
            }
            cause = error.source();
        }
        // One line, whatever a driver put in its message.
        f.write_str(&line.replace(['\n', '\r'], " "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("outer: {0}")]
    struct Quoting(#[source] std::io::Error);

    #[test]
    fn a_cause_already_quoted_is_not_repeated() {
        let error =
            CliError::failed("import failed").with_source(Quoting(std::io::Error::other("disk full")));
        assert_eq!(Chain(&error).to_string(), "import failed: outer: disk full");
    }

    #[test]
    fn the_chain_is_one_line() {
        let error = CliError::failed("a\nb");
        assert_eq!(Chain(&error).to_string(), "a b");
    }

    #[test]
    fn a_closed_pipe_is_a_quiet_success() {
        let error = CliError::from(std::io::Error::from(std::io::ErrorKind::BrokenPipe));
        assert_eq!(error.exit as i32, 0);
    }
}
