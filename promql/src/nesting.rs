//! How deeply a PromQL query may nest, checked on its text before
//! promql-parser sees it.
//!
//! The parser builds, checks, prints and drops its AST recursively, and so
//! does the evaluator: a query nesting a few thousand levels (`abs(abs(...`,
//! `1+1+1+...`, `((((...`) overflowed the stack and aborted the whole process,
//! ingest included. A check on the AST would come too late (the parser
//! recurses first), so this is a single lexical pass with a heap-allocated
//! stack: it cannot overflow whatever the input.
//!
//! The pass bounds the depth of the AST the parser would build from above:
//! every bracket level (`(`, `[`, `{`) is one level, and every operator
//! (`+ - * / % ^`, comparisons, `and`/`or`/`unless`/`atan2`, a subquery or
//! range `[...]`) adds one level to its bracket, since a chain of `n`
//! operators is a tree `n` deep. A level's depth is 1 + its operators + its
//! deepest child. Strings and `#` comments are skipped exactly as
//! promql-parser's lexer skips them (a backslash escapes in all three quote
//! styles), so their contents never count.
//!
//! The limit, [`MAX_NESTING_DEPTH`], is far beyond any real query (Grafana's
//! and alerting rules' queries nest a handful of levels; a 200-term `or`
//! chain still passes) and well inside what the query threads' stack holds.

/// The deepest query the PromQL API accepts, in levels as counted above.
pub const MAX_NESTING_DEPTH: usize = 256;

/// Operator words (case-insensitive, as the lexer reads keywords) that make a
/// binary expression.
const OPERATOR_WORDS: [&str; 4] = ["and", "or", "unless", "atan2"];

/// Checks that `query` nests at most [`MAX_NESTING_DEPTH`] levels.
///
/// # Errors
/// A message naming the limit, for a 400 `bad_data` answer.
pub fn check_nesting(query: &str) -> Result<(), String> {
    check_nesting_within(query, MAX_NESTING_DEPTH)
}

/// One open bracket: which kind, how many operators sit directly in it, and
/// the depth of its deepest closed child.
struct Level {
    close: u8,
    operators: usize,
    deepest_child: usize,
}

impl Level {
    fn new(close: u8) -> Self {
        Level { close, operators: 0, deepest_child: 0 }
    }

    fn depth(&self) -> usize {
        1 + self.operators + self.deepest_child
    }

    /// Matchers inside `{}` and durations inside `[]` do not nest.
    fn counts_operators(&self) -> bool {
        !matches!(self.close, b'}' | b']')
    }
}

fn too_deep(limit: usize) -> String {
    format!(
        "query is nested too deeply: more than {limit} levels of parentheses, function calls, \
         aggregations, subqueries and operator chains (seismo's limit against stack exhaustion)"
    )
}

fn check_nesting_within(query: &str, limit: usize) -> Result<(), String> {
    let b = query.as_bytes();
    // The root level stands for the whole expression.
    let mut stack = vec![Level::new(0)];
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        i += 1;
        match c {
            b'"' | b'\'' | b'`' => {
                // A string: up to the same quote; a backslash escapes the next
                // character (promql-parser's lexer does so in all three styles).
                while i < b.len() && b[i] != c {
                    i += if b[i] == b'\\' { 2 } else { 1 };
                }
                i += 1;
            }
            b'#' => {
                while i < b.len() && b[i] != b'\n' && b[i] != b'\r' {
                    i += 1;
                }
            }
            b'(' | b'[' | b'{' => {
                if c == b'[' {
                    // A range or subquery wraps the expression before it.
                    add_operator(&mut stack, limit)?;
                }
                stack.push(Level::new(match c {
                    b'(' => b')',
                    b'[' => b']',
                    _ => b'}',
                }));
                if stack.len() > limit {
                    return Err(too_deep(limit));
                }
            }
            // An unbalanced closer is the parser's error to report: skipped.
            b')' | b']' | b'}' if stack.len() > 1 && stack.last().is_some_and(|l| l.close == c) => {
                close(&mut stack, limit)?;
            }
            b'+' | b'-' | b'*' | b'/' | b'%' | b'^' | b'<' | b'>' | b'!' => add_operator(&mut stack, limit)?,
            // `==` once, not twice; a lone `=` only appears in matchers.
            b'=' if b.get(i) == Some(&b'=') => {
                i += 1;
                add_operator(&mut stack, limit)?;
            }
            c if c.is_ascii_alphabetic() || c == b'_' || c == b':' => {
                let start = i - 1;
                while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'_' || b[i] == b':') {
                    i += 1;
                }
                let word = &query[start..i];
                if OPERATOR_WORDS.iter().any(|w| word.eq_ignore_ascii_case(w)) {
                    add_operator(&mut stack, limit)?;
                }
            }
            _ => {}
        }
    }
    while stack.len() > 1 {
        close(&mut stack, limit)?;
    }
    if stack[0].depth() > limit {
        return Err(too_deep(limit));
    }
    Ok(())
}

fn add_operator(stack: &mut [Level], limit: usize) -> Result<(), String> {
    let top = stack.last_mut().expect("the root level is never popped");
    if top.counts_operators() {
        top.operators += 1;
        if top.depth() > limit {
            return Err(too_deep(limit));
        }
    }
    Ok(())
}

fn close(stack: &mut Vec<Level>, limit: usize) -> Result<(), String> {
    let done = stack.pop().expect("checked by the caller");
    let parent = stack.last_mut().expect("the root level is never popped");
    parent.deepest_child = parent.deepest_child.max(done.depth());
    if parent.depth() > limit {
        return Err(too_deep(limit));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn depth_ok(q: &str, limit: usize) -> bool {
        check_nesting_within(q, limit).is_ok()
    }

    #[test]
    fn real_queries_pass() {
        for q in [
            "up",
            r#"histogram_quantile(0.99, sum by (le, route) (rate(http_server_duration_milliseconds_bucket{service_name="cart"}[5m])))"#,
            r#"sum(rate(a{x=~"(((((((("}[5m])) / sum(rate(b[5m])) * 100 > 5 and on() vector(1)"#,
            "max_over_time((g * 2)[5m:1m] offset 1h)",
            "1 - - 1",
        ] {
            check_nesting(q).unwrap_or_else(|e| panic!("{q}: {e}"));
        }
    }

    /// Regression: issue 14's inputs that overflowed the stack (SIGABRT).
    #[test]
    fn the_crash_inputs_are_refused() {
        let cases = [
            format!("{}up{}", "abs(".repeat(2000), ")".repeat(2000)),
            format!("{}up{}", "sum(".repeat(3000), ")".repeat(3000)),
            format!("1{}", "+1".repeat(4999)),
            "(".repeat(100_000),
            format!("{}1{}", "(".repeat(100_000), ")".repeat(100_000)),
            format!("x{}", "[1m:]".repeat(1000)),
            format!("1{}", " or 1".repeat(1000)),
            format!("1{}", "-".repeat(1000)),
        ];
        for q in &cases {
            let e = check_nesting(q).unwrap_err();
            assert!(e.contains("more than 256 levels"), "{e}");
        }
    }

    #[test]
    fn depth_counts_brackets_and_operator_chains() {
        // `abs(abs(x))`: root 1 + two call levels.
        assert!(depth_ok("abs(abs(x))", 3));
        assert!(!depth_ok("abs(abs(x))", 2));
        // `1+1+1`: root level with two operators.
        assert!(depth_ok("1+1+1", 3));
        assert!(!depth_ok("1+1+1", 2));
        // Operators of sibling brackets do not add up; nested ones do.
        assert!(depth_ok("(1+1) + (1+1)", 4));
        assert!(!depth_ok("((1+1) + 1) + 1", 4));
        // `==` and `>=` are one operator; matchers and durations count nothing.
        assert!(depth_ok("a == 1", 2));
        assert!(depth_ok("a >= 1", 2));
        assert!(depth_ok(r#"a{b="1",c!="2",d=~"3",e!~"4"}"#, 2));
        assert!(depth_ok("a[5m]", 3));
        // Keywords count whatever their case; identifiers that merely contain them do not.
        assert!(!depth_ok("a AND b Or c", 2));
        assert!(depth_ok("order_total + 1", 2));
    }

    #[test]
    fn strings_and_comments_do_not_count() {
        let parens = "(".repeat(500);
        assert!(check_nesting(&format!(r#"label_replace(up, "a", "{parens}", "b", "")"#)).is_ok());
        assert!(check_nesting(&format!("up{{a='{parens}'}}")).is_ok());
        assert!(check_nesting(&format!("up{{a=`{parens}`}}")).is_ok());
        assert!(check_nesting(&format!("up # {parens}\n+ 1")).is_ok());
        // An escaped quote does not end the string...
        assert!(check_nesting(&format!(r#"vector("\" {parens}")"#)).is_ok());
        // ...but the real closing quote does: what follows is code again.
        assert!(check_nesting(&format!(r#"vector("\\") {parens}"#)).is_err());
        // A comment ends at the line break.
        assert!(check_nesting(&format!("up # note\n{parens}")).is_err());
    }
}
