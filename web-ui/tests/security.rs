//! Handler-level security and behaviour tests: the real router, driven with
//! `tower::ServiceExt::oneshot`, over the demo fleet and the memory store.

use axum::body::Body;
use axum::http::{header, Request, Response, StatusCode};
use axum::Router;
use http_body_util::BodyExt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use tower::ServiceExt;
use vigil_proto::event::{HostId, Payload};
use vigil_proto::query::{AlertRecord, Severity, TriageState};
use vigil_testkit::demo::{demo_read_api_at, demo_state, EventWriter, DEMO_USERS};
use vigil_testkit::{MemoryConsoleStore, MemoryReadApi};
use vigil_web_ui::auth::{random_token, token_id, SESSION_TTL_NS};
use vigil_web_ui::security::CSP;
use vigil_web_ui::store::{ConsoleStore, Session};
use vigil_web_ui::{router, ConsoleState};

const NOW: u64 = 1_795_442_585_000_000_000;

/// A logged-in browser: cookie header value and the session's CSRF token.
struct Client {
    cookie: String,
    csrf: String,
}

fn session(store: &MemoryConsoleStore, user: &str, now: u64) -> Client {
    let token = random_token();
    let csrf = random_token();
    store
        .put_session(Session {
            id: token_id(&token),
            user: user.into(),
            csrf: csrf.clone(),
            created_ns: now,
            expires_ns: now + SESSION_TTL_NS,
        })
        .unwrap();
    Client {
        cookie: format!("__Host-vigil_session={token}"),
        csrf,
    }
}

async fn send(app: &Router, req: Request<Body>) -> (Response<Body>, String) {
    let res = app.clone().oneshot(req).await.unwrap();
    let (parts, body) = res.into_parts();
    let bytes = body.collect().await.unwrap().to_bytes();
    let text = String::from_utf8_lossy(&bytes).into_owned();
    (Response::from_parts(parts, Body::empty()), text)
}

fn get(path: &str, c: Option<&Client>) -> Request<Body> {
    let mut b = Request::get(path);
    if let Some(c) = c {
        b = b.header(header::COOKIE, &c.cookie);
    }
    b.body(Body::empty()).unwrap()
}

fn post(path: &str, cookie: &str, form: &str) -> Request<Body> {
    Request::post(path)
        .header(header::COOKIE, cookie)
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(Body::from(form.to_string()))
        .unwrap()
}

fn demo() -> (Router, Arc<MemoryConsoleStore>, ConsoleState) {
    let (state, store) = demo_state(NOW).unwrap();
    (router(state.clone()), store, state)
}

fn location(res: &Response<Body>) -> String {
    res.headers()
        .get(header::LOCATION)
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default()
}

#[tokio::test]
async fn unauthenticated_pages_redirect_to_login() {
    let (app, _, _) = demo();
    for path in ["/", "/hosts", "/alerts/101", "/hunt", "/audit", "/settings"] {
        let (res, _) = send(&app, get(path, None)).await;
        assert_eq!(res.status(), StatusCode::SEE_OTHER, "{path}");
        assert_eq!(location(&res), "/login");
    }
}

#[tokio::test]
async fn login_sets_hardened_cookie_and_requires_csrf() {
    let (app, store, _) = demo();
    let (res, html) = send(&app, get("/login", None)).await;
    assert_eq!(res.status(), StatusCode::OK);
    let set = res
        .headers()
        .get(header::SET_COOKIE)
        .unwrap()
        .to_str()
        .unwrap()
        .to_string();
    let token = set
        .split(';')
        .next()
        .unwrap()
        .trim_start_matches("__Host-vigil_login_csrf=")
        .to_string();
    assert!(
        html.contains(&format!("value=\"{token}\"")),
        "form carries the cookie's token"
    );
    let (admin, _, pw) = DEMO_USERS[0];
    let form = format!("username={admin}&password={pw}");
    // No token, wrong token, no cookie: all refused before the password is checked.
    let cookie = format!("__Host-vigil_login_csrf={token}");
    for (c, f) in [
        (&cookie, form.clone()),
        (&cookie, format!("{form}&csrf=nope")),
        (&String::new(), format!("{form}&csrf={token}")),
    ] {
        let (res, _) = send(&app, post("/login", c, &f)).await;
        assert_eq!(res.status(), StatusCode::FORBIDDEN);
    }
    assert_eq!(store.login_attempts("user:admin").unwrap().failures, 0);
    let (res, _) = send(
        &app,
        post("/login", &cookie, &format!("{form}&csrf={token}")),
    )
    .await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    assert_eq!(location(&res), "/");
    let cookies: Vec<String> = res
        .headers()
        .get_all(header::SET_COOKIE)
        .iter()
        .map(|v| v.to_str().unwrap().to_string())
        .collect();
    let s = cookies
        .iter()
        .find(|c| c.starts_with("__Host-vigil_session="))
        .expect("session cookie");
    for flag in [
        "HttpOnly",
        "Secure",
        "SameSite=Strict",
        "Max-Age=28800",
        "Path=/",
    ] {
        assert!(s.contains(flag), "{flag} missing in {s}");
    }
    let session_cookie = s.split(';').next().unwrap().to_string();
    let (res, html) = send(
        &app,
        get(
            "/",
            Some(&Client {
                cookie: session_cookie,
                csrf: String::new(),
            }),
        ),
    )
    .await;
    assert_eq!(res.status(), StatusCode::OK);
    assert!(html.contains("Overview"));
    assert!(store
        .audit_entries()
        .unwrap()
        .iter()
        .any(|e| e.action == "login" && e.actor == "admin"));
}

#[tokio::test]
async fn login_locks_after_repeated_failures() {
    let (app, _, _) = demo();
    let cookie = "__Host-vigil_login_csrf=t0k3n";
    let bad = "csrf=t0k3n&username=ana&password=wrong";
    for _ in 0..4 {
        let (res, html) = send(&app, post("/login", cookie, bad)).await;
        assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
        assert!(html.contains("Wrong user name or password."));
    }
    let (res, html) = send(&app, post("/login", cookie, bad)).await;
    assert_eq!(res.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(html.contains("Too many failed attempts"));
    let good = format!("csrf=t0k3n&username=ana&password={}", DEMO_USERS[1].2);
    let (res, _) = send(&app, post("/login", cookie, &good)).await;
    assert_eq!(
        res.status(),
        StatusCode::TOO_MANY_REQUESTS,
        "locked even with the right password"
    );
}

#[tokio::test]
async fn post_without_or_with_wrong_csrf_is_403() {
    let (app, store, _) = demo();
    let c = session(&store, "ana", NOW);
    for form in [
        "action=ack".to_string(),
        "action=ack&csrf=".into(),
        "action=ack&csrf=deadbeef".into(),
        format!("action=ack&csrf={}x", c.csrf),
    ] {
        let (res, html) = send(&app, post("/alerts/101/triage", &c.cookie, &form)).await;
        assert_eq!(res.status(), StatusCode::FORBIDDEN, "{form}");
        assert!(html.contains("CSRF"));
    }
    // Another session's token does not work either.
    let other = session(&store, "admin", NOW);
    let (res, _) = send(
        &app,
        post(
            "/alerts/101/triage",
            &c.cookie,
            &format!("action=ack&csrf={}", other.csrf),
        ),
    )
    .await;
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
    assert!(store.triage(101).unwrap().is_none(), "nothing changed");
    let (res, _) = send(
        &app,
        post(
            "/alerts/101/triage",
            &c.cookie,
            &format!("action=ack&csrf={}", c.csrf),
        ),
    )
    .await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    assert_eq!(
        store.triage(101).unwrap().unwrap().state,
        TriageState::Acknowledged
    );
}

#[tokio::test]
async fn viewer_and_analyst_are_refused_what_their_role_forbids() {
    let (app, store, _) = demo();
    let viewer = session(&store, "viv", NOW);
    let analyst = session(&store, "ana", NOW);
    let viewer_refused = [
        ("/alerts/101/triage", "action=ack"),
        ("/alerts/101/triage", "action=close&verdict=false_positive"),
        ("/alerts/105/suppress", "match_title=1&reason=noise"),
        ("/hunt/save", "name=x&query=user%3Dalice"),
        (
            "/users",
            "name=mallory&role=admin&password=aaaaaaaaaaaaaaaa",
        ),
        ("/users/viv", "role=admin"),
        (
            "/settings",
            "retention_days=1&retention_gib=1&learning_period_days=1&alert_budget_per_day=1",
        ),
        ("/settings/tokens", "label=x&ttl_hours=1&max_uses=1"),
        (
            "/settings/response",
            "approve_server_isolation=1&servers=db-01",
        ),
    ];
    for (path, form) in viewer_refused {
        let (res, _) = send(
            &app,
            post(
                path,
                &viewer.cookie,
                &format!("{form}&csrf={}", viewer.csrf),
            ),
        )
        .await;
        assert_eq!(res.status(), StatusCode::FORBIDDEN, "viewer POST {path}");
    }
    for (path, form) in &viewer_refused[4..] {
        let (res, _) = send(
            &app,
            post(
                path,
                &analyst.cookie,
                &format!("{form}&csrf={}", analyst.csrf),
            ),
        )
        .await;
        assert_eq!(res.status(), StatusCode::FORBIDDEN, "analyst POST {path}");
    }
    let (res, _) = send(&app, get("/users", Some(&viewer))).await;
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
    let (res, _) = send(
        &app,
        get("/alerts/105/suppress?match_title=1&reason=x", Some(&viewer)),
    )
    .await;
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
    assert!(store.triage(101).unwrap().is_none());
    assert!(store.suppressions().unwrap().is_empty());
    assert_eq!(
        store.user("viv").unwrap().unwrap().role,
        vigil_web_ui::store::Role::Viewer
    );
    assert!(store.user("mallory").unwrap().is_none());
    // The viewer still reads, and may change their own password.
    let (res, html) = send(&app, get("/alerts/101", Some(&viewer))).await;
    assert_eq!(res.status(), StatusCode::OK);
    assert!(html.contains("can read alerts but not triage"));
    assert!(!html.contains("Acknowledge"), "no dead buttons for viewers");
}

fn hostile_api() -> MemoryReadApi {
    let mut api = demo_read_api_at(NOW);
    let evil = HostId(0xbad);
    let mut h = vigil_testkit::demo::host(
        0xbad,
        "<script>alert('host')</script>",
        "<b>os</b>",
        99,
        NOW,
    );
    h.sensor_version = "\"><img src=x onerror=alert(1)>".into();
    api.hosts.push(h);
    let mut w = EventWriter::new(evil);
    w.exec(
        NOW - 60_000_000_000,
        66,
        1,
        "/tmp/<script>x</script>",
        &["sh", "-c", "<script>alert('argv')</script>"],
        "<img src=x onerror=alert(2)>",
        "/bin/sh",
    );
    w.login(
        NOW - 30_000_000_000,
        false,
        "\"><script>alert(3)</script>",
        None,
    );
    api.events.insert(evil, w.events);
    let mut a: AlertRecord = api.alerts[0].clone();
    a.id = 666;
    a.title = "<script>alert('title')</script>".into();
    a.path = vec![evil, HostId(0x0a03)];
    a.users = vec!["<svg onload=alert(4)>".into()];
    a.summary = "</p><script>alert(5)</script>".into();
    a.evidence = vec![(evil, 1), (evil, 2)];
    a.severity = Severity::High;
    api.alerts.insert(0, a);
    api
}

fn assert_inert(html: &str, page: &str) {
    let lower = html.to_lowercase();
    assert!(!lower.contains("<script"), "{page}: raw <script> tag");
    assert!(!lower.contains("<img"), "{page}: raw <img> tag");
    assert!(!lower.contains("<svg onload"), "{page}: raw svg handler");
    assert!(!lower.contains("<b>os"), "{page}: raw markup");
}

#[tokio::test]
async fn sensor_fields_with_markup_render_inert() {
    let store = Arc::new(MemoryConsoleStore::new());
    let state =
        ConsoleState::new(Arc::new(hostile_api()), store.clone()).with_clock(Arc::new(|| NOW));
    let app = router(state);
    store
        .put_user(vigil_web_ui::store::User {
            name: "ana".into(),
            role: vigil_web_ui::store::Role::Admin,
            password_hash: String::new(),
            created_ns: 0,
            must_change_password: false,
            disabled: false,
        })
        .unwrap();
    let c = session(&store, "ana", NOW);
    let pages = [
        "/",
        "/hosts",
        "/hosts?q=script",
        "/hosts/0000000000000bad",
        "/alerts",
        "/alerts/666",
        "/alerts/666/suppress?match_title=1&user=%3Csvg+onload%3Dalert%284%29%3E&reason=%3Cscript%3E",
        "/graph",
        "/hunt?host=0000000000000bad",
        "/hunt?process=%3Cscript%3E",
    ];
    for p in pages {
        let (res, html) = send(&app, get(p, Some(&c))).await;
        assert_eq!(res.status(), StatusCode::OK, "{p}");
        assert_inert(&html, p);
    }
    let (_, html) = send(&app, get("/hosts/0000000000000bad", Some(&c))).await;
    assert!(
        html.contains("&lt;script&gt;alert('argv')&lt;/script&gt;"),
        "argv shown as text"
    );
    assert!(
        html.contains("&lt;script&gt;alert('host')&lt;/script&gt;"),
        "hostname shown as text"
    );
    let (_, html) = send(&app, get("/alerts/666", Some(&c))).await;
    assert!(html.contains("&lt;script&gt;alert('title')&lt;/script&gt;"));
    // CSV export neutralises formulas and quotes.
    let (res, csv) = send(&app, get("/hunt.csv?host=0000000000000bad", Some(&c))).await;
    assert_eq!(res.status(), StatusCode::OK);
    assert!(csv.starts_with("time_utc,host_id,hostname,seq,kind,detail\n"));
    assert_eq!(csv.lines().count(), 3);
}

#[tokio::test]
async fn every_response_carries_the_security_headers() {
    let (app, store, _) = demo();
    let admin = session(&store, "admin", NOW);
    let viewer = session(&store, "viv", NOW);
    let mut reqs = vec![
        get("/login", None),
        get("/", None),
        get("/static/console.css", None),
        get("/no/such/page", Some(&admin)),
        get("/hosts/zzz", Some(&admin)),
        get("/alerts/999999", Some(&admin)),
        get("/users", Some(&viewer)),
        post("/alerts/101/triage", &admin.cookie, "action=ack"),
        post(
            "/alerts/101/triage",
            &viewer.cookie,
            &format!("action=ack&csrf={}", viewer.csrf),
        ),
        post(
            "/alerts/101/triage",
            &admin.cookie,
            &format!("action=ack&csrf={}", admin.csrf),
        ),
        get("/hunt.csv?user=alice", Some(&admin)),
    ];
    for p in [
        "/",
        "/hosts",
        "/hosts/0000000000000a03",
        "/alerts",
        "/alerts/101",
        "/graph",
        "/hunt",
        "/audit",
        "/users",
        "/settings",
        "/account",
    ] {
        reqs.push(get(p, Some(&admin)));
    }
    for req in reqs {
        let what = format!("{} {}", req.method(), req.uri());
        let (res, _) = send(&app, req).await;
        let h = res.headers();
        assert_eq!(
            h.get(header::CONTENT_SECURITY_POLICY)
                .map(|v| v.to_str().unwrap()),
            Some(CSP),
            "{what}"
        );
        assert_eq!(h.get(header::X_FRAME_OPTIONS).unwrap(), "DENY", "{what}");
        assert_eq!(
            h.get(header::X_CONTENT_TYPE_OPTIONS).unwrap(),
            "nosniff",
            "{what}"
        );
        assert_eq!(
            h.get(header::REFERRER_POLICY).unwrap(),
            "no-referrer",
            "{what}"
        );
    }
    assert!(CSP.contains("default-src 'self'") && CSP.contains("frame-ancestors 'none'"));
    assert!(!CSP.contains("unsafe-inline") && !CSP.contains("unsafe-eval"));
}

/// Every `href`, `src` and `action` value in `html`.
fn url_attrs(html: &str) -> Vec<String> {
    let mut out = Vec::new();
    for attr in ["href=\"", "src=\"", "action=\"", "href='", "src='"] {
        let mut rest = html;
        while let Some(i) = rest.find(attr) {
            rest = &rest[i + attr.len()..];
            let end = rest.find(['"', '\'']).unwrap_or(rest.len());
            out.push(rest[..end].to_string());
        }
    }
    out
}

#[tokio::test]
async fn no_page_references_anything_outside_the_appliance() {
    let (app, store, _) = demo();
    let c = session(&store, "admin", NOW);
    let pages = [
        "/",
        "/hosts",
        "/hosts/0000000000000a06",
        "/alerts",
        "/alerts/101",
        "/alerts/105/suppress?match_title=1&reason=ci+noise",
        "/graph?hours=168",
        "/hunt?process=curl",
        "/audit",
        "/users",
        "/settings",
        "/account",
    ];
    let (_, css) = send(&app, get("/static/console.css", None)).await;
    assert!(!css.contains("http://") && !css.contains("https://") && !css.contains("@import"));
    let (_, login) = send(&app, get("/login", None)).await;
    for (p, html) in std::iter::once(("/login".to_string(), login)).chain({
        let mut v = Vec::new();
        for p in pages {
            let (res, html) = send(&app, get(p, Some(&c))).await;
            assert_eq!(res.status(), StatusCode::OK, "{p}");
            v.push((p.to_string(), html));
        }
        v
    }) {
        assert!(
            !html.contains("http://") && !html.contains("https://"),
            "{p}: absolute URL"
        );
        assert!(!html.contains("//cdn") && !html.contains("url("), "{p}");
        assert!(
            !html.to_lowercase().contains("<script"),
            "{p}: no script at all"
        );
        assert!(
            !html.contains(" style="),
            "{p}: inline style would break the CSP"
        );
        let urls = url_attrs(&html);
        assert!(!urls.is_empty(), "{p}: page has links");
        for u in urls {
            assert!(
                u.starts_with('/') && !u.starts_with("//"),
                "{p}: {u} is not a local path"
            );
        }
    }
}

#[tokio::test]
async fn sessions_expire() {
    let clock = Arc::new(AtomicU64::new(NOW));
    let store = Arc::new(MemoryConsoleStore::new());
    let c2 = clock.clone();
    let state = ConsoleState::new(Arc::new(demo_read_api_at(NOW)), store.clone())
        .with_clock(Arc::new(move || c2.load(Ordering::SeqCst)));
    store
        .put_user(vigil_web_ui::store::User {
            name: "ana".into(),
            role: vigil_web_ui::store::Role::Analyst,
            password_hash: String::new(),
            created_ns: 0,
            must_change_password: false,
            disabled: false,
        })
        .unwrap();
    let app = router(state);
    let c = session(&store, "ana", NOW);
    assert_eq!(
        send(&app, get("/", Some(&c))).await.0.status(),
        StatusCode::OK
    );
    clock.store(NOW + SESSION_TTL_NS, Ordering::SeqCst);
    let (res, _) = send(&app, get("/", Some(&c))).await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    assert_eq!(location(&res), "/login");
    let (res, _) = send(
        &app,
        post(
            "/alerts/101/triage",
            &c.cookie,
            &format!("action=ack&csrf={}", c.csrf),
        ),
    )
    .await;
    assert_eq!(
        res.status(),
        StatusCode::FORBIDDEN,
        "expired session cannot act"
    );
}

#[tokio::test]
async fn triage_suppression_and_audit_chain() {
    let (app, store, state) = demo();
    let c = session(&store, "ana", NOW);
    let act = |form: String| {
        post(
            "/alerts/105/triage",
            &c.cookie,
            &format!("{form}&csrf={}", c.csrf),
        )
    };
    assert_eq!(
        send(&app, act("action=ack".into())).await.0.status(),
        StatusCode::SEE_OTHER
    );
    assert_eq!(
        send(&app, act("action=assign&assignee=ana".into()))
            .await
            .0
            .status(),
        StatusCode::SEE_OTHER
    );
    let (res, _) = send(&app, act("action=assign&assignee=viv".into())).await;
    assert_eq!(
        res.status(),
        StatusCode::BAD_REQUEST,
        "viewers cannot be assigned"
    );
    let (res, _) = send(
        &app,
        act("action=close&verdict=false_positive&note=CI+test+binary".into()),
    )
    .await;
    assert_eq!(location(&res), "/alerts/105?msg=closed");
    let t = store.triage(105).unwrap().unwrap();
    assert_eq!(t.state, TriageState::ClosedFalsePositive);
    assert_eq!(t.assignee.as_deref(), Some("ana"));
    let (_, html) = send(&app, get("/alerts/105?msg=closed", Some(&c))).await;
    assert!(html.contains("Alert closed.") && html.contains("closed: false positive"));

    let (res, html) = send(
        &app,
        get(
            "/alerts/105/suppress?match_title=1&host=0000000000000a04&reason=CI+builds",
            Some(&c),
        ),
    )
    .await;
    assert_eq!(res.status(), StatusCode::OK);
    assert!(
        html.contains("This rule would have hidden 6 past alerts"),
        "preview counts the closed look-alikes"
    );
    assert!(
        store.suppressions().unwrap().is_empty(),
        "preview saves nothing"
    );
    let (res, _) = send(&app, get("/alerts/105/suppress?reason=x", Some(&c))).await;
    assert_eq!(
        res.status(),
        StatusCode::BAD_REQUEST,
        "a rule must match something"
    );
    // Narrower scopes: the incident's source host, port and process. Each
    // must be one the alert names; the preview says what the rule means.
    let (res, body) = send(
        &app,
        get(
            "/alerts/101/suppress?peer=0000000000000a05&port=22&process=bash&reason=admin+jump",
            Some(&c),
        ),
    )
    .await;
    assert_eq!(res.status(), StatusCode::OK, "{body}");
    assert!(body.contains("port 22 is named"), "{body}");
    assert!(body.contains("process bash is named"), "{body}");
    assert!(body.contains("the movement came from"), "{body}");
    for bad in ["port=3389", "process=powershell", "peer=0000000000000a03"] {
        let (res, _) = send(
            &app,
            get(&format!("/alerts/101/suppress?{bad}&reason=x"), Some(&c)),
        )
        .await;
        assert_eq!(res.status(), StatusCode::BAD_REQUEST, "{bad} accepted");
    }
    let form = format!(
        "match_title=1&host=0000000000000a04&user=&reason=CI+builds&csrf={}",
        c.csrf
    );
    let (res, _) = send(&app, post("/alerts/105/suppress", &c.cookie, &form)).await;
    assert_eq!(location(&res), "/alerts/105?msg=suppressed");
    let rules = store.suppressions().unwrap();
    assert_eq!(rules.len(), 1);
    assert_eq!(
        rules[0].scope.title.as_deref(),
        Some("Rare binary executed")
    );

    let actions: Vec<String> = store
        .audit_entries()
        .unwrap()
        .iter()
        .map(|e| e.action.clone())
        .collect();
    assert_eq!(
        actions,
        [
            "triage.ack",
            "triage.assign",
            "triage.close",
            "suppression.create"
        ]
    );
    let (_, html) = send(&app, get("/audit", Some(&c))).await;
    assert!(html.contains("Chain verified: 4 entries"));
    store.tamper_audit(2, "assignee=mallory").unwrap();
    let (_, html) = send(&app, get("/audit", Some(&c))).await;
    assert!(html.contains("Chain BROKEN at entry 2"));
    drop(state);
}

#[tokio::test]
async fn incident_page_draws_path_and_explains() {
    let (app, store, _) = demo();
    let c = session(&store, "viv", NOW);
    let (res, html) = send(&app, get("/alerts/101", Some(&c))).await;
    assert_eq!(res.status(), StatusCode::OK);
    for needle in [
        "Lateral-movement path",
        "class=\"graph path\"",
        "hr-laptop-05",
        "jump-06",
        "db-03",
        "port 22 svc-backup",
        "Why this fired",
        "never talked to",
        "T1021.004",
        "Remote Services: SSH",
        "Evidence events",
        "authorized_keys",
        "Root cause",
        "Remediation checklist",
        "MTTD",
    ] {
        assert!(html.contains(needle), "missing {needle}");
    }
    assert_eq!(html.matches("class=\"hop\"").count(), 2, "two hops A→B→C");
}

#[tokio::test]
async fn hunt_filters_paginates_exports_and_saves() {
    let (app, store, state) = demo();
    let c = session(&store, "ana", NOW);
    let (_, html) = send(&app, get("/hunt?user=svc-backup", Some(&c))).await;
    assert!(html.contains("curl -s 10.0.1.60:8000/x.sh"));
    assert!(!html.contains("sssd"), "only matching events");
    let (_, html) = send(&app, get("/hunt?host=web-01&kind=net_connect", Some(&c))).await;
    assert!(html.contains("100 events on this page") && html.contains("Next page"));
    let next = html
        .split("href=\"/hunt?")
        .find(|s| s.contains("after="))
        .unwrap();
    let next = format!("/hunt?{}", &next[..next.find('"').unwrap()]).replace("&amp;", "&");
    let (res, html2) = send(&app, get(&next, Some(&c))).await;
    assert_eq!(res.status(), StatusCode::OK);
    assert!(html2.contains("First page") && html2 != html);
    let (_, bad) = send(&app, get("/hunt?port=notaport", Some(&c))).await;
    assert!(bad.contains("Port must be a number"));
    let (res, csv) = send(
        &app,
        get("/hunt.csv?host=web-01&kind=net_connect", Some(&c)),
    )
    .await;
    assert_eq!(
        res.headers().get(header::CONTENT_TYPE).unwrap(),
        "text/csv; charset=utf-8"
    );
    let n = state
        .read
        .events(&vigil_proto::query::EventFilter {
            host: Some(HostId(0x0a01)),
            kinds: vec![vigil_proto::event::EventKind::NetConnect],
            limit: 10_000,
            ..Default::default()
        })
        .unwrap()
        .events
        .len();
    assert_eq!(csv.lines().count(), n + 1);
    let form = format!(
        "name=svc+backup+moves&query=user%3Dsvc-backup%26bogus%3D1&csrf={}",
        c.csrf
    );
    let (res, _) = send(&app, post("/hunt/save", &c.cookie, &form)).await;
    assert_eq!(location(&res), "/hunt?user=svc-backup");
    let saved = store.saved_hunts().unwrap();
    assert_eq!(saved[0].query, "user=svc-backup");
    let (_, html) = send(&app, get("/hunt", Some(&c))).await;
    assert!(html.contains("svc backup moves"));
    let _ = Payload::Loss;
}

#[tokio::test]
async fn admin_manages_users_settings_and_tokens() {
    let (app, store, _) = demo();
    let c = session(&store, "admin", NOW);
    let (res, _) = send(
        &app,
        post(
            "/users",
            &c.cookie,
            &format!("name=bob&role=analyst&password=short&csrf={}", c.csrf),
        ),
    )
    .await;
    assert_eq!(res.status(), StatusCode::BAD_REQUEST);
    let (res, _) = send(
        &app,
        post(
            "/users",
            &c.cookie,
            &format!(
                "name=bob&role=analyst&password=a-long-enough-password&csrf={}",
                c.csrf
            ),
        ),
    )
    .await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    let bob = store.user("bob").unwrap().unwrap();
    assert!(bob.password_hash.starts_with("$argon2id$") && bob.must_change_password);
    let (res, _) = send(
        &app,
        post(
            "/users/admin",
            &c.cookie,
            &format!("role=viewer&csrf={}", c.csrf),
        ),
    )
    .await;
    assert_eq!(res.status(), StatusCode::BAD_REQUEST, "no self-demotion");
    let bob_session = session(&store, "bob", NOW);
    send(
        &app,
        post(
            "/users/bob",
            &c.cookie,
            &format!("role=analyst&disabled=1&csrf={}", c.csrf),
        ),
    )
    .await;
    assert_eq!(
        send(&app, get("/", Some(&bob_session))).await.0.status(),
        StatusCode::SEE_OTHER,
        "disabled user is out"
    );
    let (res, html) = send(&app, post("/settings", &c.cookie, &format!("retention_days=0&retention_gib=1&learning_period_days=99&alert_budget_per_day=5&csrf={}", c.csrf))).await;
    assert_eq!(res.status(), StatusCode::BAD_REQUEST);
    assert!(
        html.contains("retention_days") && html.contains("learning_period_days"),
        "all problems at once"
    );
    send(&app, post("/settings", &c.cookie, &format!("retention_days=30&retention_gib=200&learning_period_days=7&alert_budget_per_day=25&csrf={}", c.csrf))).await;
    assert_eq!(store.settings().unwrap().retention_days, 30);
    let (res, html) = send(
        &app,
        post(
            "/settings/tokens",
            &c.cookie,
            &format!("label=dc-2&ttl_hours=24&max_uses=50&csrf={}", c.csrf),
        ),
    )
    .await;
    assert_eq!(res.status(), StatusCode::OK);
    assert!(html.contains("shown once") && html.contains("vgl_"));
    let (_, again) = send(&app, get("/settings", Some(&c))).await;
    assert!(!again.contains("vgl_"), "secret never shown again");
    assert!(again.contains("dc-2"));
}

#[tokio::test]
async fn change_password_and_logout() {
    let (app, store, _) = demo();
    let c = session(&store, "viv", NOW);
    let pw = DEMO_USERS[2].2;
    let (res, _) = send(
        &app,
        post(
            "/account",
            &c.cookie,
            &format!(
                "current=wrong&new=another-long-password&confirm=another-long-password&csrf={}",
                c.csrf
            ),
        ),
    )
    .await;
    assert_eq!(res.status(), StatusCode::BAD_REQUEST);
    let (res, _) = send(
        &app,
        post(
            "/account",
            &c.cookie,
            &format!(
                "current={pw}&new=another-long-password&confirm=another-long-password&csrf={}",
                c.csrf
            ),
        ),
    )
    .await;
    assert_eq!(location(&res), "/account?msg=password");
    assert!(vigil_web_ui::auth::verify_password(
        "another-long-password",
        &store.user("viv").unwrap().unwrap().password_hash
    ));
    let (res, _) = send(
        &app,
        post("/logout", &c.cookie, &format!("csrf={}", c.csrf)),
    )
    .await;
    assert_eq!(location(&res), "/login");
    assert!(res
        .headers()
        .get(header::SET_COOKIE)
        .unwrap()
        .to_str()
        .unwrap()
        .contains("Max-Age=0"));
    assert_eq!(
        send(&app, get("/", Some(&c))).await.0.status(),
        StatusCode::SEE_OTHER
    );
}

/// All `Set-Cookie` values of a response.
fn set_cookies(res: &Response<Body>) -> Vec<String> {
    res.headers()
        .get_all(header::SET_COOKIE)
        .iter()
        .map(|v| v.to_str().unwrap().to_string())
        .collect()
}

/// A `__Host-` cookie must be `Secure`, have `Path=/` and no `Domain`, or
/// browsers drop it.
fn assert_host_cookie(set: &str, name: &str) {
    assert!(set.starts_with(&format!("{name}=")), "{set}");
    assert!(name.starts_with("__Host-"), "{name}");
    let attrs: Vec<&str> = set.split(';').map(str::trim).collect();
    assert!(attrs.contains(&"Path=/"), "{set}");
    assert!(attrs.contains(&"Secure"), "{set}");
    assert!(
        !attrs
            .iter()
            .any(|a| a.to_ascii_lowercase().starts_with("domain")),
        "{set}"
    );
}

/// A request as if it came from `ip` (the appliance's listener supplies
/// `ConnectInfo`; `oneshot` does not).
fn from_ip(mut req: Request<Body>, ip: &str) -> Request<Body> {
    let addr: std::net::SocketAddr = format!("{ip}:40000").parse().unwrap();
    req.extensions_mut()
        .insert(axum::extract::ConnectInfo(addr));
    req
}

/// The demo console with a clock the test moves.
fn demo_with_clock() -> (
    Router,
    Arc<MemoryConsoleStore>,
    ConsoleState,
    Arc<AtomicU64>,
) {
    let (state, store) = demo_state(NOW).unwrap();
    let clock = Arc::new(AtomicU64::new(NOW));
    let c = clock.clone();
    let state = state.with_clock(Arc::new(move || c.load(Ordering::SeqCst)));
    (router(state.clone()), store, state, clock)
}

#[tokio::test]
async fn session_and_login_csrf_cookies_carry_the_host_prefix() {
    let (app, _, _) = demo();
    let (res, _) = send(&app, get("/login", None)).await;
    let set = set_cookies(&res);
    assert_eq!(set.len(), 1, "{set:?}");
    assert_host_cookie(&set[0], "__Host-vigil_login_csrf");
    let token = set[0].split(';').next().unwrap().split_once('=').unwrap().1;
    let cookie = format!("__Host-vigil_login_csrf={token}");
    let (admin, _, pw) = DEMO_USERS[0];
    let form = format!("username={admin}&password={pw}&csrf={token}");
    let (res, _) = send(&app, post("/login", &cookie, &form)).await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    let set = set_cookies(&res);
    let session = set
        .iter()
        .find(|c| c.starts_with("__Host-vigil_session="))
        .expect("session cookie");
    assert_host_cookie(session, "__Host-vigil_session");
    let cleared = set
        .iter()
        .find(|c| c.starts_with("__Host-vigil_login_csrf="))
        .expect("login CSRF cookie cleared");
    assert_host_cookie(cleared, "__Host-vigil_login_csrf");
    assert!(cleared.contains("Max-Age=0"), "{cleared}");
    // The old, unprefixed name is not honoured.
    let value = session
        .split(';')
        .next()
        .unwrap()
        .split_once('=')
        .unwrap()
        .1;
    let old = Client {
        cookie: format!("vigil_session={value}"),
        csrf: String::new(),
    };
    assert_eq!(
        location(&send(&app, get("/", Some(&old))).await.0),
        "/login"
    );
}

#[tokio::test]
async fn a_source_address_backs_off_after_repeated_failures() {
    let (app, store, _, clock) = demo_with_clock();
    let cookie = "__Host-vigil_login_csrf=t0k3n";
    let attempt = |user: &str, pw: &str, ip: &str| {
        from_ip(
            post(
                "/login",
                cookie,
                &format!("csrf=t0k3n&username={user}&password={pw}"),
            ),
            ip,
        )
    };
    // Each failure names another user, so no account locks: only the
    // source address is what the backoff counts.
    for (i, user) in ["u1", "u2", "u3", "u4"].into_iter().enumerate() {
        let (res, _) = send(&app, attempt(user, "wrong", "10.9.8.7")).await;
        assert_eq!(res.status(), StatusCode::UNAUTHORIZED, "failure {i}");
    }
    let (viewer, _, viewer_pw) = DEMO_USERS[2];
    let (res, html) = send(&app, attempt(viewer, viewer_pw, "10.9.8.7")).await;
    assert_eq!(
        res.status(),
        StatusCode::TOO_MANY_REQUESTS,
        "even the right password waits"
    );
    assert!(html.contains("from your address"), "{html}");
    assert!(store
        .audit_entries()
        .unwrap()
        .iter()
        .any(|e| e.action == "login.throttled" && e.target == "source:10.9.8.7"));
    // Another address is not affected, and no account was locked.
    let (res, _) = send(&app, attempt(viewer, viewer_pw, "10.9.8.8")).await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    // The wait doubles with each further failure: 1 s after the 4th...
    clock.fetch_add(1_000_000_001, Ordering::SeqCst);
    let (res, _) = send(&app, attempt("u5", "wrong", "10.9.8.7")).await;
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    // ...2 s after the 5th: 1.5 s later it still waits.
    clock.fetch_add(1_500_000_000, Ordering::SeqCst);
    let (res, _) = send(&app, attempt(viewer, viewer_pw, "10.9.8.7")).await;
    assert_eq!(res.status(), StatusCode::TOO_MANY_REQUESTS);
    clock.fetch_add(600_000_000, Ordering::SeqCst);
    let (res, _) = send(&app, attempt(viewer, viewer_pw, "10.9.8.7")).await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER, "after the wait");
}

#[tokio::test]
async fn idle_sessions_end_and_use_keeps_them_alive() {
    let (app, store, _, clock) = demo_with_clock();
    let c = session(&store, "ana", NOW);
    let minute = 60_000_000_000;
    // Used every 20 minutes: alive well past the 30 minute idle timeout.
    for step in 0..4u64 {
        clock.store(NOW + step * 20 * minute, Ordering::SeqCst);
        let (res, _) = send(&app, get("/", Some(&c))).await;
        assert_eq!(res.status(), StatusCode::OK, "after {} min", step * 20);
    }
    // 31 minutes without a request: gone, and it stays gone.
    clock.store(NOW + 60 * minute + 31 * minute, Ordering::SeqCst);
    let (res, _) = send(&app, get("/", Some(&c))).await;
    assert_eq!(location(&res), "/login");
    clock.store(NOW + 60 * minute + 32 * minute, Ordering::SeqCst);
    assert_eq!(location(&send(&app, get("/", Some(&c))).await.0), "/login");

    // The timeout is a setting.
    let (state, store) = demo_state(NOW).unwrap();
    let c2 = clock.clone();
    let state = state
        .with_clock(Arc::new(move || c2.load(Ordering::SeqCst)))
        .with_idle_timeout(std::time::Duration::from_secs(5 * 60));
    let app = router(state);
    clock.store(NOW, Ordering::SeqCst);
    let c = session(&store, "ana", NOW);
    assert_eq!(
        send(&app, get("/", Some(&c))).await.0.status(),
        StatusCode::OK
    );
    clock.store(NOW + 6 * minute, Ordering::SeqCst);
    assert_eq!(location(&send(&app, get("/", Some(&c))).await.0), "/login");
}

#[tokio::test]
async fn a_generated_password_must_be_changed_before_anything_else() {
    let (state, store) = demo_state(NOW).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("first-admin-password");
    std::fs::write(&file, "generated\n").unwrap();
    let app = router(state.with_first_password_file(&file));
    let (admin, _, pw) = DEMO_USERS[0];
    let mut user = store.user(admin).unwrap().unwrap();
    user.must_change_password = true;
    store.put_user(user).unwrap();
    let c = session(&store, admin, NOW);
    for path in [
        "/",
        "/alerts",
        "/alerts/101",
        "/settings",
        "/users",
        "/hunt.csv",
    ] {
        let (res, _) = send(&app, get(path, Some(&c))).await;
        assert_eq!(res.status(), StatusCode::SEE_OTHER, "{path}");
        assert_eq!(location(&res), "/account", "{path}");
    }
    let (res, _) = send(
        &app,
        post(
            "/alerts/101/triage",
            &c.cookie,
            &format!("action=ack&csrf={}", c.csrf),
        ),
    )
    .await;
    assert_eq!(location(&res), "/account");
    assert!(store.triage(101).unwrap().is_none(), "no action taken");
    let (res, html) = send(&app, get("/account", Some(&c))).await;
    assert_eq!(res.status(), StatusCode::OK);
    assert!(html.contains("Change password"));
    let (res, _) = send(
        &app,
        post(
            "/account",
            &c.cookie,
            &format!(
                "current={pw}&new=my-own-admin-password&confirm=my-own-admin-password&csrf={}",
                c.csrf
            ),
        ),
    )
    .await;
    assert_eq!(location(&res), "/account?msg=password");
    assert!(!store.user(admin).unwrap().unwrap().must_change_password);
    assert!(!file.exists(), "the generated password's file is gone");
    let (res, _) = send(&app, get("/", Some(&c))).await;
    assert_eq!(res.status(), StatusCode::OK);
}

#[tokio::test]
async fn admin_revokes_enrollment_tokens_with_csrf_and_audit() {
    let (app, store, _) = demo();
    let admin = session(&store, "admin", NOW);
    let analyst = session(&store, "ana", NOW);
    let (res, _) = send(
        &app,
        post(
            "/settings/tokens",
            &admin.cookie,
            &format!("label=dc-3&ttl_hours=24&max_uses=5&csrf={}", admin.csrf),
        ),
    )
    .await;
    assert_eq!(res.status(), StatusCode::OK);
    let (_, page) = send(&app, get("/settings", Some(&admin))).await;
    assert!(
        page.contains("action=\"/settings/tokens/1/revoke\""),
        "{page}"
    );
    let (_, page) = send(&app, get("/settings", Some(&analyst))).await;
    assert!(!page.contains("/revoke"), "only admins see the button");
    let (res, _) = send(&app, post("/settings/tokens/1/revoke", &admin.cookie, "")).await;
    assert_eq!(res.status(), StatusCode::FORBIDDEN, "no CSRF token");
    let (res, _) = send(
        &app,
        post(
            "/settings/tokens/1/revoke",
            &analyst.cookie,
            &format!("csrf={}", analyst.csrf),
        ),
    )
    .await;
    assert_eq!(res.status(), StatusCode::FORBIDDEN, "analysts may not");
    assert!(!store.enrollment_tokens().unwrap()[0].revoked);
    let (res, _) = send(
        &app,
        post(
            "/settings/tokens/1/revoke",
            &admin.cookie,
            &format!("csrf={}", admin.csrf),
        ),
    )
    .await;
    assert_eq!(location(&res), "/settings?msg=revoked");
    assert!(store.enrollment_tokens().unwrap()[0].revoked);
    assert!(store
        .audit_entries()
        .unwrap()
        .iter()
        .any(|e| e.action == "enrollment.token_revoke" && e.target == "token:1"));
    let (_, page) = send(&app, get("/settings?msg=revoked", Some(&admin))).await;
    assert!(page.contains("revoked") && !page.contains("/settings/tokens/1/revoke"));
    let (res, _) = send(
        &app,
        post(
            "/settings/tokens/9/revoke",
            &admin.cookie,
            &format!("csrf={}", admin.csrf),
        ),
    )
    .await;
    assert_eq!(res.status(), StatusCode::NOT_FOUND);
}

/// A login in flight hashes on the blocking pool: on a single-threaded
/// runtime another page is served while it runs.
#[tokio::test(flavor = "current_thread")]
async fn argon2_runs_on_the_blocking_pool() {
    let (app, _, state) = demo();
    let login = tokio::spawn(app.clone().oneshot(post(
        "/login",
        "__Host-vigil_login_csrf=t0k3n",
        "csrf=t0k3n&username=ana&password=wrong",
    )));
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while state.login_guard.argon2.peak_in_flight() == 0 {
        assert!(
            std::time::Instant::now() < deadline && !login.is_finished(),
            "the password was not checked through the Argon2 pool"
        );
        tokio::time::sleep(std::time::Duration::from_micros(200)).await;
    }
    let (res, _) = send(&app, get("/login", None)).await;
    assert_eq!(res.status(), StatusCode::OK);
    assert!(!login.is_finished(), "a page was served while Argon2 ran");
    let res = login.await.unwrap().unwrap();
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
}

/// However many logins arrive at once, at most two Argon2 runs happen at a
/// time (each takes 19 MiB and a core).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_logins_hash_under_a_cap() {
    let (app, _, state) = demo();
    let logins: Vec<_> = (0..6)
        .map(|i| {
            tokio::spawn(app.clone().oneshot(post(
                "/login",
                "__Host-vigil_login_csrf=t0k3n",
                &format!("csrf=t0k3n&username=user{i}&password=wrong"),
            )))
        })
        .collect();
    for l in logins {
        assert_eq!(l.await.unwrap().unwrap().status(), StatusCode::UNAUTHORIZED);
    }
    let peak = state.login_guard.argon2.peak_in_flight();
    assert!(
        (1..=vigil_web_ui::throttle::ARGON2_PERMITS).contains(&peak),
        "peak {peak}"
    );
}

/// Login lockout and first-admin bootstrap against the in-memory console
/// store (unit tests of `auth` until the store moved to `vigil-testkit`).
mod auth_store {
    use vigil_testkit::MemoryConsoleStore;
    use vigil_web_ui::auth::*;
    use vigil_web_ui::store::{ConsoleStore, Role, User};

    fn store_with(name: &str, pw: &str) -> MemoryConsoleStore {
        let s = MemoryConsoleStore::new();
        s.put_user(User {
            name: name.into(),
            role: Role::Analyst,
            password_hash: hash_password(pw).unwrap(),
            created_ns: 0,
            must_change_password: false,
            disabled: false,
        })
        .unwrap();
        s
    }

    #[test]
    fn lockout_after_five_failures_even_with_right_password() {
        let s = store_with("bob", "bob-password-1");
        let t0 = 1_000_000_000_000;
        for i in 0..4 {
            assert!(matches!(
                login(&s, "bob", "nope", t0 + i, DEFAULT_IDLE_TIMEOUT_NS).unwrap(),
                LoginOutcome::Invalid
            ));
        }
        assert!(matches!(
            login(&s, "bob", "nope", t0 + 5, DEFAULT_IDLE_TIMEOUT_NS).unwrap(),
            LoginOutcome::Locked { .. }
        ));
        assert!(matches!(
            login(&s, "bob", "bob-password-1", t0 + 6, DEFAULT_IDLE_TIMEOUT_NS).unwrap(),
            LoginOutcome::Locked { .. }
        ));
        let later = t0 + LOCKOUT_NS + 10;
        assert!(matches!(
            login(&s, "bob", "bob-password-1", later, DEFAULT_IDLE_TIMEOUT_NS).unwrap(),
            LoginOutcome::Success { .. }
        ));
    }

    #[test]
    fn unknown_users_are_invalid_and_also_lock() {
        let s = store_with("bob", "bob-password-1");
        for i in 0..4 {
            assert!(matches!(
                login(&s, "eve", "x", i, DEFAULT_IDLE_TIMEOUT_NS).unwrap(),
                LoginOutcome::Invalid
            ));
        }
        assert!(matches!(
            login(&s, "eve", "x", 5, DEFAULT_IDLE_TIMEOUT_NS).unwrap(),
            LoginOutcome::Locked { .. }
        ));
    }

    /// Five wrong passwords at once (each verification is slow, so all read
    /// the record before any writes it) still lock the account: the failure
    /// count is a read-modify-write in the store, not a lost update.
    #[test]
    fn concurrent_failures_all_count_towards_the_lockout() {
        let s = std::sync::Arc::new(store_with("bob", "bob-password-1"));
        let t0 = 1_000_000_000_000;
        let threads: Vec<_> = (0..MAX_FAILURES)
            .map(|i| {
                let s = s.clone();
                std::thread::spawn(move || {
                    login(
                        s.as_ref(),
                        "bob",
                        "nope",
                        t0 + u64::from(i),
                        DEFAULT_IDLE_TIMEOUT_NS,
                    )
                    .unwrap()
                })
            })
            .collect();
        let outcomes: Vec<_> = threads.into_iter().map(|t| t.join().unwrap()).collect();
        assert!(
            outcomes
                .iter()
                .any(|o| matches!(o, LoginOutcome::Locked { .. })),
            "{outcomes:?}"
        );
        assert!(matches!(
            login(
                s.as_ref(),
                "bob",
                "bob-password-1",
                t0 + 10,
                DEFAULT_IDLE_TIMEOUT_NS
            )
            .unwrap(),
            LoginOutcome::Locked { .. }
        ));
    }

    #[test]
    fn bootstrap_creates_admin_once() {
        let s = MemoryConsoleStore::new();
        let pw = bootstrap_admin(&s, 1).unwrap().unwrap();
        assert!(bootstrap_admin(&s, 2).unwrap().is_none());
        let u = s.user("admin").unwrap().unwrap();
        assert_eq!(u.role, Role::Admin);
        assert!(u.must_change_password);
        assert!(verify_password(&pw, &u.password_hash));
    }
}

#[path = "security/export.rs"]
mod export;
