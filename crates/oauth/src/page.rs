//! The server-rendered sign-in page and the error page.
//!
//! Plain, accessible HTML5: labelled fields, an error announced with `role="alert"`, no script,
//! no external resources (fonts, images, style sheets), so the page works with the strict
//! [`PAGE_SECURITY_HEADERS`]. Every interpolated value is HTML-escaped with [`escape_html`],
//! in text and in attribute values alike.
//!
//! Serve the pages as `text/html; charset=utf-8` ([`PAGE_CONTENT_TYPE`]) with every header of
//! [`PAGE_SECURITY_HEADERS`].

use std::fmt::Write as _;

/// The `Content-Type` of the rendered pages.
pub const PAGE_CONTENT_TYPE: &str = "text/html; charset=utf-8";

/// Headers to send with every page of this module.
///
/// The Content Security Policy allows nothing but the inline style sheet and posting the form to
/// the page's own origin; framing is refused twice (CSP `frame-ancestors` and
/// `X-Frame-Options`, against clickjacking), the referrer is never sent (the URL carries the
/// authorization request), and nothing is cached.
pub const PAGE_SECURITY_HEADERS: &[(&str, &str)] = &[
    (
        "Content-Security-Policy",
        "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
    ),
    ("X-Frame-Options", "DENY"),
    ("Referrer-Policy", "no-referrer"),
    ("Cache-Control", "no-store"),
    ("X-Content-Type-Options", "nosniff"),
];

/// The name of the username field posted by the sign-in form.
pub const USERNAME_FIELD: &str = "username";

/// The name of the password field posted by the sign-in form.
pub const PASSWORD_FIELD: &str = "password";

const STYLE: &str = "body{font-family:system-ui,sans-serif;margin:0;padding:2rem 1rem;background:#f5f5f5;color:#111}\
main{max-width:24rem;margin:0 auto;background:#fff;padding:1.5rem 2rem;border-radius:.5rem;box-shadow:0 1px 3px rgba(0,0,0,.2)}\
h1{font-size:1.4rem;margin-top:0}\
label{display:block;margin-top:1rem;font-weight:600}\
input{display:block;width:100%;box-sizing:border-box;padding:.5rem;margin-top:.25rem;font-size:1rem;border:1px solid #767676;border-radius:.25rem}\
input:focus,button:focus{outline:3px solid #1a5fb4;outline-offset:1px}\
button{margin-top:1.5rem;width:100%;padding:.6rem;font-size:1rem;font-weight:600;color:#fff;background:#1a5fb4;border:0;border-radius:.25rem;cursor:pointer}\
.error{color:#a51d2d;background:#fde8e8;border:1px solid #a51d2d;border-radius:.25rem;padding:.5rem .75rem}\
.client{color:#333}";

/// Escapes `& < > " '` so that `s` is inert in HTML text and in quoted attribute values.
#[must_use]
pub fn escape_html(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + s.len() / 8);
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#x27;"),
            _ => out.push(c),
        }
    }
    out
}

/// The document head and opening of `<main>`, with `title` escaped.
fn head(out: &mut String, title: &str) {
    out.push_str("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n");
    out.push_str("<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n");
    out.push_str("<meta name=\"referrer\" content=\"no-referrer\">\n");
    out.push_str("<meta name=\"robots\" content=\"noindex, nofollow\">\n");
    let _ = writeln!(out, "<title>{}</title>", escape_html(title));
    let _ = writeln!(out, "<style>{STYLE}</style>");
    out.push_str("</head>\n<body>\n<main>\n");
}

fn foot(out: &mut String) {
    out.push_str("</main>\n</body>\n</html>\n");
}

/// The sign-in page shown by the authorization endpoint.
#[derive(Debug, Clone, Copy)]
pub struct SignInPage<'a> {
    /// The realm (tenant) the user signs in to, as shown to the user.
    pub realm_display: &'a str,
    /// The name of the client application asking for the sign-in.
    pub client_name: &'a str,
    /// The URL the form posts to (normally the authorization endpoint's own path).
    pub action: &'a str,
    /// Hidden fields carrying the authorization request (and a CSRF token), as (name, value).
    /// Fields named [`USERNAME_FIELD`] or [`PASSWORD_FIELD`] are left out: they would clash with
    /// the visible fields.
    pub hidden: &'a [(&'a str, &'a str)],
    /// The username to pre-fill (empty for none), e.g. after a failed attempt or from
    /// `login_hint`.
    pub username: &'a str,
    /// An error to show above the form, e.g. "Incorrect username or password."
    pub error: Option<&'a str>,
}

impl SignInPage<'_> {
    /// Renders the page as a complete HTML5 document.
    ///
    /// The form posts `username`, `password` and the hidden fields to `action`. The focus goes
    /// to the first empty field; with an error, both fields are marked `aria-invalid` and
    /// described by the alert.
    #[must_use]
    pub fn render(&self) -> String {
        let realm = escape_html(self.realm_display);
        let mut out = String::with_capacity(4096);
        head(&mut out, &format!("Sign in to {}", self.realm_display));
        let _ = writeln!(out, "<h1>Sign in to {realm}</h1>");
        let _ = writeln!(
            out,
            "<p class=\"client\"><strong>{}</strong> wants you to sign in.</p>",
            escape_html(self.client_name)
        );
        let described = if let Some(error) = self.error {
            let _ = writeln!(
                out,
                "<p class=\"error\" id=\"error\" role=\"alert\">{}</p>",
                escape_html(error)
            );
            " aria-invalid=\"true\" aria-describedby=\"error\""
        } else {
            ""
        };
        let _ = writeln!(
            out,
            "<form method=\"post\" action=\"{}\">",
            escape_html(self.action)
        );
        for (name, value) in self.hidden {
            if *name == USERNAME_FIELD || *name == PASSWORD_FIELD {
                continue;
            }
            let _ = writeln!(
                out,
                "<input type=\"hidden\" name=\"{}\" value=\"{}\">",
                escape_html(name),
                escape_html(value)
            );
        }
        let (user_focus, pass_focus) = if self.username.is_empty() {
            (" autofocus", "")
        } else {
            ("", " autofocus")
        };
        let _ = writeln!(out, "<label for=\"username\">Username</label>");
        let _ = writeln!(
            out,
            "<input id=\"username\" name=\"{USERNAME_FIELD}\" type=\"text\" value=\"{}\" autocomplete=\"username\" autocapitalize=\"none\" spellcheck=\"false\" required{described}{user_focus}>",
            escape_html(self.username)
        );
        let _ = writeln!(out, "<label for=\"password\">Password</label>");
        let _ = writeln!(
            out,
            "<input id=\"password\" name=\"{PASSWORD_FIELD}\" type=\"password\" autocomplete=\"current-password\" required{described}{pass_focus}>"
        );
        out.push_str("<button type=\"submit\">Sign in</button>\n</form>\n");
        foot(&mut out);
        out
    }
}

/// Renders an error page for errors that must not be sent to the client's redirect URI, such
/// as an unknown `client_id` or a `redirect_uri` that does not match (RFC 6749 §4.1.2.1: the
/// server "SHOULD inform the resource owner of the error and MUST NOT automatically redirect").
#[must_use]
pub fn render_error_page(title: &str, message: &str) -> String {
    let mut out = String::with_capacity(2048);
    head(&mut out, title);
    let _ = writeln!(out, "<h1>{}</h1>", escape_html(title));
    let _ = writeln!(
        out,
        "<p class=\"error\" role=\"alert\">{}</p>",
        escape_html(message)
    );
    foot(&mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const XSS: &str = "<script>alert('x')</script>\"&";
    const XSS_ESCAPED: &str = "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt;&quot;&amp;";

    fn page<'a>(hidden: &'a [(&'a str, &'a str)], error: Option<&'a str>) -> SignInPage<'a> {
        SignInPage {
            realm_display: "Contoso",
            client_name: "Mail",
            action: "/oauth2/authorize",
            hidden,
            username: "",
            error,
        }
    }

    #[test]
    fn escape() {
        assert_eq!(escape_html(XSS), XSS_ESCAPED);
        assert_eq!(escape_html("plain é"), "plain é");
        assert_eq!(escape_html(""), "");
    }

    #[test]
    fn renders_a_plain_form() {
        let hidden = [("client_id", "mail"), ("state", "xyz")];
        let html = page(&hidden, None).render();
        assert!(html.starts_with("<!DOCTYPE html>\n<html lang=\"en\">"));
        assert!(html.contains("<title>Sign in to Contoso</title>"));
        assert!(html.contains("<form method=\"post\" action=\"/oauth2/authorize\">"));
        assert!(html.contains("<input type=\"hidden\" name=\"client_id\" value=\"mail\">"));
        assert!(html.contains("<input type=\"hidden\" name=\"state\" value=\"xyz\">"));
        assert!(html.contains("<label for=\"username\">Username</label>"));
        assert!(html.contains("<label for=\"password\">Password</label>"));
        assert!(html.contains("type=\"password\" autocomplete=\"current-password\""));
        assert!(html.contains("<button type=\"submit\">Sign in</button>"));
        assert!(!html.contains("role=\"alert\""));
        assert!(!html.contains("aria-invalid"));
        // The username field gets the focus when empty.
        assert!(html.contains("spellcheck=\"false\" required autofocus>"));
    }

    #[test]
    fn no_script_and_no_external_resources() {
        let html = page(&[], Some("x")).render();
        let lower = html.to_ascii_lowercase();
        for forbidden in [
            "<script", "src=", "href=", "<link", "<img", "http:", "https:", "@import", "url(",
        ] {
            assert!(!lower.contains(forbidden), "{forbidden}");
        }
        let err = render_error_page("t", "m").to_ascii_lowercase();
        assert!(!err.contains("<script") && !err.contains("src=") && !err.contains("href="));
    }

    #[test]
    fn error_is_an_alert() {
        let p = SignInPage {
            username: "alice",
            ..page(&[], Some("Incorrect username or password."))
        };
        let html = p.render();
        assert!(html.contains(
            "<p class=\"error\" id=\"error\" role=\"alert\">Incorrect username or password.</p>"
        ));
        assert!(html.contains("aria-invalid=\"true\" aria-describedby=\"error\""));
        assert!(html.contains("value=\"alice\""));
        // The password field gets the focus when the username is filled in.
        assert!(
            html.contains("required aria-invalid=\"true\" aria-describedby=\"error\" autofocus>")
        );
    }

    #[test]
    fn every_field_is_escaped() {
        let hidden = [(XSS, XSS), ("redirect_uri", XSS)];
        let p = SignInPage {
            realm_display: XSS,
            client_name: XSS,
            action: XSS,
            hidden: &hidden,
            username: XSS,
            error: Some(XSS),
        };
        let html = p.render();
        assert!(!html.contains("<script"));
        assert!(!html.contains("alert('x')"));
        // realm twice (title, h1), client name, action, hidden name+value, hidden value,
        // username, error.
        assert_eq!(html.matches(XSS_ESCAPED).count(), 9);
        let err = render_error_page(XSS, XSS);
        assert!(!err.contains("<script"));
        assert_eq!(err.matches(XSS_ESCAPED).count(), 3);
    }

    #[test]
    fn attribute_breakout_is_escaped() {
        let hidden = [("state", "\" autofocus onfocus=\"alert(1)")];
        let html = page(&hidden, None).render();
        assert!(html.contains("value=\"&quot; autofocus onfocus=&quot;alert(1)\""));
        let hidden = [("state", "' onmouseover='x")];
        let html = page(&hidden, None).render();
        assert!(html.contains("value=\"&#x27; onmouseover=&#x27;x\""));
    }

    #[test]
    fn hidden_fields_cannot_shadow_credentials() {
        let hidden = [("username", "mallory"), ("password", "x"), ("nonce", "n")];
        let html = page(&hidden, None).render();
        assert_eq!(html.matches("name=\"username\"").count(), 1);
        assert_eq!(html.matches("name=\"password\"").count(), 1);
        assert!(!html.contains("mallory"));
        assert!(html.contains("name=\"nonce\" value=\"n\""));
    }

    #[test]
    fn error_page() {
        let html = render_error_page("Unknown application", "The client_id is not registered.");
        assert!(html.contains("<title>Unknown application</title>"));
        assert!(html.contains("<h1>Unknown application</h1>"));
        assert!(
            html.contains("<p class=\"error\" role=\"alert\">The client_id is not registered.</p>")
        );
        assert!(!html.contains("<form"));
    }

    #[test]
    fn security_headers() {
        let get = |name: &str| {
            PAGE_SECURITY_HEADERS
                .iter()
                .find(|(n, _)| *n == name)
                .map(|(_, v)| *v)
        };
        assert_eq!(
            get("Content-Security-Policy"),
            Some(
                "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
            )
        );
        assert_eq!(get("X-Frame-Options"), Some("DENY"));
        assert_eq!(get("Referrer-Policy"), Some("no-referrer"));
        assert_eq!(get("Cache-Control"), Some("no-store"));
        assert_eq!(get("X-Content-Type-Options"), Some("nosniff"));
        assert_eq!(PAGE_SECURITY_HEADERS.len(), 5);
    }
}
