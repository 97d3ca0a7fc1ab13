//! Dashboards as TOML: a title and panels, each one query (a stats metric,
//! a PromQL expression, a trace search or a log query) and a view
//! (sparkline, table or bar). The Services screen draws one under its
//! service table; `dashboards/default.toml` is built in so the TUI works
//! from any directory, and `--dashboards DIR` replaces it.
//!
//! A malformed file is refused at start with the file, the line and the
//! field's path (`panel[2].view`): unknown fields are errors too, so a typo
//! is not a silently empty panel.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::error::TuiError;

/// The built-in default dashboard (`dashboards/default.toml`).
pub const DEFAULT_TOML: &str = include_str!("../../dashboards/default.toml");

/// A dashboard: panels drawn in a grid, in file order.
#[derive(Clone, Debug, PartialEq)]
pub struct Dashboard {
    /// Shown above the panels.
    pub title: String,
    /// The panels.
    pub panels: Vec<Panel>,
}

/// One panel: a title, what it shows, and how.
#[derive(Clone, Debug, PartialEq)]
pub struct Panel {
    /// The panel's title.
    pub title: String,
    /// Where its data comes from.
    pub query: PanelQuery,
    /// How it is drawn.
    pub view: View,
}

/// Where a panel's data comes from.
#[derive(Clone, Debug, PartialEq)]
pub enum PanelQuery {
    /// A per-service statistic of `/api/v1/stats` over the window.
    Stats(StatsMetric),
    /// A PromQL expression: a range query over the window for a sparkline,
    /// an instant query for a table or bars.
    PromQl(String),
    /// A trace search: the matching traces.
    Traces(TracesQuery),
    /// A full-text log query: the newest matching records.
    Logs(String),
}

/// The statistics a stats panel can show.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StatsMetric {
    /// Requests per second.
    Rate,
    /// Share of requests with status ERROR.
    ErrorRate,
    /// Median latency.
    P50,
    /// 99th percentile latency.
    P99,
}

/// A trace search panel's parameters.
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TracesQuery {
    /// Only this service's traces (all when absent).
    #[serde(default)]
    pub service: Option<String>,
    /// Only traces with a span holding all these tags.
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
    /// Only traces with a span at least this long (`100ms`).
    #[serde(default)]
    pub min_duration: Option<String>,
    /// At most this many (default 10).
    #[serde(default)]
    pub limit: Option<usize>,
}

/// How a panel is drawn.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum View {
    /// A sparkline per series over the window.
    Sparkline,
    /// Rows.
    Table,
    /// One bar per series or service.
    Bar,
}

// The file's shape: exactly one query field per panel, checked after parsing.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DashboardFile {
    title: String,
    #[serde(default)]
    panel: Vec<toml::Spanned<PanelFile>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PanelFile {
    title: String,
    // Spanned: errors found after parsing point at these fields' own lines.
    view: toml::Spanned<View>,
    stats: Option<StatsMetric>,
    promql: Option<String>,
    traces: Option<toml::Spanned<TracesQuery>>,
    logs: Option<String>,
}

impl Dashboard {
    /// Parses a dashboard from `text`; `file` names it in errors.
    ///
    /// # Errors
    /// [`TuiError::Dashboard`] naming the line and field: TOML syntax, an
    /// unknown or missing field, a bad value, a panel with no query or two,
    /// a view the query cannot be drawn as, a bad duration.
    pub fn parse(file: &Path, text: &str) -> Result<Dashboard, TuiError> {
        let error = |span: Option<std::ops::Range<usize>>, field: String, message: String| TuiError::Dashboard {
            file: file.to_path_buf(),
            line: span.map_or(1, |s| line_of(text, s.start)),
            field,
            message,
        };
        let de = toml::Deserializer::parse(text)
            .map_err(|e| error(e.span(), "(syntax)".into(), e.message().trim().to_string()))?;
        let parsed: DashboardFile = serde_path_to_error::deserialize(de).map_err(|e| {
            // `toml::Spanned` shows in the path as a private field: drop it.
            let field = e.path().to_string().replace(".$__serde_spanned_private_value", "");
            let inner = e.into_inner();
            error(inner.span(), field, inner.message().trim().to_string())
        })?;
        let mut panels = Vec::with_capacity(parsed.panel.len());
        for (i, spanned) in parsed.panel.into_iter().enumerate() {
            let span = Some(spanned.span());
            let p = spanned.into_inner();
            let at = |field: &str| format!("panel[{i}].{field}");
            let mut queries = Vec::new();
            if let Some(metric) = p.stats {
                queries.push(PanelQuery::Stats(metric));
            }
            if let Some(expr) = p.promql {
                queries.push(PanelQuery::PromQl(expr));
            }
            if let Some(q) = p.traces {
                let traces_span = Some(q.span());
                let q = q.into_inner();
                if let Some(d) = &q.min_duration {
                    if crate::format::parse_duration(d).is_none() {
                        return Err(error(
                            traces_span,
                            at("traces.min_duration"),
                            format!("{d:?} is not a duration (100ms, 2s)"),
                        ));
                    }
                }
                queries.push(PanelQuery::Traces(q));
            }
            if let Some(text) = p.logs {
                queries.push(PanelQuery::Logs(text));
            }
            let query = match queries.len() {
                1 => queries.remove(0),
                0 => return Err(error(span, format!("panel[{i}]"), "needs one of stats, promql, traces, logs".into())),
                _ => {
                    return Err(error(
                        span,
                        format!("panel[{i}]"),
                        "has more than one of stats, promql, traces, logs".into(),
                    ))
                }
            };
            let view_span = Some(p.view.span());
            let view = p.view.into_inner();
            let drawable = match (&query, view) {
                (PanelQuery::Logs(_), View::Table) | (PanelQuery::Traces(_), View::Table | View::Bar) => true,
                (PanelQuery::Logs(_) | PanelQuery::Traces(_), _) => false,
                (PanelQuery::Stats(_) | PanelQuery::PromQl(_), _) => true,
            };
            if !drawable {
                return Err(error(view_span, at("view"), format!("{:?} cannot be drawn as {:?}", kind(&query), view)));
            }
            panels.push(Panel { title: p.title, query, view });
        }
        Ok(Dashboard { title: parsed.title, panels })
    }

    /// The built-in default dashboard.
    pub fn builtin() -> Dashboard {
        Dashboard::parse(Path::new("<default>/default.toml"), DEFAULT_TOML).expect("the built-in dashboard parses")
    }

    /// Every `*.toml` of `dir`, by file name; `default.toml` first.
    ///
    /// # Errors
    /// The first malformed file ([`TuiError::Dashboard`]), an unreadable
    /// folder or file, or a folder without dashboards.
    pub fn load_dir(dir: &Path) -> Result<Vec<Dashboard>, TuiError> {
        let entries = std::fs::read_dir(dir).map_err(TuiError::io(format!("reading {}", dir.display())))?;
        let mut files: Vec<PathBuf> = entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "toml"))
            .collect();
        files.sort_by_key(|p| (p.file_name() != Some("default.toml".as_ref()), p.clone()));
        if files.is_empty() {
            return Err(TuiError::NoDashboard(dir.to_path_buf()));
        }
        files
            .iter()
            .map(|file| {
                let text =
                    std::fs::read_to_string(file).map_err(TuiError::io(format!("reading {}", file.display())))?;
                Dashboard::parse(file, &text)
            })
            .collect()
    }
}

fn kind(query: &PanelQuery) -> &'static str {
    match query {
        PanelQuery::Stats(_) => "stats",
        PanelQuery::PromQl(_) => "promql",
        PanelQuery::Traces(_) => "traces",
        PanelQuery::Logs(_) => "logs",
    }
}

/// The 1-based line holding byte `offset` of `text`.
fn line_of(text: &str, offset: usize) -> usize {
    text.as_bytes()[..offset.min(text.len())].iter().filter(|b| **b == b'\n').count() + 1
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(name: &str) -> (PathBuf, String) {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/dashboards").join(name);
        let text = std::fs::read_to_string(&path).unwrap();
        (path, text)
    }

    fn error_of(name: &str) -> (usize, String, String) {
        let (path, text) = fixture(name);
        match Dashboard::parse(&path, &text).unwrap_err() {
            TuiError::Dashboard { file, line, field, message } => {
                assert_eq!(file, path);
                (line, field, message)
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn test_builtin_default_parses() {
        let d = Dashboard::builtin();
        assert_eq!(d.title, "Services");
        assert!(d.panels.len() >= 4);
        let kinds: Vec<&str> = d.panels.iter().map(|p| kind(&p.query)).collect();
        for k in ["stats", "promql", "traces", "logs"] {
            assert!(kinds.contains(&k), "the default shows every kind of panel: {kinds:?}");
        }
    }

    #[test]
    fn test_unknown_view_names_line_and_field() {
        let (line, field, message) = error_of("bad_view.toml");
        assert_eq!((line, field.as_str()), (11, "panel[1].view"));
        assert!(message.contains("unknown variant `pie`"), "{message}");
    }

    #[test]
    fn test_misspelt_field_is_refused() {
        let (line, field, message) = error_of("unknown_field.toml");
        assert_eq!(line, 6, "the line of the misspelt key");
        assert_eq!(field, "panel[0].veiw");
        assert!(message.contains("unknown field `veiw`"), "{message}");
    }

    #[test]
    fn test_missing_title() {
        let (_, field, message) = error_of("missing_title.toml");
        assert_eq!(field, "panel[0]");
        assert!(message.contains("missing field `title`"), "{message}");
    }

    #[test]
    fn test_panel_without_query() {
        let (line, field, message) = error_of("no_query.toml");
        assert_eq!((line, field.as_str()), (3, "panel[0]"));
        assert!(message.contains("needs one of"), "{message}");
    }

    #[test]
    fn test_logs_cannot_be_a_sparkline() {
        let (line, field, _) = error_of("logs_sparkline.toml");
        assert_eq!((line, field.as_str()), (6, "panel[0].view"), "the line of the view itself");
    }

    #[test]
    fn test_syntax_error_has_its_line() {
        let (line, field, _) = error_of("syntax.toml");
        assert_eq!((line, field.as_str()), (5, "(syntax)"));
    }

    #[test]
    fn test_bad_duration() {
        let (line, field, message) = error_of("bad_duration.toml");
        assert_eq!((line, field.as_str()), (5, "panel[0].traces.min_duration"));
        assert!(message.contains("\"soon\""), "{message}");
    }

    #[test]
    fn test_error_display_names_file_line_field() {
        let (path, text) = fixture("bad_view.toml");
        let shown = Dashboard::parse(&path, &text).unwrap_err().to_string();
        assert!(shown.starts_with(&format!("{}:11: panel[1].view: ", path.display())), "{shown}");
    }

    #[test]
    fn test_load_dir_puts_default_first_and_refuses_empty() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../dashboards");
        let all = Dashboard::load_dir(&dir).unwrap();
        assert_eq!(all[0], Dashboard::builtin());
        let empty = tempfile::tempdir().unwrap();
        assert!(matches!(Dashboard::load_dir(empty.path()), Err(TuiError::NoDashboard(_))));
    }

    #[test]
    fn test_grafana_dashboard_uses_seismo_jaeger_and_prometheus() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../dashboards/grafana/seismo-overview.json");
        let json: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
        let inputs: Vec<&str> =
            json["__inputs"].as_array().unwrap().iter().map(|i| i["pluginId"].as_str().unwrap()).collect();
        assert_eq!(inputs, ["jaeger", "prometheus"]);
        let panels = json["panels"].as_array().unwrap();
        assert!(panels.len() >= 5);
        for panel in panels {
            let uid = panel["datasource"]["uid"].as_str().unwrap();
            assert!(uid == "${DS_JAEGER}" || uid == "${DS_PROMETHEUS}", "{panel}");
            assert!(!panel["targets"].as_array().unwrap().is_empty(), "{panel}");
        }
    }
}
