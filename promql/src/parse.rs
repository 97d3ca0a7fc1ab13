//! The one way a query text becomes an AST the evaluator accepts: its
//! nesting bounded before the recursive parser sees it, the parser's panics
//! contained, and (for queries, not `match[]` selectors) its times and
//! durations checked against the engine's time domain.

use std::panic::{catch_unwind, AssertUnwindSafe};

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
    catch_unwind(AssertUnwindSafe(|| parser::parse(text)))
        .unwrap_or_else(|_| Err("a number in the query is out of range".into()))
        .map_err(PromqlError::BadQuery)
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
    fn syntax_errors_and_out_of_range_times_are_bad_queries() {
        assert!(matches!(parse("sum(").unwrap_err(), PromqlError::BadQuery(_)));
        assert!(parse("up @ 1e300").is_err() || parse_query("up @ 1e300").is_err());
        assert!(parse("up offset 1000000y").is_ok());
        let err = parse_query("up offset 1000000y").unwrap_err().to_string();
        assert!(err.contains("offset"), "{err}");
        assert!(parse_query("rate(up[5m])").is_ok());
    }
}
