//! The page frame (head, top bar, navigation), the stylesheet and the 404.

use crate::auth::Authed;
use crate::error::UiError;
use crate::store::Role;
use axum::http::header;
use axum::response::{Html, IntoResponse, Response};
use leptos::prelude::*;

/// Which navigation entry is highlighted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Nav {
    Overview,
    Alerts,
    Hosts,
    Graph,
    Hunt,
    Audit,
    Users,
    Settings,
    /// SIEM receivers (admins only).
    Receivers,
    /// Packages and enrollment commands (admins only).
    AddHosts,
    Account,
}

const LINKS: [(Nav, &str, &str); 10] = [
    (Nav::Overview, "/", "Overview"),
    (Nav::Alerts, "/alerts", "Alerts"),
    (Nav::Hosts, "/hosts", "Hosts"),
    (Nav::Graph, "/graph", "Fleet graph"),
    (Nav::Hunt, "/hunt", "Hunt"),
    (Nav::Audit, "/audit", "Audit log"),
    (Nav::Users, "/users", "Users"),
    (Nav::Settings, "/settings", "Settings"),
    (Nav::Receivers, "/settings/receivers", "SIEM"),
    (Nav::AddHosts, "/add-hosts", "Add hosts"),
];

fn head(title: &str) -> impl IntoView {
    view! {
        <head>
            <meta charset="utf-8"/>
            <meta name="viewport" content="width=device-width, initial-scale=1"/>
            <meta name="referrer" content="no-referrer"/>
            <title>{format!("{title} · Vigil")}</title>
            <link rel="stylesheet" href="/static/console.css"/>
        </head>
    }
}

/// A full console page around `body`.
pub fn render(title: &str, active: Nav, auth: &Authed, body: AnyView) -> Html<String> {
    let links = LINKS
        .iter()
        .filter(|(n, _, _)| {
            !matches!(n, Nav::Users | Nav::Receivers | Nav::AddHosts) || auth.can(Role::Admin)
        })
        .map(|(n, href, label)| {
            let class = if *n == active { "active" } else { "" };
            view! { <a href={*href} class=class>{*label}</a> }
        })
        .collect_view();
    let banner = auth.user.must_change_password.then(|| {
        view! {
            <div class="flash warn">
                "You are using a generated password. " <a href="/account">"Change it now"</a> "."
            </div>
        }
    });
    let account_class = if active == Nav::Account { "active" } else { "" };
    let v = view! {
        <html lang="en">
            {head(title)}
            <body>
                <header class="topbar">
                    <a class="brand" href="/">"◆ Vigil"</a>
                    <nav>{links}</nav>
                    <div class="who">
                        <a href="/account" class=account_class>{auth.user.name.clone()}</a>
                        <span class="role">{auth.user.role.name()}</span>
                        <form method="post" action="/logout" class="inline">
                            {super::csrf_field(auth)}
                            <button type="submit" class="link">"Log out"</button>
                        </form>
                    </div>
                </header>
                {banner}
                <main>{body}</main>
            </body>
        </html>
    };
    Html(format!("<!DOCTYPE html>{}", v.to_html()))
}

/// A page without navigation (login, errors).
pub fn bare(title: &str, body: AnyView) -> String {
    let v = view! {
        <html lang="en">
            {head(title)}
            <body class="bare">
                <main class="narrow">
                    <div class="brand big">"◆ Vigil"</div>
                    {body}
                </main>
            </body>
        </html>
    };
    format!("<!DOCTYPE html>{}", v.to_html())
}

/// An error page with an escaped message and a way back.
pub fn bare_page(title: &str, message: &str) -> String {
    let body = view! {
        <section class="panel">
            <h1>{title.to_string()}</h1>
            <p>{message.to_string()}</p>
            <p><a href="/">"Back to the console"</a></p>
        </section>
    };
    bare(title, body.into_any())
}

/// `GET /static/console.css`.
pub async fn stylesheet() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/css; charset=utf-8"),
            (header::CACHE_CONTROL, "public, max-age=3600"),
        ],
        include_str!("../../static/console.css"),
    )
        .into_response()
}

/// Unknown paths.
pub async fn not_found() -> UiError {
    UiError::NotFound("this page".into())
}
