//! The one way a query text becomes an AST the evaluator accepts: its
//! nesting bounded before the recursive parser sees it, the parser's panics
//! contained, and (for queries, not `match[]` selectors) its times and
//! durations checked against the engine's time domain.

use std::cell::Cell;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Once;

use promql_parser::parser::{self, Expr};

use crate::error::PromqlError;
use crate::nesting::check_nesting;
use crate::timebounds::check_times;

/// Parses PromQL text: its nesting is checked first (the parser recurses),
/// and a panic inside the parser (promql-parser turns some out-of-range
/// numbers into durations with a panicking conversion) refuses that text
/// instead of unwinding into the caller.
///
/// # Errors
/// [`PromqlError::BadQuery`] with the nesting check's or the parser's message.
pub fn parse(text: &str) -> Result<Expr, PromqlError> {
    check_nesting(text).map_err(PromqlError::BadQuery)?;
    quiet_parser_panics();
    IN_PARSER.with(|p| p.set(true));
    let parsed = catch_unwind(AssertUnwindSafe(|| parser::parse(text)));
    IN_PARSER.with(|p| p.set(false));
    parsed.unwrap_or_else(|_| Err("a number in the query is out of range".into())).map_err(PromqlError::BadQuery)
}

thread_local! {
    /// Set while this thread runs promql-parser.
    static IN_PARSER: Cell<bool> = const { Cell::new(false) };
}

/// A parser panic is a refused query, not a crash: the process' panic hook
/// (which prints a message and a backtrace to stderr, onto the terminal of
/// whoever runs `seismo serve`) stays silent for it. Any other panic still
/// goes to the hook that was installed before.
fn quiet_parser_panics() {
    static INSTALL: Once = Once::new();
    INSTALL.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if !IN_PARSER.with(Cell::get) {
                previous(info);
            }
        }));
    });
}

/// [`parse`], then checks every time and duration the query names
/// ([`check_times`]): what [`instant_query`](crate::eval::instant_query) and
/// [`range_query`](crate::eval::range_query) require of their `expr`.
///
/// # Errors
/// [`PromqlError::BadQuery`] naming what is wrong.
pub fn parse_query(text: &str) -> Result<Expr, PromqlError> {
    let expr = parse(text)?;
    check_times(&expr).map_err(PromqlError::BadQuery)?;
    Ok(expr)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn too_deep_queries_never_reach_the_parser() {
        let deep = format!("{}1{}", "(".repeat(10_000), ")".repeat(10_000));
        let err = parse(&deep).unwrap_err();
        assert!(matches!(err, PromqlError::BadQuery(_)), "{err:?}");
    }

    #[test]
    fn a_parser_panic_is_a_bad_query_and_the_thread_parses_again() {
        // promql-parser converts `1e300` seconds with a panicking conversion.
        let err = parse("up offset 1e300").unwrap_err().to_string();
        assert!(err.contains("out of range"), "{err}");
        assert!(!IN_PARSER.with(Cell::get), "the flag is cleared after a caught panic");
        assert!(parse("rate(up[5m])").is_ok());
    }

    #[test]
    fn syntax_errors_and_out_of_range_times_are_bad_queries() {
        assert!(matches!(parse("sum(").unwrap_err(), PromqlError::BadQuery(_)));
        assert!(parse("up @ 1e300").is_err() || parse_query("up @ 1e300").is_err());
        assert!(parse("up offset 1000000y").is_ok());
        let err = parse_query("up offset 1000000y").unwrap_err().to_string();
        assert!(err.contains("offset"), "{err}");
        assert!(parse_query("rate(up[5m])").is_ok());
    }
}
