//! `/hunt`: query stored events; paginated, exportable as CSV, saveable.

use super::layout::{render, Nav};
use super::*;
use crate::store::{Role, SavedHunt};
use crate::time::{format_input, format_ts, parse_input};
use crate::urlenc;
use axum::extract::{Form, Query, State};
use axum::http::header;
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;
use vigil_proto::event::EventKind;
use vigil_proto::query::{EventCursor, EventFilter};

/// Events per result page.
pub const PAGE_SIZE: usize = 100;
/// Most rows in one CSV export.
pub const CSV_LIMIT: usize = 10_000;

/// The hunt form, as the query string carries it.
#[derive(Debug, Default, Clone, Deserialize)]
pub struct HuntQuery {
    /// Hostname or 16-hex-digit host id.
    #[serde(default)]
    pub host: String,
    #[serde(default)]
    pub user: String,
    /// Substring of exe or argv.
    #[serde(default)]
    pub process: String,
    /// Peer IP address.
    #[serde(default)]
    pub peer: String,
    #[serde(default)]
    pub port: String,
    /// Event kind name (`process_start`…), or empty for all.
    #[serde(default)]
    pub kind: String,
    /// `YYYY-MM-DDTHH:MM` UTC.
    #[serde(default)]
    pub since: String,
    #[serde(default)]
    pub until: String,
    /// Pagination cursor `host:ts:seq`.
    #[serde(default)]
    pub after: String,
}

impl HuntQuery {
    /// The search fields (no cursor) as a query string.
    pub fn to_query(&self) -> String {
        urlenc::query(&[
            ("host", self.host.clone()),
            ("user", self.user.clone()),
            ("process", self.process.clone()),
            ("peer", self.peer.clone()),
            ("port", self.port.clone()),
            ("kind", self.kind.clone()),
            ("since", self.since.clone()),
            ("until", self.until.clone()),
        ])
    }

    fn is_empty(&self) -> bool {
        self.to_query().is_empty()
    }
}

fn bad(msg: &str) -> UiError {
    UiError::BadRequest(msg.into())
}

/// Turn the form into an [`EventFilter`], resolving hostnames.
pub fn to_filter(
    state: &ConsoleState,
    q: &HuntQuery,
    limit: usize,
) -> Result<EventFilter, UiError> {
    let mut f = EventFilter {
        limit,
        ..Default::default()
    };
    let host = q.host.trim();
    if !host.is_empty() {
        let by_name = state
            .read
            .hosts()?
            .into_iter()
            .find(|h| h.hostname == host)
            .map(|h| h.id);
        f.host = Some(match by_name {
            Some(id) => id,
            None => host
                .parse()
                .map_err(|_| bad("Unknown host: give a hostname or a 16-digit host id."))?,
        });
    }
    let nonempty = |s: &str| (!s.trim().is_empty()).then(|| s.trim().to_string());
    f.user = nonempty(&q.user);
    f.process = nonempty(&q.process);
    if let Some(p) = nonempty(&q.peer) {
        f.peer = Some(p.parse().map_err(|_| bad("Peer must be an IP address."))?);
    }
    if let Some(p) = nonempty(&q.port) {
        f.port = Some(
            p.parse()
                .map_err(|_| bad("Port must be a number from 0 to 65535."))?,
        );
    }
    if let Some(k) = nonempty(&q.kind) {
        f.kinds = vec![EventKind::from_name(&k).ok_or_else(|| bad("Unknown event kind."))?];
    }
    if let Some(s) = nonempty(&q.since) {
        f.since_ns = Some(
            parse_input(&s).ok_or_else(|| bad("From must look like 2026-11-23T14:00 (UTC)."))?,
        );
    }
    if let Some(s) = nonempty(&q.until) {
        f.until_ns =
            Some(parse_input(&s).ok_or_else(|| bad("To must look like 2026-11-23T15:00 (UTC)."))?);
    }
    if let Some(a) = nonempty(&q.after) {
        let mut it = a.split(':');
        let cursor = (|| {
            Some(EventCursor {
                host: it.next()?.parse().ok()?,
                ts_ns: it.next()?.parse().ok()?,
                seq: it.next()?.parse().ok()?,
            })
        })();
        f.after = Some(cursor.ok_or_else(|| bad("Bad page cursor."))?);
    }
    Ok(f)
}

fn form(q: &HuntQuery, now: u64) -> impl IntoView {
    let kinds = std::iter::once(("", "any kind"))
        .chain(EventKind::ALL.iter().map(|k| (k.name(), k.name())))
        .map(|(v, l)| view! { <option value=v selected={q.kind == v}>{l}</option> })
        .collect_view();
    view! {
        <form method="get" action="/hunt" class="hunt">
            <label>"Host" <input type="text" name="host" value=q.host.clone() placeholder="hostname or id"/></label>
            <label>"User" <input type="text" name="user" value=q.user.clone()/></label>
            <label>"Process" <input type="text" name="process" value=q.process.clone() placeholder="exe or argv contains"/></label>
            <label>"Peer" <input type="text" name="peer" value=q.peer.clone() placeholder="10.0.1.60"/></label>
            <label>"Port" <input type="text" name="port" value=q.port.clone() inputmode="numeric"/></label>
            <label>"Kind" <select name="kind">{kinds}</select></label>
            <label>"From (UTC)" <input type="datetime-local" name="since" value=q.since.clone() placeholder=format_input(now)/></label>
            <label>"To (UTC)" <input type="datetime-local" name="until" value=q.until.clone()/></label>
            <div class="formend"><button type="submit" class="primary">"Run hunt"</button></div>
        </form>
    }
}

/// Render the hunt page (form, results, saved hunts).
pub fn page(state: &ConsoleState, auth: &Authed, q: &HuntQuery) -> PageResult {
    let now = state.now();
    let names = hostnames(state)?;
    let results = if q.is_empty() {
        None
    } else {
        Some(
            to_filter(state, q, PAGE_SIZE)
                .and_then(|f| state.read.events(&f).map_err(UiError::from)),
        )
    };
    let results_view = match results {
        None => view! { <p class="muted">"Fill in any field and run the hunt. All set fields must match."</p> }.into_any(),
        Some(Err(UiError::BadRequest(msg))) => view! { <div class="flash err">{msg}</div> }.into_any(),
        Some(Err(e)) => return Err(e),
        Some(Ok(page)) => {
            let rows = page
                .events
                .iter()
                .map(|e| {
                    view! {
                        <tr>
                            <td class="mono nowrap">{format_ts(e.header.ts_ns)}</td>
                            <td><a href=format!("/hosts/{}", e.header.host)>{name_of(&names, e.header.host)}</a></td>
                            <td class="num">{e.header.seq}</td>
                            <td><span class="kind">{e.kind().name()}</span></td>
                            <td class="mono wrap">{describe(e)}</td>
                        </tr>
                    }
                })
                .collect_view();
            let base = q.to_query();
            let next = page.next.map(|c| {
                let href = format!("/hunt?{base}&after={}", urlenc::encode(&format!("{}:{}:{}", c.host, c.ts_ns, c.seq)));
                view! { <a href=href>"Next page →"</a> }
            });
            let first = (!q.after.is_empty()).then(|| view! { <a href=format!("/hunt?{base}")>"← First page"</a> });
            let save = auth.can(Role::Analyst).then(|| {
                view! {
                    <form method="post" action="/hunt/save" class="row">
                        {csrf_field(auth)}
                        <input type="hidden" name="query" value=base.clone()/>
                        <input type="text" name="name" maxlength="80" placeholder="Name this hunt" required/>
                        <button type="submit">"Save hunt"</button>
                    </form>
                }
            });
            view! {
                <div class="toolbar">
                    <strong>{format!("{} events{}", page.events.len(), if page.next.is_some() { " on this page" } else { "" })}</strong>
                    <a class="button" href=format!("/hunt.csv?{base}")>"Export CSV"</a>
                    <span class="spacer"></span>
                    {save}
                </div>
                <section class="panel flush">
                    <table class="dense">
                        <thead><tr><th>"Time"</th><th>"Host"</th><th>"Seq"</th><th>"Kind"</th><th>"Detail"</th></tr></thead>
                        <tbody>{rows}</tbody>
                    </table>
                </section>
                <div class="pager">{first}{next}</div>
            }
            .into_any()
        }
    };
    let saved = state
        .store
        .saved_hunts()?
        .into_iter()
        .map(|h| {
            view! {
                <li>
                    <a href=format!("/hunt?{}", h.query)>{h.name.clone()}</a>
                    <span class="muted">{format!(" · {} · {}", h.owner, format_ts(h.created_ns))}</span>
                </li>
            }
        })
        .collect_view();
    let body = view! {
        <h1>"Hunt"</h1>
        <div class="grid-side">
            <div>
                <section class="panel">{form(q, now)}</section>
                {results_view}
            </div>
            <section class="panel">
                <h2>"Saved hunts"</h2>
                <ul class="plain">{saved}</ul>
            </section>
        </div>
    };
    Ok(render("Hunt", Nav::Hunt, auth, body.into_any()))
}

/// `GET /hunt`.
pub async fn handler(
    State(state): State<ConsoleState>,
    auth: Authed,
    Query(q): Query<HuntQuery>,
) -> PageResult {
    off_runtime(move || page(&state, &auth, &q)).await
}

/// One CSV cell: quoted when needed, and formula-leading characters
/// neutralised so a spreadsheet never evaluates sensor-sourced text.
pub fn csv_cell(s: &str) -> String {
    let s = if s.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        format!("'{s}")
    } else {
        s.to_string()
    };
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s
    }
}

/// The whole hunt as CSV (up to [`CSV_LIMIT`] rows).
pub fn csv_body(state: &ConsoleState, q: &HuntQuery) -> Result<String, UiError> {
    let names = hostnames(state)?;
    let mut f = to_filter(state, q, 1000)?;
    let mut out = String::from("time_utc,host_id,hostname,seq,kind,detail\n");
    let mut rows = 0;
    loop {
        let page = state.read.events(&f)?;
        for e in &page.events {
            let cells = [
                format_ts(e.header.ts_ns),
                e.header.host.to_string(),
                name_of(&names, e.header.host),
                e.header.seq.to_string(),
                e.kind().name().to_string(),
                describe(e),
            ];
            out.push_str(
                &cells
                    .iter()
                    .map(|c| csv_cell(c))
                    .collect::<Vec<_>>()
                    .join(","),
            );
            out.push('\n');
            rows += 1;
            if rows >= CSV_LIMIT {
                return Ok(out);
            }
        }
        match page.next {
            Some(c) => f.after = Some(c),
            None => return Ok(out),
        }
    }
}

/// `GET /hunt.csv`.
pub async fn csv(
    State(state): State<ConsoleState>,
    auth: Authed,
    Query(q): Query<HuntQuery>,
) -> Result<Response, UiError> {
    let (s2, q2) = (state.clone(), q.clone());
    let body = off_runtime(move || csv_body(&s2, &q2)).await?;
    state.audit(&auth.user.name, "hunt.export_csv", "hunt", &q.to_query())?;
    Ok((
        [
            (header::CONTENT_TYPE, "text/csv; charset=utf-8"),
            (
                header::CONTENT_DISPOSITION,
                "attachment; filename=\"vigil-hunt.csv\"",
            ),
        ],
        body,
    )
        .into_response())
}

/// Fields of the save-hunt form.
#[derive(Debug, Deserialize)]
pub struct SaveForm {
    pub name: String,
    pub query: String,
}

/// `POST /hunt/save`.
pub async fn save(
    State(state): State<ConsoleState>,
    auth: Authed,
    Form(f): Form<SaveForm>,
) -> Result<Redirect, UiError> {
    auth.require(Role::Analyst)?;
    let name: String = f.name.trim().chars().take(80).collect();
    if name.is_empty() {
        return Err(bad("Give the hunt a name."));
    }
    // Re-parse and re-encode so only known fields are stored.
    let parsed: HuntQuery = serde_json::from_value(serde_json::Value::Object(
        f.query
            .split('&')
            .filter_map(|p| p.split_once('='))
            .map(|(k, v)| {
                (
                    urlenc::decode(k),
                    serde_json::Value::String(urlenc::decode(v)),
                )
            })
            .collect(),
    ))
    .map_err(|_| bad("Bad hunt query."))?;
    to_filter(&state, &parsed, 1)?;
    let query = parsed.to_query();
    let id = state.store.add_saved_hunt(SavedHunt {
        id: 0,
        name: name.clone(),
        query: query.clone(),
        owner: auth.user.name.clone(),
        created_ns: state.now(),
    })?;
    state.audit(
        &auth.user.name,
        "hunt.save",
        &format!("hunt:{id}"),
        &format!("{name}: {query}"),
    )?;
    Ok(Redirect::to(&format!("/hunt?{query}")))
}
