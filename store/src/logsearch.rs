//! Log search: what a log document holds in the index, and how a user's query
//! (tantivy syntax) becomes an index query.
//!
//! Every predicate of a [`LogQuery`] is answered by the index — words and
//! phrases by the `text` field, `key:value` by exact `kv` terms, service and
//! trace id by their own exact fields, severity and time by fast-field ranges —
//! and the newest matches come out of a top-k collector ordered by the `time`
//! fast field. Parquet is read only for the rows returned.
//!
//! Query language: tantivy's grammar (`word`, `"a phrase"`, `AND`/`OR`/`NOT`,
//! `+`/`-`, parentheses, `field:value`, `field: IN [a b]`, `*`), with these
//! meanings:
//! - a bare word or phrase searches the log body and every attribute value;
//!   `body:`/`text:` say so explicitly;
//! - `service:`/`service.name:`, `trace_id:`/`traceId:`, `severity:` (a level
//!   name like `ERROR` or a number; ranges like `severity:[WARN TO *]`) filter
//!   on those fields;
//! - any other `key:value` matches a log attribute exactly (`http.route:"/cart"`;
//!   quote values that hold `/` or spaces);
//! - terms without an operator are all required (grep-like), unlike tantivy's
//!   default OR.
//!
//! Nesting is bounded before tantivy's grammar sees `q`: the grammar, the
//! compiler below and tantivy's query execution all recurse once per
//! parenthesized group or `NOT`, and 800 nested parentheses (a 1.6 KB URL)
//! overflowed the stack and aborted the process. See [`check_nesting`].

use std::ops::Bound;

use tantivy::query::{
    AllQuery, BooleanQuery, EmptyQuery, Occur, PhrasePrefixQuery, PhraseQuery, Query, RangeQuery, TermQuery,
};
use tantivy::query_grammar::{self, Delimiter, UserInputAst, UserInputBound, UserInputLeaf, UserInputLiteral};
use tantivy::schema::IndexRecordOption;
use tantivy::tokenizer::{LowerCaser, RemoveLongFilter, SimpleTokenizer, TextAnalyzer};
use tantivy::Term;

use crate::error::{Result, StoreError};
use crate::ids::TraceId;
use crate::model::LogRow;
use crate::tags;
use crate::textindex::{Doc, Fields, LogFields};

/// A log search. Results are the `limit` newest matching records, newest first.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct LogQuery {
    /// Full-text query (see the module docs); `None` matches every record.
    pub text: Option<String>,
    pub service: Option<String>,
    /// Inclusive severity-number ranges; a record matches when it falls in any.
    pub severities: Vec<(i32, i32)>,
    pub trace_id: Option<TraceId>,
    /// Inclusive bounds on the record's time, ns since the epoch.
    pub start_ns: Option<i64>,
    pub end_ns: Option<i64>,
    /// Maximum number of records; 0 means [`LogQuery::DEFAULT_LIMIT`].
    pub limit: usize,
}

impl LogQuery {
    pub const DEFAULT_LIMIT: usize = 100;

    pub fn effective_limit(&self) -> usize {
        if self.limit == 0 {
            Self::DEFAULT_LIMIT
        } else {
            self.limit
        }
    }
}

/// OTLP severity levels: name and the first of its four severity numbers.
const LEVELS: [(&str, i32); 6] = [("TRACE", 1), ("DEBUG", 5), ("INFO", 9), ("WARN", 13), ("ERROR", 17), ("FATAL", 21)];

/// The severity-number range a level names: `ERROR` is 17..=20, `ERROR3` is
/// 19, `WARNING` is `WARN`, a number is itself. Case-insensitive.
pub fn severity_range(name: &str) -> Option<(i32, i32)> {
    let upper = name.trim().to_ascii_uppercase();
    if let Ok(n) = upper.parse::<i32>() {
        return (1..=24).contains(&n).then_some((n, n));
    }
    let upper = match upper.as_str() {
        "WARNING" => "WARN".to_string(),
        "CRITICAL" => "FATAL".to_string(),
        "ERR" => "ERROR".to_string(),
        _ => upper,
    };
    LEVELS.iter().find_map(|(level, first)| {
        let rest = upper.strip_prefix(level)?;
        match rest {
            "" => Some((*first, first + 3)),
            "2" | "3" | "4" => {
                let n = first + rest.parse::<i32>().ok()? - 1;
                Some((n, n))
            }
            _ => None,
        }
    })
}

/// The severity a record is indexed with: its number, or when the SDK left it
/// unspecified, the number its severity text names.
fn effective_severity(row: &LogRow) -> i64 {
    if row.severity_number > 0 {
        return row.severity_number as i64;
    }
    severity_range(&row.severity_text).map_or(0, |(lo, _)| lo as i64)
}

/// Fills the index document of one log record.
pub(crate) fn fill_doc(doc: &mut Doc, row: &LogRow) {
    let trace = row.trace_id.map(|t| t.to_string());
    doc.log(row.time_unix_nano, effective_severity(row), &row.service_name, trace.as_deref());
    doc.text(&row.body.to_text());
    for kv in &row.attributes {
        let v = kv.value.to_text();
        doc.text(&v);
        let t = tags::term(&kv.key, &v);
        if t.len() <= tags::MAX_TERM_BYTES {
            doc.kv(&t);
        }
    }
}

/// The index query answering `q` (everything but the limit).
///
/// # Errors
/// `InvalidQuery` naming the problem when `q.text` does not parse or uses
/// something the log index cannot answer.
pub(crate) fn compile(q: &LogQuery, fields: &Fields) -> Result<Box<dyn Query>> {
    let f = fields.log.ok_or_else(|| StoreError::Corrupt("log index without log fields".into()))?;
    let mut must: Vec<(Occur, Box<dyn Query>)> = Vec::new();
    if let Some(text) = q.text.as_deref().filter(|t| !t.trim().is_empty()) {
        must.push((Occur::Must, parse_text_query(text, fields, &f)?));
    }
    if let Some(s) = &q.service {
        must.push((Occur::Must, exact(f.service, s)));
    }
    if let Some(t) = &q.trace_id {
        must.push((Occur::Must, exact(f.trace, &t.to_string())));
    }
    if !q.severities.is_empty() {
        let any: Vec<(Occur, Box<dyn Query>)> =
            q.severities.iter().map(|&(lo, hi)| (Occur::Should, severity_between(&f, lo, hi))).collect();
        must.push((Occur::Must, Box::new(BooleanQuery::new(any))));
    }
    if q.start_ns.is_some() || q.end_ns.is_some() {
        let bound = |v: Option<i64>| v.map_or(Bound::Unbounded, |t| Bound::Included(Term::from_field_i64(f.time, t)));
        must.push((Occur::Must, Box::new(RangeQuery::new(bound(q.start_ns), bound(q.end_ns)))));
    }
    Ok(match must.len() {
        0 => Box::new(AllQuery),
        1 => must.pop().expect("one clause").1,
        _ => Box::new(BooleanQuery::new(must)),
    })
}

fn exact(field: tantivy::schema::Field, value: &str) -> Box<dyn Query> {
    Box::new(TermQuery::new(Term::from_field_text(field, value), IndexRecordOption::Basic))
}

fn severity_between(f: &LogFields, lo: i32, hi: i32) -> Box<dyn Query> {
    Box::new(RangeQuery::new(
        Bound::Included(Term::from_field_i64(f.severity, lo as i64)),
        Bound::Included(Term::from_field_i64(f.severity, hi as i64)),
    ))
}

fn invalid(msg: impl Into<String>) -> StoreError {
    StoreError::InvalidQuery(msg.into())
}

/// The most groups a log query `q` may open: `(` characters and `NOT`
/// operators, each a level of recursion in tantivy's grammar and in the
/// compiled query. Far beyond what a person types; well inside the stack of
/// the threads that search.
pub(crate) const MAX_QUERY_GROUPS: usize = 128;

/// Checks that `q` opens at most [`MAX_QUERY_GROUPS`] groups.
///
/// The count is of every `(` and every `NOT` word, wherever they stand, not
/// of the depth: deciding which parentheses sit inside a phrase or a regex
/// would mean re-implementing tantivy's grammar, and a mistake there would
/// let a deep query through. The total bounds the depth from above, and only
/// a query with more than [`MAX_QUERY_GROUPS`] parentheses is refused.
///
/// # Errors
/// `InvalidQuery` naming the limit.
pub(crate) fn check_nesting(q: &str) -> Result<()> {
    let parens = q.bytes().filter(|&c| c == b'(').count();
    let nots = q.split(|c: char| !c.is_alphanumeric()).filter(|w| *w == "NOT").count();
    if parens + nots > MAX_QUERY_GROUPS {
        return Err(invalid(format!(
            "q nests too deeply: it opens {} groups (parentheses and NOT), more than the limit of {MAX_QUERY_GROUPS}",
            parens + nots
        )));
    }
    Ok(())
}

/// Parses a user's full-text query with tantivy's grammar and maps it onto
/// the log index's fields.
fn parse_text_query(text: &str, fields: &Fields, f: &LogFields) -> Result<Box<dyn Query>> {
    check_nesting(text)?;
    let (ast, errors) = query_grammar::parse_query_lenient(text);
    if let Some(e) = errors.first() {
        return Err(invalid(format!("cannot parse q at character {}: {}", e.pos, e.message)));
    }
    let words = TextAnalyzer::builder(SimpleTokenizer::default())
        .filter(RemoveLongFilter::limit(40))
        .filter(LowerCaser)
        .build();
    let mut c = Compiler { fields, log: f, words };
    c.ast(&ast)
}

struct Compiler<'a> {
    fields: &'a Fields,
    log: &'a LogFields,
    words: TextAnalyzer,
}

/// What a `field:` prefix in a query addresses.
enum Target<'a> {
    Text,
    Service,
    Trace,
    Severity,
    Attribute(&'a str),
}

fn target(field: Option<&str>) -> Target<'_> {
    match field {
        None | Some("body") | Some("text") => Target::Text,
        Some("service") | Some("service.name") | Some("serviceName") => Target::Service,
        Some("trace_id") | Some("traceId") | Some("traceID") => Target::Trace,
        Some("severity") | Some("severity_text") | Some("severityText") | Some("level") => Target::Severity,
        Some(key) => Target::Attribute(key),
    }
}

impl Compiler<'_> {
    fn ast(&mut self, ast: &UserInputAst) -> Result<Box<dyn Query>> {
        match ast {
            UserInputAst::Leaf(leaf) => self.leaf(leaf),
            UserInputAst::Boost(inner, _) => self.ast(inner),
            UserInputAst::Clause(clauses) => {
                if clauses.is_empty() {
                    return Ok(Box::new(AllQuery));
                }
                // Grep-like default: a clause without an operator is required,
                // unless the clause uses OR, which the grammar marks as Should.
                let mut out: Vec<(Occur, Box<dyn Query>)> = Vec::with_capacity(clauses.len());
                for (occur, sub) in clauses {
                    let occur = match occur {
                        Some(query_grammar::Occur::Must) | None => Occur::Must,
                        Some(query_grammar::Occur::Should) => Occur::Should,
                        Some(query_grammar::Occur::MustNot) => Occur::MustNot,
                    };
                    out.push((occur, self.ast(sub)?));
                }
                // A clause of only exclusions means "everything except".
                if out.iter().all(|(o, _)| *o == Occur::MustNot) {
                    out.push((Occur::Must, Box::new(AllQuery)));
                }
                Ok(Box::new(BooleanQuery::new(out)))
            }
        }
    }

    fn leaf(&mut self, leaf: &UserInputLeaf) -> Result<Box<dyn Query>> {
        match leaf {
            UserInputLeaf::All => Ok(Box::new(AllQuery)),
            UserInputLeaf::Literal(lit) => self.literal(lit),
            UserInputLeaf::Set { field, elements } => {
                let mut any: Vec<(Occur, Box<dyn Query>)> = Vec::with_capacity(elements.len());
                for e in elements {
                    let lit = UserInputLiteral {
                        field_name: field.clone(),
                        phrase: e.clone(),
                        delimiter: Delimiter::None,
                        slop: 0,
                        prefix: false,
                    };
                    any.push((Occur::Should, self.literal(&lit)?));
                }
                Ok(Box::new(BooleanQuery::new(any)))
            }
            UserInputLeaf::Range { field, lower, upper } => match target(field.as_deref()) {
                Target::Severity => {
                    let lo = match lower {
                        UserInputBound::Unbounded => 1,
                        UserInputBound::Inclusive(v) => severity_bound(v)?.0,
                        UserInputBound::Exclusive(v) => severity_bound(v)?.1 + 1,
                    };
                    let hi = match upper {
                        UserInputBound::Unbounded => 24,
                        UserInputBound::Inclusive(v) => severity_bound(v)?.1,
                        UserInputBound::Exclusive(v) => severity_bound(v)?.0 - 1,
                    };
                    Ok(severity_between(self.log, lo, hi))
                }
                _ => Err(invalid(format!(
                    "range queries are supported on severity only, not on {:?}",
                    field.as_deref().unwrap_or("text")
                ))),
            },
            UserInputLeaf::Exists { field } => Err(invalid(format!("exists queries ({field}:*) are not supported"))),
            UserInputLeaf::Regex { .. } => Err(invalid("regular expressions are not supported in q")),
        }
    }

    fn literal(&mut self, lit: &UserInputLiteral) -> Result<Box<dyn Query>> {
        let value = lit.phrase.as_str();
        match target(lit.field_name.as_deref()) {
            Target::Text => self.words_query(value, lit.slop, lit.prefix),
            Target::Service => Ok(exact(self.log.service, value)),
            Target::Trace => {
                let id: TraceId =
                    value.parse().map_err(|_| invalid(format!("trace_id {value:?} is not a 32-digit hex trace id")))?;
                Ok(exact(self.log.trace, &id.to_string()))
            }
            Target::Severity => {
                let (lo, hi) = severity_bound(value)?;
                Ok(severity_between(self.log, lo, hi))
            }
            Target::Attribute(key) => {
                if lit.prefix {
                    return Err(invalid(format!("prefix queries on attributes ({key}:{value}*) are not supported")));
                }
                Ok(exact(self.fields.kv, &tags::term(key, value)))
            }
        }
    }

    /// A word is a term query; several words (a phrase, or text the tokenizer
    /// splits such as `connection-refused`) must appear in that order.
    fn words_query(&mut self, text: &str, slop: u32, prefix: bool) -> Result<Box<dyn Query>> {
        let mut terms = Vec::new();
        let mut stream = self.words.token_stream(text);
        while let Some(tok) = stream.next() {
            terms.push((tok.position, Term::from_field_text(self.fields.text, &tok.text)));
        }
        Ok(match (terms.len(), prefix) {
            // Punctuation only: nothing can match it.
            (0, _) => Box::new(EmptyQuery),
            (1, false) => Box::new(TermQuery::new(terms.remove(0).1, IndexRecordOption::Basic)),
            (_, true) => Box::new(PhrasePrefixQuery::new_with_offset(terms)),
            (_, false) => {
                let mut q = PhraseQuery::new_with_offset(terms);
                q.set_slop(slop);
                Box::new(q)
            }
        })
    }
}

fn severity_bound(v: &str) -> Result<(i32, i32)> {
    severity_range(v).ok_or_else(|| {
        invalid(format!("unknown severity {v:?}: use TRACE, DEBUG, INFO, WARN, ERROR, FATAL or a number 1-24"))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{AttrValue, KeyValue};
    use crate::textindex::{schema, IndexKind, TextIndex, TextIndexWriter};

    #[test]
    fn severity_names_map_to_otlp_ranges() {
        assert_eq!(severity_range("error"), Some((17, 20)));
        assert_eq!(severity_range("WARNING"), Some((13, 16)));
        assert_eq!(severity_range("INFO3"), Some((11, 11)));
        assert_eq!(severity_range("9"), Some((9, 9)));
        assert_eq!(severity_range("25"), None);
        assert_eq!(severity_range("LOUD"), None);
        assert_eq!(severity_range("ERROR5"), None);
    }

    fn log(time: i64, severity: i32, service: &str, body: &str, attrs: &[(&str, &str)]) -> LogRow {
        LogRow {
            time_unix_nano: time,
            observed_time_unix_nano: time,
            severity_number: severity,
            severity_text: String::new(),
            body: AttrValue::Str(body.into()),
            service_name: service.into(),
            trace_id: (time == 3).then(|| "0af7651916cd43dd8448eb211c80319c".parse().unwrap()),
            span_id: None,
            flags: 0,
            event_name: String::new(),
            attributes: attrs
                .iter()
                .map(|(k, v)| KeyValue { key: k.to_string(), value: AttrValue::Str(v.to_string()) })
                .collect(),
            resource_attributes: vec![],
            scope_name: String::new(),
            scope_version: String::new(),
            dropped_attributes_count: 0,
        }
    }

    /// Indexes five records in RAM and returns the rows `q` finds, newest first.
    fn search(q: LogQuery) -> Result<Vec<u32>> {
        let rows = [
            log(1, 9, "cart", "user 42 added item to cart", &[("http.route", "/cart")]),
            log(2, 17, "cart", "connection refused by redis", &[("db.system", "redis")]),
            log(3, 17, "checkout", "payment declined: card expired", &[]),
            log(4, 13, "checkout", "retrying connection to payment gateway", &[("attempt", "2")]),
            log(5, 21, "cart", "redis connection pool exhausted, refused", &[]),
        ];
        let (mut w, index) = TextIndexWriter::create_in_ram(IndexKind::Logs).unwrap();
        for (i, r) in rows.iter().enumerate() {
            w.add(i as u64, |d| fill_doc(d, r)).unwrap();
        }
        w.commit().unwrap();
        let idx = TextIndex::from_index(index).unwrap();
        let query = compile(&q, &schema(IndexKind::Logs).1)?;
        Ok(idx.newest_rows(&*query, q.effective_limit()).unwrap().into_iter().map(|(_, r)| r).collect())
    }

    fn text(q: &str) -> LogQuery {
        LogQuery { text: Some(q.into()), ..Default::default() }
    }

    #[test]
    fn words_phrases_and_operators() {
        assert_eq!(search(text("connection")).unwrap(), vec![4, 3, 1]);
        // Bare words are all required.
        assert_eq!(search(text("connection refused")).unwrap(), vec![4, 1]);
        // A phrase keeps word order.
        assert_eq!(search(text("\"connection refused\"")).unwrap(), vec![1]);
        assert_eq!(search(text("redis OR payment")).unwrap(), vec![4, 3, 2, 1]);
        assert_eq!(search(text("connection AND NOT redis")).unwrap(), vec![3]);
        assert_eq!(search(text("-connection")).unwrap(), vec![2, 0]);
        assert_eq!(search(text("(declined OR exhausted) AND card")).unwrap(), vec![2]);
        // Case-insensitive words; attribute values are text too.
        assert_eq!(search(text("REDIS")).unwrap(), vec![4, 1]);
        assert_eq!(search(text("cart")).unwrap(), vec![0]);
    }

    #[test]
    fn fields_address_attributes_service_trace_and_severity() {
        assert_eq!(search(text("http.route:\"/cart\"")).unwrap(), vec![0]);
        assert_eq!(search(text("db.system:redis AND connection")).unwrap(), vec![1]);
        assert_eq!(search(text("service:checkout")).unwrap(), vec![3, 2]);
        assert_eq!(search(text("severity:ERROR")).unwrap(), vec![2, 1]);
        assert_eq!(search(text("severity:[WARN TO *]")).unwrap(), vec![4, 3, 2, 1]);
        assert_eq!(search(text("trace_id:0af7651916cd43dd8448eb211c80319c")).unwrap(), vec![2]);
        assert_eq!(search(text("attempt: IN [2 3]")).unwrap(), vec![3]);
    }

    #[test]
    fn structured_filters_and_limit() {
        let q = LogQuery { service: Some("cart".into()), severities: vec![(17, 24)], ..Default::default() };
        assert_eq!(search(q).unwrap(), vec![4, 1]);
        let q = LogQuery { start_ns: Some(2), end_ns: Some(4), ..Default::default() };
        assert_eq!(search(q).unwrap(), vec![3, 2, 1]);
        let q = LogQuery { trace_id: Some("0af7651916cd43dd8448eb211c80319c".parse().unwrap()), ..Default::default() };
        assert_eq!(search(q).unwrap(), vec![2]);
        let q = LogQuery { limit: 2, ..Default::default() };
        assert_eq!(search(q).unwrap(), vec![4, 3]);
    }

    #[test]
    fn malformed_queries_name_the_problem() {
        let e = search(text("(connection")).unwrap_err().to_string();
        assert!(e.contains("cannot parse q"), "{e}");
        let e = search(text("severity:LOUD")).unwrap_err().to_string();
        assert!(e.contains("unknown severity \"LOUD\""), "{e}");
        let e = search(text("trace_id:xyz")).unwrap_err().to_string();
        assert!(e.contains("not a 32-digit hex trace id"), "{e}");
        let e = search(text("status:/5.*/")).unwrap_err().to_string();
        assert!(e.contains("regular expressions"), "{e}");
    }

    /// Regression (issue 14): 800 nested parentheses in `q` overflowed the
    /// stack in tantivy's grammar and aborted the process.
    #[test]
    fn deep_nesting_is_refused_before_parsing() {
        for q in [
            format!("{}redis{}", "(".repeat(800), ")".repeat(800)),
            "(".repeat(100_000),
            format!("{}redis", "NOT ".repeat(1000)),
            // Quotes do not hide parentheses from the count.
            format!("\"{}\"", ")".repeat(5)) + &"(".repeat(200),
        ] {
            let e = search(text(&q)).unwrap_err().to_string();
            assert!(e.contains("q nests too deeply") && e.contains("limit of 128"), "{e}");
        }
        // The deepest accepted query parses, compiles and runs (on a test
        // thread's stack, which is smaller than a search thread's).
        let deepest = format!("{}connection{}", "(".repeat(MAX_QUERY_GROUPS), ")".repeat(MAX_QUERY_GROUPS));
        assert_eq!(search(text(&deepest)).unwrap(), vec![4, 3, 1]);
        let negations = format!("{}connection", "NOT ".repeat(MAX_QUERY_GROUPS));
        assert_eq!(search(text(&negations)).unwrap(), vec![4, 3, 1], "an even number of NOTs cancels out");
        // Words that merely contain NOT, and lower-case not, are words.
        assert!(check_nesting(&"NOTE knot not ".repeat(200)).is_ok());
    }
}
