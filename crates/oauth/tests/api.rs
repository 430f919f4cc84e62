#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]
//! The public API used the way the HTTP server uses it, and every parser fed arbitrary input.

use keyscope_oauth::client_auth::{constant_time_eq, generate_secret, secret_digest};
use keyscope_oauth::pkce::{
    check_challenge, check_verifier_syntax, s256_challenge, verifier_matches,
};
use keyscope_oauth::redirect::{
    authorization_response, redirect_uri_matches, validate_registered_redirect_uri,
};
use keyscope_oauth::resource::check_resource;
use keyscope_oauth::scope::{join_scope, parse_scope};
use keyscope_oauth::token::{random_token, token_digest};
use keyscope_oauth::{
    BearerError, ClientCredentials, ErrorCode, Form, OAuthError, PAGE_SECURITY_HEADERS, SignInPage,
    bearer_token, client_credentials, is_form_content_type, render_error_page, www_authenticate,
};
use proptest::prelude::*;

#[test]
fn authorization_code_flow_with_pkce() {
    // Registration.
    let registered = vec!["https://mail.example/cb".to_owned()];
    for uri in &registered {
        validate_registered_redirect_uri(uri).unwrap();
    }
    let secret = generate_secret();
    let stored_digest = secret_digest(&secret);

    // Authorization request (query string).
    let verifier = random_token(32);
    let challenge = s256_challenge(&verifier);
    let query = format!(
        "response_type=code&client_id=mail&redirect_uri=https%3A%2F%2Fmail.example%2Fcb\
         &scope=openid+Mail.Read&state=af0ifjsldkj&code_challenge={challenge}\
         &code_challenge_method=S256&resource=https%3A%2F%2Fmail.ks.example"
    );
    let req = Form::parse(query.as_bytes()).unwrap();
    assert_eq!(req.require("response_type").unwrap(), "code");
    let redirect_uri = req.require("redirect_uri").unwrap();
    assert!(redirect_uri_matches(&registered, redirect_uri));
    assert_eq!(
        parse_scope(req.require("scope").unwrap()).unwrap(),
        ["openid", "Mail.Read"]
    );
    check_challenge(
        req.require("code_challenge").unwrap(),
        req.get("code_challenge_method"),
    )
    .unwrap();
    check_resource(req.require("resource").unwrap()).unwrap();

    // Sign-in page carrying the request.
    let hidden: Vec<(&str, &str)> = req.iter().collect();
    let page = SignInPage {
        realm_display: "Contoso",
        client_name: "Mail",
        action: "/authorize",
        hidden: &hidden,
        username: "",
        error: None,
    }
    .render();
    assert!(page.contains("name=\"code_challenge\""));
    assert_eq!(PAGE_SECURITY_HEADERS.len(), 5);

    // Authorization response.
    let code = random_token(32);
    let location = authorization_response(
        redirect_uri,
        &[("code", &code), ("state", req.require("state").unwrap())],
    );
    assert_eq!(
        location,
        format!("https://mail.example/cb?code={code}&state=af0ifjsldkj")
    );
    let stored_code = token_digest(&code);

    // Token request with client_secret_post.
    assert!(is_form_content_type(Some(
        "application/x-www-form-urlencoded;charset=UTF-8"
    )));
    let body = format!(
        "grant_type=authorization_code&code={code}&redirect_uri=https%3A%2F%2Fmail.example%2Fcb\
         &code_verifier={verifier}&client_id=mail&client_secret={}",
        &*secret
    );
    let form = Form::parse(body.as_bytes()).unwrap();
    let creds = client_credentials(None, &form).unwrap();
    assert!(matches!(creds, ClientCredentials::Post { .. }));
    assert_eq!(creds.client_id(), "mail");
    assert!(constant_time_eq(
        &secret_digest(creds.secret().unwrap()),
        &stored_digest
    ));
    assert_eq!(token_digest(form.require("code").unwrap()), stored_code);
    let presented = form.require("code_verifier").unwrap();
    check_verifier_syntax(presented).unwrap();
    assert!(verifier_matches(presented, &challenge));

    // Resource server.
    let access_token = random_token(32);
    let header = format!("Bearer {access_token}");
    assert_eq!(bearer_token(Some(&header)), Ok(access_token.as_str()));
    assert_eq!(
        www_authenticate("mail", BearerError::Missing.challenge_error()),
        "Bearer realm=\"mail\""
    );
    assert_eq!(join_scope(&["openid".to_owned()]), "openid");
}

#[test]
fn errors_that_must_not_redirect() {
    let registered = vec!["https://mail.example/cb".to_owned()];
    assert!(!redirect_uri_matches(
        &registered,
        "https://evil.example/cb"
    ));
    let html = render_error_page(
        "Invalid redirect URI",
        "<https://evil.example/cb> is not registered",
    );
    assert!(html.contains("&lt;https://evil.example/cb&gt;"));
    let e = OAuthError::new(ErrorCode::InvalidClient, "unknown client");
    assert_eq!(e.status(), 401);
    assert_eq!(
        e.to_json(),
        r#"{"error":"invalid_client","error_description":"unknown client"}"#
    );
}

proptest! {
    #[test]
    fn parsers_never_panic(s in "\\PC{0,300}", bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
        let _ = Form::parse(&bytes);
        let _ = Form::parse(s.as_bytes());
        let _ = bearer_token(Some(&s));
        let _ = parse_scope(&s);
        let _ = check_resource(&s);
        let _ = check_challenge(&s, Some("S256"));
        let _ = check_verifier_syntax(&s);
        let _ = verifier_matches(&s, &s);
        let _ = validate_registered_redirect_uri(&s);
        let _ = redirect_uri_matches(&["http://127.0.0.1/cb".to_owned()], &s);
        let _ = authorization_response(&s, &[("state", &s)]);
        let _ = is_form_content_type(Some(&s));
        let e = OAuthError::invalid_request(&s);
        prop_assert!(keyscope_oauth::error::is_valid_description(&e.description));
        let json = e.to_json();
        prop_assert!(!json.contains('\n'));
        let h = www_authenticate(&s, Some((ErrorCode::InvalidToken, &s)));
        prop_assert!(h.bytes().all(|b| (0x20..0x7f).contains(&b)));
    }

    #[test]
    fn basic_headers_never_panic(s in "\\PC{0,200}") {
        let empty = Form::parse(b"").unwrap();
        let _ = client_credentials(Some(&s), &empty);
        let _ = client_credentials(Some(&format!("Basic {s}")), &empty);
    }
}
